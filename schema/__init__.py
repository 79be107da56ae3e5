"""Numbered ClickHouse migrations, shipped as package data and applied in order."""
