"""OTLP receivers: the I/O edge where requests enter the pipeline."""
