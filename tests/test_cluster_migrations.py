"""The cluster variant of every migration and every view statement: ON CLUSTER and Replicated* engines,
accepted by ClickHouse's own parser; and the sharded variant (`sharded:NAME`: local Replicated tables plus
Distributed tables, schema/sharded.sql), parsed the same way and, less ON CLUSTER and Replicated engines,
run on a real chDB with a two-shard cluster in its config (tests/sharded_chdb.py). No cluster runs here:
the ON CLUSTER statements are parsed, not executed, and deploy/README.md says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tracehouse.collector import store
from tracehouse.collector.config import ConfigError, load_config

PARSE = """
import sys, chdb
for statement in sys.stdin.read().split("\\0"):
    if statement.strip():
        quoted = statement.replace("\\\\", "\\\\\\\\").replace("'", "\\\\'")
        chdb.query(f"SELECT formatQuerySingleLine('{quoted}')", "TSV")
print("parsed")
"""


def _view_statements() -> list[str]:
    """Every statement the views step can run: on a store without the view and on one that has it."""
    return list(dict.fromkeys(s for v in store.load_views() for exists in (False, True) for s in v.statements(exists)))


def _retention_statements() -> list[str]:
    """schema/retention.sql rendered with a policy (TTLs, an override) and without (REMOVE TTL)."""
    from tracehouse.collector.retention import Override, RetentionSettings

    policy = RetentionSettings(30, 400, 1000, (Override(service="bot", content_days=0),))
    return [s for settings in (policy, RetentionSettings()) for s in store._retention_statements(settings)]


def _all_statements() -> list[str]:
    bootstrap = store.bootstrap_statements()
    migrations = (s for m in store.load_migrations() for s in m.statements)
    return [*bootstrap, *migrations, *_view_statements(), *_retention_statements()]


def _parse(statements: list[str]) -> None:
    """ClickHouse's own parser, in a separate process (chDB: one store per process)."""
    result = subprocess.run(
        [sys.executable, "-c", PARSE], input="\0".join(statements), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "parsed"


def test_every_statement_has_a_cluster_variant_that_clickhouse_parses():
    variants = [store.cluster_variant(s, "tracehouse") for s in _all_statements()]
    for original, variant in zip(_all_statements(), variants, strict=True):
        assert variant.count("ON CLUSTER 'tracehouse'") == 1, variant[:120]
        assert not re.search(r"ENGINE = (?!Replicated)\w*MergeTree", variant)
        if "ENGINE = " in original:
            assert "ENGINE = Replicated" in variant
    engines = {m.group(1) for v in variants for m in re.finditer(r"ENGINE = (\w+)", v)}
    assert engines == {"ReplicatedMergeTree", "ReplicatedAggregatingMergeTree", "ReplicatedReplacingMergeTree"}
    _parse(variants)


def test_every_view_has_its_cluster_statements():
    """The views step renders its statements as the migrations do: both materialized views get their
    in-place query swap ON CLUSTER, the plain views their CREATE OR REPLACE ON CLUSTER."""
    views = {v.name: v for v in store.load_views()}
    plain = ("llm_calls", "traces", "llm_calls_scored", "traces_scored", "prompt_versions", "prompt_labels_current")
    materialized = ("llm_daily_mv", "otel_traces_trace_id_ts_mv", "prompt_observations_mv", "llm_user_daily_mv")
    assert set(views) == {*plain, *materialized}
    for name in materialized:
        create, modify = (store.cluster_variant(s, "c") for s in views[name].statements(exists=True))
        target = views[name].target
        assert create.startswith(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} ON CLUSTER 'c'\nTO {target}\n")
        assert modify.startswith(f"ALTER TABLE {name} ON CLUSTER 'c' MODIFY QUERY SELECT")
        assert modify.endswith(views[name].select)
    for name in plain:
        (create,) = (store.cluster_variant(s, "c") for s in views[name].statements(exists=True))
        assert create.startswith(f"CREATE OR REPLACE VIEW {name} ON CLUSTER 'c' AS\nSELECT")
    assert len(_view_statements()) == 2 * len(materialized) + len(plain)


def test_unknown_statement_kinds_and_names_are_refused():
    with pytest.raises(ValueError, match="no cluster variant"):
        store.cluster_variant("DROP TABLE otel_traces", "c")
    with pytest.raises(ValueError, match="identifier"):
        store.cluster_variant("ALTER TABLE t ADD COLUMN x UInt8", "c'; DROP TABLE x; --")


def test_cluster_needs_a_server():
    with pytest.raises(ConfigError, match="cluster needs a ClickHouse server"):
        load_config(overrides={"cluster": "c"}, environ={})
    config = load_config(overrides={"cluster": "c", "clickhouse_url": "http://node1:8123/default"}, environ={})
    assert config.cluster == "c"


# --- the sharded layout (schema/sharded.sql) --------------------------------------------------------------

SHARDING_KEYS = {
    "otel_traces": "cityHash64(TraceId)",
    "otel_traces_trace_id_ts": "cityHash64(TraceId)",
    "scores": "cityHash64(TraceId)",
    "reviews": "cityHash64(TraceId)",
    "llm_daily": "rand()",
    "llm_user_daily": "rand()",
    "prompt_observations": "rand()",
    "prompts": "cityHash64(TenantId, Name, Version)",
    "prompt_labels": "cityHash64(TenantId, Name, Label)",
    "erasures": "cityHash64(ErasureId)",
    "tracehouse_migrations": "version",
    "tracehouse_views": "cityHash64(name)",
}


def _created_tables() -> set[str]:
    create = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)")
    return {m.group(1) for s in _all_statements() if (m := create.match(s))}


