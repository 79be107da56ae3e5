-- ZSTD(1) instead of ZSTD(3) on the content columns: at ingest these columns hold most of the bytes,
-- and level 3 cost ~20 µs more per LLM span of ClickHouse CPU (measured on chDB) for little gain;
-- merges recompress older parts anyway.
ALTER TABLE otel_traces
    MODIFY COLUMN InputMessages String CODEC(ZSTD(1)),
    MODIFY COLUMN OutputMessages String CODEC(ZSTD(1)),
    MODIFY COLUMN SystemPrompt String CODEC(ZSTD(1)),
    MODIFY COLUMN Tools String CODEC(ZSTD(1)),
    MODIFY COLUMN ToolCalls String CODEC(ZSTD(1)),
    MODIFY COLUMN PromptTemplate String CODEC(ZSTD(1)),
    MODIFY COLUMN PromptVariables String CODEC(ZSTD(1));
