"""Pipeline stages: pure functions over a batch of spans."""
