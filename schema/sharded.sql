-- The sharded cluster layout (`--cluster sharded:NAME`, collector/store.py sharded_statements): every table
-- the numbered migrations and bootstrap.sql create is, on each node, `<table>_local` (the migration's
-- statement, renamed; Replicated* with `ON CLUSTER`) plus the Distributed table below under the table's own
-- name. The collector, the views, the dashboards and `tracehouse sql` read and write the names they always
-- did; a Distributed table sends each inserted row to one shard by its sharding key and reads from all.
-- The materialized views attach to the local tables (a view sees only the inserts of its own node's table,
-- and the Distributed table's inserts arrive on each shard's local table) and write to local targets.
--
-- One statement per table, named `<table>` AS `<table>_local`; {cluster} is the cluster's name. A table
-- created by a migration and missing here is refused in the sharded layout (it would be shard-local).
--
-- Sharding keys:
-- - cityHash64(TraceId) where a row belongs to a trace: a trace's spans, its trace-id lookup row, its scores
--   and reviews share a shard, so `traces` (GROUP BY TraceId) aggregates on the shards, the Grafana trace
--   view's lookups can skip the other shards (optimize_skip_unused_shards), a score or review stored twice
--   collapses (ReplacingMergeTree merges within a shard only) and `tracehouse forget` finds a trace on one.
-- - the ORDER BY key of the other ReplacingMergeTree tables (rows that must collapse meet on one shard).
-- - rand() for the rollups filled by the materialized views (llm_daily, llm_user_daily, prompt_observations):
--   their rows sit on the shard of the spans they count, not where a key would put them, and every read sums
--   them with GROUP BY; a key would let optimize_skip_unused_shards skip rows it does not know about.
--
-- fsync_after_insert / fsync_directories: an insert that the collector acknowledges (its spool range is
-- done) and that waits in a node's Distributed queue (distributed_foreground_insert = 0, the default) is on
-- that node's disk, not only in its page cache. With distributed_foreground_insert = 1 on the collector's
-- user (deploy/README.md) the insert returns once every shard has its rows, and the queue is not used.
CREATE TABLE IF NOT EXISTS otel_traces AS otel_traces_local
ENGINE = Distributed({cluster}, currentDatabase(), otel_traces_local, cityHash64(TraceId))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts AS otel_traces_trace_id_ts_local
ENGINE = Distributed({cluster}, currentDatabase(), otel_traces_trace_id_ts_local, cityHash64(TraceId))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS llm_daily AS llm_daily_local
ENGINE = Distributed({cluster}, currentDatabase(), llm_daily_local, rand())
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS llm_user_daily AS llm_user_daily_local
ENGINE = Distributed({cluster}, currentDatabase(), llm_user_daily_local, rand())
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS scores AS scores_local
ENGINE = Distributed({cluster}, currentDatabase(), scores_local, cityHash64(TraceId))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS reviews AS reviews_local
ENGINE = Distributed({cluster}, currentDatabase(), reviews_local, cityHash64(TraceId))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS prompts AS prompts_local
ENGINE = Distributed({cluster}, currentDatabase(), prompts_local, cityHash64(TenantId, Name, Version))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS prompt_observations AS prompt_observations_local
ENGINE = Distributed({cluster}, currentDatabase(), prompt_observations_local, rand())
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS prompt_labels AS prompt_labels_local
ENGINE = Distributed({cluster}, currentDatabase(), prompt_labels_local, cityHash64(TenantId, Name, Label))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS erasures AS erasures_local
ENGINE = Distributed({cluster}, currentDatabase(), erasures_local, cityHash64(ErasureId))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

-- The bookkeeping (bootstrap.sql): every node reads the same record of applied migrations and views.
CREATE TABLE IF NOT EXISTS tracehouse_migrations AS tracehouse_migrations_local
ENGINE = Distributed({cluster}, currentDatabase(), tracehouse_migrations_local, version)
SETTINGS fsync_after_insert = 1, fsync_directories = 1;

CREATE TABLE IF NOT EXISTS tracehouse_views AS tracehouse_views_local
ENGINE = Distributed({cluster}, currentDatabase(), tracehouse_views_local, cityHash64(name))
SETTINGS fsync_after_insert = 1, fsync_directories = 1;
