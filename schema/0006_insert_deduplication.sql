-- The spool drainer gives every insert a deduplication token derived from its spool range; a
-- plain MergeTree only remembers tokens within this window (Replicated* tables do by default).
ALTER TABLE otel_traces MODIFY SETTING non_replicated_deduplication_window = 10000;
