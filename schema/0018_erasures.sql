-- Erasures: the audit of `tracehouse forget`. One row per erasure that changed the store (a dry run writes
-- nothing): when, who asked, what kind of subject, and how many rows left each table. Never the erased
-- values: not the user, session or trace id, not a hash of them (a hash of a known id is the id).
-- Append-only; nothing in tracehouse updates or deletes these rows, and retention does not expire them.
CREATE TABLE IF NOT EXISTS erasures (
    Timestamp DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    ErasureId String CODEC(ZSTD(1)),
    RequestedBy String CODEC(ZSTD(1)),
    SubjectKind LowCardinality(String) CODEC(ZSTD(1)),
    TenantId LowCardinality(String) CODEC(ZSTD(1)),
    Traces UInt64 CODEC(ZSTD(1)),
    Rows Map(LowCardinality(String), UInt64) CODEC(ZSTD(1)),
    SpoolBytes UInt64 CODEC(ZSTD(1)),
    DeadLetterFiles UInt32 CODEC(ZSTD(1)),
    Route LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree
ORDER BY (Timestamp, ErasureId)
SETTINGS index_granularity = 8192;