def test_every_statement_has_a_sharded_variant_that_clickhouse_parses():
    variants = [v for s in _all_statements() for v in store.cluster_statements(s, "sharded:tracehouse")]
    assert all(v.count("ON CLUSTER 'tracehouse'") == 1 for v in variants)
    assert not any(re.search(r"ENGINE = (?!Replicated)\w*MergeTree", v) for v in variants)
    distributed = {
        m.group(1): m.group(2)
        for v in variants
        if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER 'tracehouse' AS \1_local\s+ENGINE = (.+)", v))
    }
    # Every table a migration or the bootstrap creates: a local Replicated table and its Distributed one.
    assert set(distributed) == _created_tables() == set(SHARDING_KEYS)
    for table, key in SHARDING_KEYS.items():
        assert distributed[table].startswith(f"Distributed('tracehouse', currentDatabase(), {table}_local, {key})")
        assert any(
            v.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER 'tracehouse' (") for v in variants
        )
    # Materialized views read and write local tables; plain views read the Distributed names.
    for v in variants:
        if v.startswith("CREATE MATERIALIZED VIEW") or " MODIFY QUERY " in v:
            assert re.search(r"\bFROM otel_traces_local\b", v) and not re.search(r"\bFROM otel_traces\b", v)
        if v.startswith("CREATE MATERIALIZED VIEW"):
            assert re.search(r"\nTO \w+_local\n", v), v[:120]
        if v.startswith("CREATE OR REPLACE VIEW"):
            assert "_local" not in v
    _parse(variants)


def test_sharded_alters_reach_the_distributed_table_only_for_column_changes():
    sharded = store.sharded_statements
    add = (
        "ALTER TABLE otel_traces\n    ADD COLUMN IF NOT EXISTS X String DEFAULT concat(a, ','),"
        + "\n    MODIFY COLUMN Y UInt8"
    )
    assert sharded(add, "c") == (add.replace("otel_traces", "otel_traces_local", 1), add)
    for storage in (
        "ALTER TABLE otel_traces MODIFY SETTING non_replicated_deduplication_window = 10000",
        "ALTER TABLE otel_traces MODIFY COLUMN InputMessages TTL toDateTime(Timestamp) + toIntervalDay(30)",
        "ALTER TABLE scores MODIFY COLUMN Comment REMOVE TTL",
        "ALTER TABLE otel_traces DELETE WHERE TraceId IN ('a, b')",
        "ALTER TABLE llm_daily MODIFY TTL day + toIntervalDay(1000)",
    ):
        (local,) = sharded(storage, "c")
        assert local.startswith("ALTER TABLE " + storage.split()[2] + "_local ")
    # forget's mutation, through the one-statement form it uses
    assert store.cluster_variant("ALTER TABLE reviews DELETE WHERE TraceId = 'x'", "sharded:c") == (
        "ALTER TABLE reviews_local ON CLUSTER 'c' DELETE WHERE TraceId = 'x'"
    )
    with pytest.raises(ValueError, match="split them"):
        sharded("ALTER TABLE otel_traces ADD COLUMN X UInt8, MODIFY SETTING index_granularity = 8192", "c")
    with pytest.raises(ValueError, match="becomes 2 statements"):
        store.cluster_variant("ALTER TABLE otel_traces ADD COLUMN X UInt8", "sharded:c")
    with pytest.raises(ValueError, match="no Distributed table in schema/sharded.sql"):
        sharded("CREATE TABLE IF NOT EXISTS newtable (a UInt8) ENGINE = MergeTree ORDER BY a", "c")
    with pytest.raises(ValueError, match="identifier"):
        store.cluster_statements("ALTER TABLE t ADD COLUMN x UInt8", "sharded:c'; DROP TABLE x; --")


@pytest.fixture(scope="module")
def sharded_store(tmp_path_factory) -> dict:
    """tests/sharded_chdb.py's findings: the sharded statements run on chDB, the collector's insert through
    the Distributed otel_traces, its queued blocks delivered to the two shards' local tables."""
    folder = tmp_path_factory.mktemp("sharded")
    script = Path(__file__).with_name("sharded_chdb.py")
    result = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_the_sharded_layout_runs_on_chdb(sharded_store):
    tables = sharded_store["tables"]
    for table, key in SHARDING_KEYS.items():
        assert tables[table]["engine_full"].startswith(f"Distributed('tracehouse', 'default', '{table}_local', {key})")
        assert tables[f"{table}_local"]["engine"].endswith("MergeTree")
        # What inserts and reads through the Distributed table see is the local table's columns, to the
        # codec, DEFAULT, MATERIALIZED and ALIAS expression, after every migration and retention statement.
        assert sharded_store["columns"][table] == sharded_store["columns"][f"{table}_local"], table
    engines = {name: t["engine"] for name, t in tables.items()}
    assert {n for n, e in engines.items() if e not in ("View", "MaterializedView")} == {
        *SHARDING_KEYS,
        *(f"{t}_local" for t in SHARDING_KEYS),
    }
    views = {v.name: v for v in store.load_views()}
    for view in ("llm_daily_mv", "otel_traces_trace_id_ts_mv", "prompt_observations_mv", "llm_user_daily_mv"):
        create = tables[view]["create"]
        assert re.search(r" TO default\.\w+_local ", create) and "FROM default.otel_traces_local" in create
        # What apply_views compares with the view file's TO table (+ _local) before a MODIFY QUERY.
        assert store._STORED_TARGET.match(create).group(1) == views[view].target + "_local"
    for view in ("llm_calls", "traces", "llm_calls_scored", "traces_scored", "prompt_versions"):
        assert engines[view] == "View" and "_local" not in tables[view]["create"]


def test_the_collectors_insert_through_otel_traces_reaches_both_shards_by_trace(sharded_store):
    from sharded_chdb import SPANS_PER_TRACE, TRACES

    assert sharded_store["written_locally"] == 0
    queued = sharded_store["queued"]["otel_traces"]
    assert set(queued) == {"1", "2"}
    by_shard = {shard: [i for block in blocks for i in block["trace_ids"]] for shard, blocks in queued.items()}
    assert sum(len(ids) for ids in by_shard.values()) == TRACES * SPANS_PER_TRACE
    for shard, ids in by_shard.items():
        assert {sharded_store["expected_shard"][i] for i in ids} == {int(shard)}  # cityHash64(TraceId) % 2
    for block in (b for blocks in queued.values() for b in blocks):
        # The writer's columns and the DEFAULTs the Distributed table filled in; MATERIALIZED and ALIAS
        # columns are left to the shard.
        assert set(sharded_store["header"]) <= set(block["columns"])
        assert "InsertedAt" in block["columns"]
        assert not {"BatchId", "LlmModel", "SpanAttributeItems"} & set(block["columns"])
        # The shard's insert gets the writer's deduplication token: a replay is dropped shard by shard.
        assert block["token"]
    shards = sharded_store["shards"]
    for shard, ids in by_shard.items():
        got = shards[shard]
        traces = len(set(ids))
        assert got["spans"] == [len(ids), traces]
        # Each shard's materialized views fired on its own local table.
        assert got["llm_daily_calls"] == got["prompt_calls"] == got["batch_ids"] == len(ids)
        assert got["trace_index"] == traces
        # Scores went through the Distributed scores table to the shard of their trace.
        assert got["scores"] == traces and got["scores_of_other_shards"] == 0
