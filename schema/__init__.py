"""The ClickHouse schema, shipped as package data: numbered migrations (tables), applied once each in
order, then views/ (one definition per view), re-applied whenever a view's text changes. See README.md."""
