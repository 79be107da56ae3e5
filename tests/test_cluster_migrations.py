"""The cluster variant of every migration and every view statement: ON CLUSTER and Replicated* engines,
accepted by ClickHouse's own parser. (No cluster runs here: the statements are parsed, not executed, and
the README says so.)"""

from __future__ import annotations

import re
import subprocess
import sys

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


def test_every_statement_has_a_cluster_variant_that_clickhouse_parses():
    variants = [store.cluster_variant(s, "tracehouse") for s in _all_statements()]
    for original, variant in zip(_all_statements(), variants, strict=True):
        assert variant.count("ON CLUSTER 'tracehouse'") == 1, variant[:120]
        assert not re.search(r"ENGINE = (?!Replicated)\w*MergeTree", variant)
        if "ENGINE = " in original:
            assert "ENGINE = Replicated" in variant
    engines = {m.group(1) for v in variants for m in re.finditer(r"ENGINE = (\w+)", v)}
    assert engines == {"ReplicatedMergeTree", "ReplicatedAggregatingMergeTree", "ReplicatedReplacingMergeTree"}
    # ClickHouse's own parser, in a separate process (chDB: one store per process).
    result = subprocess.run(
        [sys.executable, "-c", PARSE], input="\0".join(variants), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "parsed"


def test_every_view_has_its_cluster_statements():
    """The views step renders its statements as the migrations do: both materialized views get their
    in-place query swap ON CLUSTER, the plain views their CREATE OR REPLACE ON CLUSTER."""
    views = {v.name: v for v in store.load_views()}
    plain = ("llm_calls", "traces", "llm_calls_scored", "traces_scored", "prompt_versions", "prompt_labels_current")
    materialized = ("llm_daily_mv", "otel_traces_trace_id_ts_mv", "prompt_observations_mv")
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
