-- Retention: the TTLs that [retention] asks for (collector/retention.py fills in the placeholders and
-- applies this document at every migrate whose rendering differs from the one recorded). Each
-- placeholder becomes `TTL <expiry>` / `MODIFY TTL <expiry>`, or `REMOVE TTL` when that period is 0
-- (kept forever). ClickHouse does the work in merges: expired content columns take their DEFAULT
-- ('' here; SpanAttributes its content-free copy, schema/0015), expired rows are dropped by whole
-- parts (ttl_only_drop_parts: a part of one day goes once all of its rows expired).
--
-- {content}: prompts, responses, messages, tool calls, system prompt, template and variables, the raw
--   content attributes, per service/feature override.
ALTER TABLE otel_traces
    MODIFY COLUMN InputMessages {content},
    MODIFY COLUMN OutputMessages {content},
    MODIFY COLUMN SystemPrompt {content},
    MODIFY COLUMN ToolCalls {content},
    MODIFY COLUMN PromptTemplate {content},
    MODIFY COLUMN PromptVariables {content},
    MODIFY COLUMN SpanAttributes {content},
    MODIFY COLUMN `Events.Attributes` {content};
-- {rows}: the whole span, per service/feature override.
ALTER TABLE otel_traces {rows};
-- The trace-id lookup, scores and reviews have no service or feature: they keep the longest period any rule
-- gives.
ALTER TABLE otel_traces_trace_id_ts {trace_index_rows};
ALTER TABLE scores MODIFY COLUMN Comment {score_content};
ALTER TABLE scores {score_rows};
ALTER TABLE reviews MODIFY COLUMN Reason {score_content};
ALTER TABLE reviews {score_rows};
-- The daily rollups keep their own, longer period (rollup_days): cost accounting outlives the spans. The one
-- by user holds user ids as the spans stored them (after redaction); `tracehouse forget --user` erases them.
ALTER TABLE llm_daily {rollup_rows};
ALTER TABLE llm_user_daily {rollup_rows};
