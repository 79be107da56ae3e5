"""The cluster variant of every migration: ON CLUSTER and Replicated* engines, accepted by ClickHouse's
own parser. (No cluster runs here: the statements are parsed, not executed, and the README says so.)"""

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


def _all_statements() -> list[str]:
    bootstrap = store._split_statements((store.resources.files("tracehouse.schema") / "bootstrap.sql").read_text())
    return [*bootstrap, *(s for m in store.load_migrations() for s in m.statements)]


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
