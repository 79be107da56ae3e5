-- Provider batch jobs as columns (instrumentation/attributes.py BATCH_*): the batch id, the batch span's
-- operation (submit: the submission span, one per batch; request: one LLM span per request; handle: the
-- app handler's span, child of its request's span), the request's outcome once collected (handled,
-- handler_failed, provider_failed, expired, canceled; '' on submit spans and on requests not collected
-- yet) and the batch's purpose, copied out of SpanAttributes on insert so the Batches dashboard and
-- llm_calls read four small columns instead of the attribute map.
-- MATERIALIZED: computed by ClickHouse from SpanAttributes, never part of the writer's insert (which names
-- its columns) and not in SELECT *. Parts written before this migration compute them from SpanAttributes
-- when read: old rows read the same values, only without the saving.
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS BatchId String MATERIALIZED SpanAttributes['tracehouse.batch.id'] CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS BatchOperation LowCardinality(String) MATERIALIZED SpanAttributes['tracehouse.batch.operation'] CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS BatchOutcome LowCardinality(String) MATERIALIZED SpanAttributes['tracehouse.batch.outcome'] CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS BatchPurpose LowCardinality(String) MATERIALIZED SpanAttributes['tracehouse.batch.purpose'] CODEC(ZSTD(1));
