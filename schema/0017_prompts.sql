-- The prompt registry (issue 16). Three tables; the numbered versions people talk about ("answer v7") are
-- computed by the view prompt_versions (schema/views/prompt_versions.sql), never stored.
--
-- prompts: the versions `tracehouse prompts sync DIR` registered from the app's prompt files. One row per
-- (name, content hash); Version is the file's content hash (tracehouse.instrumentation.prompts
-- content_version: the first 12 hex digits of the SHA-256 of the normalized file), the same value the app
-- puts on its spans, so a synced version and an observed one are the same version. Template is the whole
-- file (front matter included), Body the template alone (what spans carry), FrontMatter the front matter as
-- JSON. TenantId '' is shared by every tenant (the CLI writes ''). Sync only inserts versions it does not
-- find; ReplacingMergeTree collapses the row two racing syncs both wrote.
CREATE TABLE IF NOT EXISTS prompts (
    TenantId LowCardinality(String) CODEC(ZSTD(1)),
    Name String CODEC(ZSTD(1)),
    Version String CODEC(ZSTD(1)),
    Template String CODEC(ZSTD(3)),
    Body String CODEC(ZSTD(3)),
    FrontMatter String CODEC(ZSTD(3)),
    Labels Array(String) CODEC(ZSTD(1)),
    File String CODEC(ZSTD(1)),
    Source LowCardinality(String) CODEC(ZSTD(1)),
    SyncedBy String CODEC(ZSTD(1)),
    FirstSeen DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    InsertedAt DateTime64(3) DEFAULT now64(3) CODEC(Delta(8), ZSTD(1))
) ENGINE = ReplacingMergeTree
ORDER BY (TenantId, Name, Version)
SETTINGS index_granularity = 8192;
-- prompt_observations: every template version seen on incoming spans, filled by the materialized view
-- prompt_observations_mv from otel_traces (so the registry is complete when nobody ran sync). One row per
-- (tenant, name, version) once parts merge; read it with GROUP BY (min FirstSeen, max LastSeen, sum Calls,
-- max Template: a span whose content was sampled away carries '' and never wins over a kept template).
CREATE TABLE IF NOT EXISTS prompt_observations (
    TenantId LowCardinality(String) CODEC(ZSTD(1)),
    Name String CODEC(ZSTD(1)),
    Version String CODEC(ZSTD(1)),
    Template SimpleAggregateFunction(max, String) CODEC(ZSTD(3)),
    FirstSeen SimpleAggregateFunction(min, DateTime64(9)) CODEC(ZSTD(1)),
    LastSeen SimpleAggregateFunction(max, DateTime64(9)) CODEC(ZSTD(1)),
    Calls SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1))
) ENGINE = AggregatingMergeTree
ORDER BY (TenantId, Name, Version)
SETTINGS index_granularity = 8192;
-- prompt_labels: where each label points, an audit trail. `tracehouse prompts label NAME VERSION LABEL` appends
-- a row; nothing is updated in place. A label's current version is its latest row (by Timestamp, LabelId);
-- the earlier rows are the history of its moves. TenantId '' is shared; a tenant's own row wins over it.
CREATE TABLE IF NOT EXISTS prompt_labels (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TenantId LowCardinality(String) CODEC(ZSTD(1)),
    Name String CODEC(ZSTD(1)),
    Label String CODEC(ZSTD(1)),
    Version String CODEC(ZSTD(1)),
    VersionNumber UInt32 CODEC(ZSTD(1)),
    MovedBy String CODEC(ZSTD(1)),
    LabelId String CODEC(ZSTD(1))
) ENGINE = MergeTree
ORDER BY (TenantId, Name, Label, Timestamp, LabelId)
SETTINGS index_granularity = 8192;
