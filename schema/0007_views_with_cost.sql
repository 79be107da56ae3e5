-- llm_calls and traces with their costs, now that the pricing stage fills the cost columns.
-- cost_usd is NULL for an unpriced call (never 0); a trace's cost sums its priced calls
-- (only LLM and embedding calls are priced, so chains and agents never count twice) and
-- unpriced_calls says how many calls it could not price. Same LLM-call condition as 0003.

CREATE OR REPLACE VIEW llm_calls AS
SELECT
    SpanId AS id,
    TraceId AS trace_id,
    ParentSpanId AS parent_id,
    Timestamp AS ts,
    ServiceName AS service,
    SpanName AS span_name,
    UserId AS user_id,
    TenantId AS tenant_id,
    SessionId AS session_id,
    Feature AS feature,
    LlmProvider AS provider,
    if(LlmResponseModel != '', LlmResponseModel, LlmRequestModel) AS model,
    LlmRequestModel AS request_model,
    LlmResponseModel AS response_model,
    LlmOperation AS operation,
    Temperature AS temperature,
    TopP AS top_p,
    MaxTokens AS max_tokens,
    InvocationParameters AS invocation_parameters,
    SystemPrompt AS system_prompt,
    InputMessages AS messages,
    Tools AS tools,
    PromptTemplateName AS prompt_name,
    PromptTemplate AS prompt_template,
    PromptVersion AS prompt_version,
    PromptVariables AS prompt_variables,
    OutputMessages AS response,
    ToolCalls AS tool_calls,
    FinishReason AS finish_reason,
    InputTokens AS prompt_tokens,
    OutputTokens AS completion_tokens,
    CacheReadTokens AS cached_tokens,
    CacheWriteTokens AS cache_write_tokens,
    ReasoningTokens AS reasoning_tokens,
    TotalTokens AS total_tokens,
    CostUsd AS cost_usd,
    InputCostUsd AS input_cost_usd,
    CacheReadCostUsd AS cache_read_cost_usd,
    CacheWriteCostUsd AS cache_write_cost_usd,
    OutputCostUsd AS output_cost_usd,
    CostSource AS cost_source,
    TimeToFirstToken / 1e6 AS latency_ms_first_token,
    Duration / 1e6 AS latency_ms_total,
    multiIf(ErrorMessage != '', ErrorMessage, ErrorType != '', ErrorType, StatusCode = 'Error', 'error', '') AS error,
    ErrorType AS error_type,
    StatusCode AS status,
    Tags AS tags,
    Metadata AS metadata
FROM otel_traces
WHERE LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content');

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
