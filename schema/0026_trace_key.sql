-- TraceKey: a 128-bit digest of the tenant and the trace id (ClickHouse's sipHash128 of the two), the one key
-- that joins scores and reviews to their calls (llm_calls.trace_key, schema/views/llm_calls_scored.sql and
-- the Feedback and review panels). A join on it hashes one fixed-size number per call instead of two strings:
-- counting the rated calls of 7 days on the 10M-span bench store (1.9M calls, 174k rated traces) went from ~420 to
-- ~190 ms, one run after the other (bench/bench_panels.py's store). tests/test_schema.py pins the digests this
-- engine stores: an engine whose sipHash128 differed would stop joining older rows. Two keys share
-- a digest with a probability of about n^2 / 2^129: nil for any store (a trace id is 128 random bits already).
-- A UUID, so that JSON, CSV and Parquet readers (exports, Grafana, pandas) get it as text, not as a 128-bit
-- integer they round to a float; joins on it hash 16 fixed bytes all the same.
-- MATERIALIZED: computed by ClickHouse on insert from the two columns, never part of the writer's insert
-- (which names its columns) and not in SELECT *. Parts written before this migration compute it when read:
-- old rows read the same key, only without the saving. Up to 16 bytes per span on disk (random trace ids; 7 on
-- the bench's sequential ones).
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS TraceKey UUID MATERIALIZED reinterpretAsUUID(sipHash128(TenantId, TraceId)) CODEC(ZSTD(1));
ALTER TABLE scores
    ADD COLUMN IF NOT EXISTS TraceKey UUID MATERIALIZED reinterpretAsUUID(sipHash128(TenantId, TraceId)) CODEC(ZSTD(1));
ALTER TABLE reviews
    ADD COLUMN IF NOT EXISTS TraceKey UUID MATERIALIZED reinterpretAsUUID(sipHash128(TenantId, TraceId)) CODEC(ZSTD(1));
