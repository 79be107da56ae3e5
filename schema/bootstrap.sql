-- Bookkeeping for the numbered migrations: which ones this store already has.
CREATE TABLE IF NOT EXISTS tracehouse_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY version;
