-- The daily rollup by user (issue 19): the Cost dashboard's "Top users by spend" over 30 days read ~1M spans;
-- whole days now come from here (a few rows per user and day), the partial days at the range's ends from the
-- spans. One row per (day, tenant, service, feature, provider, model, user_id) once parts merge: the dimensions
-- of the panel's filter variables, so the rollup answers with the same filters; tenant keeps tenants apart.
-- Filled by the materialized view schema/views/llm_user_daily_mv.sql with the calls that carry a user id
-- (CostSource != '' AND UserId != '', as the panel counts them). `user_id` is UserId as stored: after redaction
-- (a hashed user id is its hash), never a value the spans do not hold.
-- Erasure: `tracehouse forget --user` deletes the user's rows here (collector/forget.py); retention: the
-- rollup period (rollup_days, schema/retention.sql); `tracehouse prices reprice` rebuilds repriced days from
-- the view's stored query (collector/reprice.py), which is also how a store that had spans before this
-- migration fills its past days (`tracehouse prices reprice --since DATE`): migrations hold no INSERT.
CREATE TABLE IF NOT EXISTS llm_user_daily (
    day Date,
    tenant LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    user_id String CODEC(ZSTD(1)),
    calls SimpleAggregateFunction(sum, UInt64),
    unpriced_calls SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Decimal(38, 12))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, tenant, service, feature, provider, model, user_id);
