-- Content retention (collector/retention.py, schema/retention.sql): what a span's raw attributes and
-- event attributes become when their content expires. A column TTL replaces expired values with the
-- column's DEFAULT expression, so:
-- - SpanMetadataAttributes is the span's attributes without the content keys (columns.CONTENT_KEYS),
--   written by the retain stage while content retention is on; SpanAttributes falls back to it.
--   Rows written while content retention was off have it empty: their SpanAttributes expire whole
--   (their typed columns keep the metadata).
-- - Events.Attributes falls back to one empty map per event, so the Events.* arrays keep one length.
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS SpanMetadataAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1));
ALTER TABLE otel_traces
    MODIFY COLUMN SpanAttributes DEFAULT SpanMetadataAttributes,
    MODIFY COLUMN `Events.Attributes` DEFAULT arrayMap(name -> CAST(map(), 'Map(LowCardinality(String), String)'), `Events.Name`);
