-- The daily rollup answers "cost per call by model" (issue 19): the number of priced calls (CostUsd not NULL;
-- unpriced_calls counts the others) and the state of the 95th percentile of one priced call's cost, so the
-- Cost dashboard's panel reads a few rows per day instead of every span. quantile() keeps a sample of 8192
-- values per state: exact below that, and the merged states of many days a sample of the same kind.
-- Rows stored before this migration have 0 and an empty state until `tracehouse prices reprice --since DATE`
-- rebuilds their days (from the materialized view's query, schema/views/llm_daily_mv.sql).
ALTER TABLE llm_daily
    ADD COLUMN IF NOT EXISTS priced_calls SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS cost_p95_state AggregateFunction(quantile(0.95), Nullable(Float64));
