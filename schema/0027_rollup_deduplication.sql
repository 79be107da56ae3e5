-- The tables the materialized views fill keep a deduplication window, as otel_traces does (schema/0006): an insert
-- sent again under the same token (the drainer's replay after a crash, or its retry when a view of the user's
-- refused rows, collector/writer.py) is dropped by every view's table that has it, not only by otel_traces, so
-- no rollup counts a call twice. A view's block is deduplicated by a token derived from its source block's, so
-- two different inserts that roll up to equal rows are both kept. The rollups' own rebuild (`tracehouse reprice`)
-- inserts with insert_deduplicate = 0.
ALTER TABLE llm_daily MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE llm_user_daily MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE prompt_observations MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE otel_traces_trace_id_ts MODIFY SETTING non_replicated_deduplication_window = 10000;
