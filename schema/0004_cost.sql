-- Cost of each LLM span in USD, total and by kind, and where its price came from.
-- CostUsd is the sum of the kinds plus any per-call fee. InputCostUsd is the uncached, non-audio input;
-- cache read, cache write and audio tokens are priced at their own rates (see the pricing stage).
-- CostSource: 'provided' (the span carried its cost), 'catalogue' (genai-prices), 'user' (the price
-- file), 'unknown' (no price: costs NULL, never 0), '' (not an LLM call).
-- PriceModel / PriceEffectiveFrom: the matched price entry's model id and start date ('' = no start date).
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS CostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS InputCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CacheReadCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CacheWriteCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS OutputCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS ReasoningCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS AudioCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS CostSource LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS PriceModel LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS PriceEffectiveFrom LowCardinality(String) CODEC(ZSTD(1));

-- Daily rollup of LLM calls, so dashboards over months read a few rows per day instead of every span.
-- One row per (day, tenant, service, feature, provider, model) once merged; always query it with
-- sum() ... GROUP BY, since rows for the same key are only combined at merge time.
-- Costs sum the priced calls; unpriced_calls says how many calls had no price (their cost is not in the sums).
-- `tracehouse prices reprice` rebuilds the affected days (a materialized view only sees inserts).
-- Filled by the materialized view schema/views/llm_daily_mv.sql.
CREATE TABLE IF NOT EXISTS llm_daily (
    day Date,
    tenant LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    unpriced_calls SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cache_read_tokens SimpleAggregateFunction(sum, UInt64),
    cache_write_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    input_audio_tokens SimpleAggregateFunction(sum, UInt64),
    output_audio_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    input_cost_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    cache_read_cost_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    cache_write_cost_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    output_cost_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    reasoning_cost_usd SimpleAggregateFunction(sum, Decimal(38, 12)),
    audio_cost_usd SimpleAggregateFunction(sum, Decimal(38, 12))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, tenant, service, feature, provider, model);
