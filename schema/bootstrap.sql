-- Bookkeeping for the numbered migrations: which ones this store already has.
CREATE TABLE IF NOT EXISTS tracehouse_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY version;

-- Bookkeeping for schema/views/: the digest of the text each view was last applied from, so a view is
-- re-applied when its file changes and left alone otherwise. The latest row per name wins.
CREATE TABLE IF NOT EXISTS tracehouse_views (
    name String,
    digest String,
    applied_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY name;
