-- Reviews: people's verdicts on calls (approved, flagged, rejected; pending again when reopened), sent to
-- POST /v1/reviews or written by `tracehouse review set`, drained into the store like spans and scores.
-- An audit trail: every change is a new row, nothing is updated in place; a call's state is its latest row
-- (by Timestamp, then ReviewId), surfaced as llm_calls_scored.review_state. A review is stored whether or not
-- its span has landed and joins once it has.
-- ReviewId is the client's `id`, else a digest of the tenant and the review's content; ReplacingMergeTree
-- collapses a review stored twice under the same key (a retried request that reached the store twice).
-- Reason and Reviewer are redacted like span content before they are spooled.
CREATE TABLE IF NOT EXISTS reviews (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TenantId LowCardinality(String) CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ReviewId String CODEC(ZSTD(1)),
    State LowCardinality(String) CODEC(ZSTD(1)),
    Reason String CODEC(ZSTD(1)),
    Reviewer String CODEC(ZSTD(1)),
    RedactionCounts Map(LowCardinality(String), UInt32) CODEC(ZSTD(1)),
    InsertedAt DateTime64(3) DEFAULT now64(3) CODEC(Delta(8), ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TenantId, TraceId, SpanId, Timestamp, ReviewId)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;
