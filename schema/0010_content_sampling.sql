-- Content sampling's decision on each span: error, refusal, slow, costly or share (content kept),
-- dropped (content removed; metadata, tokens and cost kept), '' while sampling is off.
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS ContentSampled LowCardinality(String) CODEC(ZSTD(1));
