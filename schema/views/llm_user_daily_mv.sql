-- Fills the daily rollup by user llm_user_daily (schema/0023_llm_user_daily.sql) from every insert into
-- otel_traces: the calls (CostSource != '', as llm_daily_mv counts them) that carry a user id.
-- `tracehouse prices reprice` rebuilds days from this view's stored query (collector/reprice.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS llm_user_daily_mv
TO llm_user_daily
AS SELECT
    toDate(Timestamp) AS day,
    TenantId AS tenant,
    ServiceName AS service,
    Feature AS feature,
    LlmProvider AS provider,
    LlmModel AS model,
    UserId AS user_id,
    toUInt64(count()) AS calls,
    toUInt64(countIf(CostSource = 'unknown')) AS unpriced_calls,
    toUInt64(sum(ifNull(InputTokens, 0))) AS input_tokens,
    toUInt64(sum(ifNull(OutputTokens, 0))) AS output_tokens,
    sum(ifNull(CostUsd, 0)) AS cost_usd
FROM otel_traces
WHERE CostSource != '' AND UserId != ''
GROUP BY day, tenant, service, feature, provider, model, user_id;
