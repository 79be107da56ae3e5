"""Grafana dashboards (JSON) for the Grafana ClickHouse data source plugin."""
