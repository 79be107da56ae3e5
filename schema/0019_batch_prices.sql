-- Batch-API prices.
-- PriceVariant: which variant of the matched price applied: '' the standard (live) rates, 'batch' the
-- provider's batch-API rates (OpenAI Batch, Anthropic Message Batches: a span with tracehouse.batch.id).
-- StandardCostUsd: what the call would have cost at the standard rates, set only when a variant applied, so
-- `StandardCostUsd - CostUsd` is what the batch saved.
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS PriceVariant LowCardinality(String) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS StandardCostUsd Nullable(Decimal(38, 12)) CODEC(ZSTD(1));
