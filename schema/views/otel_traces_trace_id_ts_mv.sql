-- Fills otel_traces_trace_id_ts (trace id -> time range), which the Grafana plugin's trace view uses to
-- narrow its scan. As the OTel Collector ClickHouse exporter defines it, plus the trace's tenant
-- (schema/0025_trace_index_tenant.sql).
CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv
TO otel_traces_trace_id_ts
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End,
    TenantId
FROM otel_traces
WHERE TraceId != ''
GROUP BY TraceId, TenantId;
