-- Fills the daily rollup llm_daily (schema/0004_cost.sql) from every insert into otel_traces.
-- The calls are the spans the pricing stage recognised as model calls (CostSource != ''): kind LLM or
-- EMBEDDING, or unclassified with a model or tokens; chains and agents repeat their children's usage.
-- priced_calls and cost_p95_state (schema/0022): the calls with a cost, the 95th percentile of their cost.
-- `tracehouse prices reprice` rebuilds days from this view's stored query (collector/reprice.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS llm_daily_mv
TO llm_daily
AS SELECT
    toDate(Timestamp) AS day,
    TenantId AS tenant,
    ServiceName AS service,
    Feature AS feature,
    LlmProvider AS provider,
    LlmModel AS model,
    toUInt64(count()) AS calls,
    toUInt64(countIf(StatusCode = 'Error')) AS errors,
    toUInt64(countIf(CostSource = 'unknown')) AS unpriced_calls,
    toUInt64(sum(ifNull(InputTokens, 0))) AS input_tokens,
    toUInt64(sum(ifNull(OutputTokens, 0))) AS output_tokens,
    toUInt64(sum(ifNull(CacheReadTokens, 0))) AS cache_read_tokens,
    toUInt64(sum(ifNull(CacheWriteTokens, 0))) AS cache_write_tokens,
    toUInt64(sum(ifNull(ReasoningTokens, 0))) AS reasoning_tokens,
    toUInt64(sum(ifNull(InputAudioTokens, 0))) AS input_audio_tokens,
    toUInt64(sum(ifNull(OutputAudioTokens, 0))) AS output_audio_tokens,
    sum(ifNull(CostUsd, 0)) AS cost_usd,
    sum(ifNull(InputCostUsd, 0)) AS input_cost_usd,
    sum(ifNull(CacheReadCostUsd, 0)) AS cache_read_cost_usd,
    sum(ifNull(CacheWriteCostUsd, 0)) AS cache_write_cost_usd,
    sum(ifNull(OutputCostUsd, 0)) AS output_cost_usd,
    sum(ifNull(ReasoningCostUsd, 0)) AS reasoning_cost_usd,
    sum(ifNull(AudioCostUsd, 0)) AS audio_cost_usd,
    toUInt64(countIf(CostUsd IS NOT NULL)) AS priced_calls,
    quantileState(0.95)(toFloat64(CostUsd)) AS cost_p95_state
FROM otel_traces
WHERE CostSource != ''
GROUP BY day, tenant, service, feature, provider, model;
