"""The tracehouse collector: OTLP receivers, pipeline stages and the ClickHouse writer."""
