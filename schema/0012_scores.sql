-- Scores: judgements of calls and traces (end-user feedback, reviewers, evaluators, other APIs), sent to
-- POST /v1/scores and written by the spool drainer like spans. Append-only; the latest score per name
-- surfaces in llm_calls and traces (schema/views/). A score is stored whether or not its span has landed
-- and joins once it has.
-- Ordered for the views' joins: a tenant's scores of one trace and span sit together, oldest first.
-- ScoreId is the client's `id`, else a digest of the tenant and the score's content; ReplacingMergeTree
-- collapses a score stored twice under the same key (a retried request that reached the store twice).
-- Value: numbers as sent, booleans as 1 and 0 (ValueType says which). SpanId '' scores the whole trace.
-- Comment, Label and Author are redacted like span content before they are spooled.
CREATE TABLE IF NOT EXISTS scores (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TenantId LowCardinality(String) CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ScoreId String CODEC(ZSTD(1)),
    Name LowCardinality(String) CODEC(ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    ValueType LowCardinality(String) CODEC(ZSTD(1)),
    Label String CODEC(ZSTD(1)),
    Comment String CODEC(ZSTD(1)),
    Source LowCardinality(String) CODEC(ZSTD(1)),
    Author String CODEC(ZSTD(1)),
    RedactionCounts Map(LowCardinality(String), UInt32) CODEC(ZSTD(1)),
    InsertedAt DateTime64(3) DEFAULT now64(3) CODEC(Delta(8), ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TenantId, TraceId, SpanId, Timestamp, ScoreId)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;
