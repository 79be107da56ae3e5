-- When each row reached ClickHouse: the writer names its columns, so the server fills this one.
-- Span end -> InsertedAt is the pipeline's lag, which the collector health dashboard watches.
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS InsertedAt DateTime64(3) DEFAULT now64(3) CODEC(Delta(8), ZSTD(1));
