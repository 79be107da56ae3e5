-- The trace-id lookup otel_traces_trace_id_ts gets the tenant of its trace, so a tenant's read key
-- (`[query_read_keys]`, collector/tenant_reads.py) sees its own traces there and no one else's: the Traces
-- dashboard counts traces and finds a trace's time range from this table. Filled by
-- schema/views/otel_traces_trace_id_ts_mv.sql (a row per trace and tenant of each insert; once parts merge,
-- one row per trace id with one of its tenants: a trace id is the tenant's own, 128 random bits).
-- Rows stored before this migration have TenantId '': a tenant's read key does not see them (the
-- collector's own key and query_read_key see every row, as before).
ALTER TABLE otel_traces_trace_id_ts
    ADD COLUMN IF NOT EXISTS TenantId LowCardinality(String) CODEC(ZSTD(1));
