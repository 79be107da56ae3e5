-- The model of an LLM call becomes its canonical model (issue 12): the price catalogue's model id for the
-- model the call names (gpt-4o-mini for gpt-4o-mini-2024-07-18 as for gpt-4o-mini), whichever price applied,
-- else the response model, else the request model. A failed call, which carries only the request model, and
-- a successful one, which carries the dated response model, then group as one model in llm_calls, the daily
-- rollup and the dashboards; llm_calls.request_model and response_model stay as sent.
-- CanonicalModel is written by the pricing stage ('' when the catalogue does not know the model); rows stored
-- before it read '' and keep the old model until `tracehouse prices reprice` rewrites their price columns.
-- LlmModel stays an ALIAS (see 0011): computed on read, the one place the rule is written.
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS CanonicalModel LowCardinality(String) CODEC(ZSTD(1));

ALTER TABLE otel_traces
    MODIFY COLUMN LlmModel String ALIAS if(CanonicalModel != '', toString(CanonicalModel), if(LlmResponseModel != '', LlmResponseModel, LlmRequestModel));
