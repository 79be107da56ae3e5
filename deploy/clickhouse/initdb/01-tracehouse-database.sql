-- Runs once, on the first start of an empty ClickHouse volume. The collector creates the tables itself
-- (its migrations run at start) in the database of its --clickhouse-url.
CREATE DATABASE IF NOT EXISTS tracehouse;
