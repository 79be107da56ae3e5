-- One row per trace: its root span's name and service, start, duration, span count, tokens, cost, errors.
-- Token sums count LLM calls only (the same condition as llm_calls, keep them in step): chain and agent
-- spans may repeat their children's usage. A trace's cost sums its priced calls (only LLM and embedding
-- calls are priced, so chains and agents never count twice); unpriced_calls says how many it could not price.
CREATE OR REPLACE VIEW traces AS
SELECT
    TraceId AS trace_id,
    if(countIf(ParentSpanId = '') > 0, argMinIf(SpanName, Timestamp, ParentSpanId = ''), argMin(SpanName, Timestamp)) AS root_name,
    if(countIf(ParentSpanId = '') > 0, argMinIf(ServiceName, Timestamp, ParentSpanId = ''), argMin(ServiceName, Timestamp)) AS service,
    min(Timestamp) AS start,
    (max(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) - min(toUnixTimestamp64Nano(Timestamp))) / 1e6 AS duration_ms,
    count() AS span_count,
    countIf(LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content')) AS llm_call_count,
    sumIf(ifNull(InputTokens, 0), LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content')) AS prompt_tokens,
    sumIf(ifNull(OutputTokens, 0), LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content')) AS completion_tokens,
    sumIf(ifNull(CacheReadTokens, 0), LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content')) AS cached_tokens,
    sumIf(ifNull(ReasoningTokens, 0), LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content')) AS reasoning_tokens,
    sumIf(ifNull(TotalTokens, 0), LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content')) AS total_tokens,
    sum(ifNull(CostUsd, 0)) AS cost_usd,
    countIf(CostSource = 'unknown') AS unpriced_calls,
    countIf(StatusCode = 'Error' OR ErrorType != '') > 0 AS has_error,
    argMinIf(UserId, Timestamp, UserId != '') AS user_id,
    argMinIf(SessionId, Timestamp, SessionId != '') AS session_id,
    argMinIf(TenantId, Timestamp, TenantId != '') AS tenant_id,
    argMinIf(Feature, Timestamp, Feature != '') AS feature
FROM otel_traces
WHERE TraceId != ''
GROUP BY TraceId;
