-- One row per LLM call, in snake_case, for people who write SQL.
-- An LLM call is a span whose kind is LLM or whose operation is a model call; `traces` repeats the same
-- condition (ClickHouse views cannot share it), keep them in step.
-- model is the response model when the span has one, else the request model (otel_traces.LlmModel).
-- cost_usd is NULL for an unpriced call (never 0); cost_source says where the price came from.
-- content_sampled is content sampling's decision, redaction_counts what the redactor replaced, by kind.
-- replay_of is the span id of the call a `tracehouse replay` span replayed ('' for every other call).
-- batch_* are set on the calls of a provider batch job (tracehouse.instrumentation.batch): its id and purpose,
-- when it was submitted, the request's custom_id and its outcome (handled, handler_failed, provider_failed,
-- expired, canceled); id, purpose and outcome read otel_traces' Batch* columns (schema/0020), not the map.
-- price_variant is 'batch' when the call was priced at batch rates, and standard_cost_usd what it would have
-- cost at live rates (NULL when no variant applied).
-- trace_key is the 128-bit digest of tenant_id and trace_id (otel_traces.TraceKey, schema/0026) that joins a call
-- to its trace's scores and reviews (llm_calls_scored).
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
    LlmModel AS model,
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
    Metadata AS metadata,
    ContentSampled AS content_sampled,
    RedactionCounts AS redaction_counts,
    SpanAttributes['tracehouse.replay_of'] AS replay_of,
    BatchId AS batch_id,
    BatchPurpose AS batch_purpose,
    SpanAttributes['tracehouse.batch.custom_id'] AS batch_custom_id,
    BatchOutcome AS batch_outcome,
    toDateTime64(toFloat64OrNull(SpanAttributes['tracehouse.batch.submitted_at']), 3, 'UTC') AS batch_submitted_at,
    PriceVariant AS price_variant,
    StandardCostUsd AS standard_cost_usd,
    TraceKey AS trace_key
FROM otel_traces
WHERE LlmSpanKind = 'LLM' OR LlmOperation IN ('chat', 'text_completion', 'generate_content');
