"""The panels that read the daily rollup `llm_daily` take its rows as stored, several per key until the engine
merges them (dashboards/queries.py daily_source: merging per key first cost a third of "Cost per call by
model"). Their answers must not depend on how far the parts have merged: on the real engine, spans stored in two
inserts with the rollup's merges stopped, every such panel of every dashboard answers as it does after
OPTIMIZE FINAL left one row per key, under several ranges and filters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_user_rollup import PRICES_V1, _context, _spans, _variables

from tracehouse.collector import grafana_macros as gm
from tracehouse.collector import store
from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import parse_config
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.stages.price import build
from tracehouse.collector.writer import TraceStore
from tracehouse.dashboards.build import DASHBOARDS

pytestmark = pytest.mark.timeout(240)

KEY = "day, tenant, service, feature, provider, model"
RANGES = [
    ("2025-03-01 10:00:00", "2025-03-05 14:30:00"),
    ("2025-03-02 00:00:00", "2025-03-04 23:59:59"),
    ("2025-03-03 06:00:00", "2025-03-03 20:00:00"),
]
FILTERS = [{}, {"service": ["svc-a"]}, {"feature": ["chat"], "model": ["house-model", "gpt-4o-mini"]}]


def _rollup_panels() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, SQL) of every panel target that reads llm_daily."""
    found = []
    for name, builder in DASHBOARDS.items():
        for panel in builder()["panels"]:
            for target in panel.get("targets", []):
                if "FROM llm_daily" in target.get("rawSql", ""):
                    found.append((name, panel["title"], target["rawSql"]))
    return found


def _answers(client, panels: list[tuple[str, str, str]]) -> dict[tuple, list[tuple]]:
    answers = {}
    for dashboard, title, text in panels:
        for start, end in RANGES:
            for chosen in FILTERS:
                sql = gm.expand(text, _variables(**chosen), _context(start, end))
                key = (dashboard, title, start, end, tuple(sorted((k, tuple(v)) for k, v in chosen.items())))
                answers[key] = client.query(sql).result_rows
    return answers


def _same(left: list[tuple], right: list[tuple]) -> bool:
    if len(left) != len(right):
        return False
    for row_l, row_r in zip(left, right, strict=True):
        for a, b in zip(row_l, row_r, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                if not (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
                    return False
            elif a != b:
                return False
    return True


def test_rollup_panels_answer_alike_before_and_after_the_rollup_merges(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TRACEHOUSE_PRICE_FILE", raising=False)
    price_file = tmp_path / "prices.toml"
    price_file.write_text(PRICES_V1)
    config = parse_config({"data_dir": str(tmp_path / "data"), "pricing": {"price_file": str(price_file)}}, environ={})
    writer = TraceStore(config.store_url)
    client = store.connect(config.store_url)
    try:
        client.command("SYSTEM STOP MERGES llm_daily")
        rows = _spans()
        for n, row in enumerate(rows):  # cached input, so "Cache savings" (a ratio per row) has something to say
            if row["InputTokens"]:
                row["CacheReadTokens"] = (n * 13) % 60
        batch = build(config).price(SpanBatch({name: [r[name] for r in rows] for name in rows[0]}))
        for part in (slice(0, None, 3), slice(1, None, 3), slice(2, None, 3)):  # every key in each insert
            writer.insert(*encode_rows(SpanBatch({name: values[part] for name, values in batch.columns.items()})))
        stored = client.query("SELECT count() FROM llm_daily").result_rows[0][0]
        keys = client.query(f"SELECT count() FROM (SELECT 1 FROM llm_daily GROUP BY {KEY})").result_rows[0][0]
        assert stored > keys * 3 // 2, "the rollup should hold several rows per key (three inserts, merges stopped)"

        panels = _rollup_panels()
        titles = {title for _, title, _ in panels}
        assert {"Cost per call by model", "Cache savings", "Daily cost by feature", "Total cost"} <= titles
        unmerged = _answers(client, panels)

        client.command("SYSTEM START MERGES llm_daily")
        client.command("OPTIMIZE TABLE llm_daily FINAL")
        assert client.query("SELECT count() FROM llm_daily").result_rows[0][0] == keys
        merged = _answers(client, panels)

        assert any(rows for rows in merged.values() if rows and any(v not in (0, None) for v in rows[0]))
        savings = [rows[0][0] for key, rows in merged.items() if key[1] == "Cache savings"]
        assert any(value > 0 for value in savings)
        differ = [key for key in merged if not _same(unmerged[key], merged[key])]
        assert not differ, f"{len(differ)} answers changed with the merge, e.g. {differ[0]}"
    finally:
        client.close()
        writer.close()
