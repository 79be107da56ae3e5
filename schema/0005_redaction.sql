-- Per-span redaction counts by kind: built-in detector types (email, phone, card, iban, ssn, ip,
-- secret), user rule names, and whole values handled by a policy (dropped, hashed, masked,
-- content_dropped). Only counts are stored, never the values.
ALTER TABLE otel_traces
    ADD COLUMN IF NOT EXISTS RedactionCounts Map(LowCardinality(String), UInt32) CODEC(ZSTD(1));
