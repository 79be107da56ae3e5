-- The model of an LLM call, defined once: the response model when the span has one (the model that
-- actually answered, e.g. gpt-4o-mini-2024-07-18), else the request model. Views, the daily rollup,
-- the dashboards and `tracehouse prices unknown` read this column instead of repeating the expression.
-- ALIAS, not MATERIALIZED: it costs no storage, cannot drift from the two columns it reads, and is
-- never part of the writer's insert (which names its columns). Typed String, as the expression is,
-- so llm_calls.model keeps its type.
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS LlmModel String ALIAS if(LlmResponseModel != '', LlmResponseModel, LlmRequestModel);
