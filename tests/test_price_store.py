"""Pricing through real ClickHouse (embedded chDB): priced spans stored with the writer's insert call,
`tracehouse prices reprice` after the price file changed, `prices unknown`, and the daily rollup."""

from __future__ import annotations

import argparse
import io
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from tracehouse.collector import prices_cli, store
from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.config import Config, parse_config
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.reprice import reprice, rollup_select
from tracehouse.collector.runtime import lock_store
from tracehouse.collector.stages.price import build
from tracehouse.collector.writer import TraceStore

M = D(1_000_000)

PRICES_V1 = """
[[price]]
model = "house-model"
input = 1
output = 2
"""
# The house model got cheaper, and we learnt the mystery model's price.
PRICES_V2 = """
[[price]]
model = "house-model"
input = 0.5
output = 1

[[price]]
model = "mystery-model"
input = 2
output = 2
"""


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000_000


def span(
    name: str, ts: int, model: str = "", provider: str = "", attrs=None, status="Unset", kind="LLM", **tokens
) -> dict:
    row = {
        "Timestamp": ts,
        "TraceId": secrets.token_hex(16),
        "SpanId": secrets.token_hex(8),
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": name,
        "SpanKind": "Client",
        "ServiceName": "support-bot",
        "ResourceAttributes": {},
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": attrs or {},
        "Duration": 1_000_000,
        "StatusCode": status,
        "StatusMessage": "",
        "Events.Timestamp": [],
        "Events.Name": [],
        "Events.Attributes": [],
        "Links.TraceId": [],
        "Links.SpanId": [],
        "Links.TraceState": [],
        "Links.Attributes": [],
        "LlmSpanKind": kind if model else "",
        "LlmProvider": provider,
        "LlmRequestModel": model,
        "LlmResponseModel": "",
        "Feature": "answers",
        "InputTokens": tokens.get("input"),
        "OutputTokens": tokens.get("output"),
        "CacheReadTokens": tokens.get("cache_read"),
        "CacheWriteTokens": None,
        "ReasoningTokens": None,
        "InputAudioTokens": None,
        "OutputAudioTokens": None,
    }
    assert list(row)[: len(OTEL_COLUMNS)] == list(OTEL_COLUMNS)
    return row


SPANS = {
    "early": span("early", ns(2025, 2, 1, 10), "house-model", input=1000, output=1000),
    "house": span("house", ns(2025, 3, 1, 10), "house-model", input=1000, output=1000),
    "catalogue": span("catalogue", ns(2025, 3, 2, 10), "gpt-4o-mini", "openai", input=1000, cache_read=400, output=200),
    "provided": span("provided", ns(2025, 3, 1, 11), "house-model", attrs={"llm.cost.total": "0.5"}, input=10),
    "mystery": span("mystery", ns(2025, 3, 1, 12), "mystery-model", "openai", status="Error", input=1000, output=500),
    "mystery2": span("mystery2", ns(2025, 3, 2, 12), "mystery-model", "openai", input=10, output=10),
    "plain": span("plain", ns(2025, 3, 1, 13)),
    # an agent span repeating its child's usage: not a model call, never priced
    "agent": span("agent", ns(2025, 3, 1, 14), "house-model", kind="AGENT", input=1000, output=1000),
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    """A migrated embedded store holding SPANS priced with PRICES_V1, and a Config pointing at both."""
    monkeypatch.delenv("TRACEHOUSE_PRICE_FILE", raising=False)
    price_file = tmp_path / "prices.toml"
    price_file.write_text(PRICES_V1)
    config = parse_config({"data_dir": str(tmp_path / "data"), "pricing": {"price_file": str(price_file)}}, environ={})
    rows = list(SPANS.values())
    batch = build(config).price(SpanBatch({name: [r[name] for r in rows] for name in rows[0]}))
    writer = TraceStore(config.store_url)  # the collector's own insert path
    writer.insert(*encode_rows(batch))
    client = store.connect(config.store_url)
    yield config, client, price_file
    client.close()
    writer.close()


def stored(client) -> dict[str, dict]:
    result = client.query(
        "SELECT SpanName, CostUsd, InputCostUsd, OutputCostUsd, CostSource, PriceModel FROM otel_traces"
    )
    return {row["SpanName"]: row for row in result.named_results()}


def cli(config: Config, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    prices_cli.add_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    code = prices_cli.run(parser.parse_args(["prices", *argv]), config, out, err)
    return code, out.getvalue(), err.getvalue()


def test_priced_batch_is_stored_with_its_costs(env):
    _, client, _ = env
    rows = stored(client)
    assert rows["house"]["CostUsd"] == 1000 * D(1) / M + 1000 * D(2) / M == D("0.003")
    assert (rows["house"]["CostSource"], rows["house"]["PriceModel"]) == ("user", "house-model")
    # gpt-4o-mini: input 0.15, cache read 0.075, output 0.6
    assert rows["catalogue"]["CostUsd"] == 600 * D("0.15") / M + 400 * D("0.075") / M + 200 * D("0.6") / M
    assert (rows["provided"]["CostUsd"], rows["provided"]["CostSource"]) == (D("0.5"), "provided")
    assert (rows["mystery"]["CostUsd"], rows["mystery"]["CostSource"]) == (None, "unknown")
    assert (rows["plain"]["CostUsd"], rows["plain"]["CostSource"]) == (None, "")
    assert (rows["agent"]["CostUsd"], rows["agent"]["CostSource"]) == (None, "")


def test_reprice_after_the_price_file_changed(env):
    config, client, price_file = env
    price_file.write_text(PRICES_V2)
    code, out, err = cli(config, "reprice", "--since", "2025-02-15")
    assert code == 0, err
    rows = stored(client)
    # recomputed with the new file
    assert rows["house"]["CostUsd"] == 1000 * D("0.5") / M + 1000 * D(1) / M == D("0.0015")
    assert rows["house"]["InputCostUsd"] == 1000 * D("0.5") / M
    assert rows["mystery"]["CostUsd"] == 1000 * D(2) / M + 500 * D(2) / M == D("0.003")
    assert rows["mystery"]["CostSource"] == "user"
    assert rows["mystery2"]["CostUsd"] == 10 * D(2) / M + 10 * D(2) / M == D("0.00004")
    # unchanged: the catalogue price, the provided cost, the non-LLM span, and the span before --since
    assert rows["catalogue"]["CostUsd"] == D("0.00024")
    assert (rows["provided"]["CostUsd"], rows["provided"]["CostSource"]) == (D("0.5"), "provided")
    assert (rows["plain"]["CostUsd"], rows["plain"]["CostSource"]) == (None, "")
    assert (rows["agent"]["CostUsd"], rows["agent"]["CostSource"]) == (None, "")
    assert rows["early"]["CostUsd"] == 1000 * D(1) / M + 1000 * D(2) / M == D("0.003")
    # house, catalogue, mystery, mystery2 were priced again; three of them changed
    assert "repriced 4 spans on 2 day(s)" in out and "3 changed" in out
    assert "reprice:" in err  # progress, one line per day and stage when not on a terminal
    assert client.query("SELECT count() FROM system.mutations WHERE NOT is_done").result_rows == [(0,)]
    assert client.query("SELECT count() FROM system.tables WHERE name LIKE 'tracehouse_reprice_%'").result_rows == [
        (0,)
    ]

    # A second run finds nothing to change.
    code, out, _ = cli(config, "reprice", "--since", "2025-02-15")
    assert code == 0 and "repriced 4 spans" in out and "0 changed" in out


def test_reprice_rebuilds_the_daily_rollup(env):
    config, client, price_file = env
    price_file.write_text(PRICES_V2)
    assert cli(config, "reprice", "--since", "2025-02-15")[0] == 0
    rollup = client.query(
        "SELECT day, model, sum(calls), sum(errors), sum(unpriced_calls), sum(cost_usd), sum(input_tokens) "
        "FROM llm_daily GROUP BY day, model ORDER BY day, model"
    ).result_rows
    assert rollup == [
        (date(2025, 2, 1), "house-model", 1, 0, 0, D("0.003"), 1000),  # before --since: V1 price, untouched
        # house 0.0015 (repriced) + provided 0.5
        (date(2025, 3, 1), "house-model", 2, 0, 0, D("0.0015") + D("0.5"), 1010),
        (date(2025, 3, 1), "mystery-model", 1, 1, 0, D("0.003"), 1000),
        (date(2025, 3, 2), "gpt-4o-mini", 1, 0, 0, D("0.00024"), 1000),
        (date(2025, 3, 2), "mystery-model", 1, 0, 0, D("0.00004"), 10),
    ]


def test_rollup_view_and_rebuild_query_agree(env):
    _, client, _ = env
    days = "'2025-02-01', '2025-03-01', '2025-03-02'"
    columns = "day, tenant, service, feature, provider, model"
    from_view = client.query(
        f"SELECT {columns}, sum(calls), sum(errors), sum(unpriced_calls), sum(input_tokens), sum(output_tokens), "
        f"sum(cache_read_tokens), sum(cost_usd), sum(input_cost_usd), sum(output_cost_usd) "
        f"FROM llm_daily GROUP BY {columns} ORDER BY {columns}"
    ).result_rows
    rebuild = rollup_select(client, days)
    rebuilt = client.query(
        f"SELECT {columns}, calls, errors, unpriced_calls, input_tokens, output_tokens, cache_read_tokens, cost_usd, "
        f"input_cost_usd, output_cost_usd FROM ({rebuild}) ORDER BY {columns}"
    ).result_rows
    assert from_view == rebuilt
    assert len(from_view) == 5  # the plain and the agent spans are not model calls
    # The cost-per-call columns (schema/0022): priced calls and the p95 state, the same from both.
    p95 = (
        "SELECT {columns}, sum(priced_calls), round(quantileMerge(0.95)(cost_p95_state), 9) FROM {source} "
        "GROUP BY {columns} ORDER BY {columns}"
    )
    from_view = client.query(p95.format(columns=columns, source="llm_daily")).result_rows
    rebuilt = client.query(p95.format(columns=columns, source=f"({rebuild})")).result_rows
    assert from_view == rebuilt, (from_view, rebuilt)
    assert [(row[5], row[6], row[7] is None) for row in from_view] == [
        ("house-model", 1, False),
        ("house-model", 2, False),
        ("mystery-model", 0, True),  # unpriced: no call in the cost-per-call average or its p95
        ("gpt-4o-mini", 1, False),
        ("mystery-model", 0, True),
    ]


def test_prices_unknown_lists_models_without_a_price(env):
    config, _, _ = env
    code, out, err = cli(config, "unknown")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["provider", "model", "spans", "first", "seen", "last", "seen"]
    assert lines[1].split()[:3] == ["openai", "mystery-model", "2"]
    assert lines[1].split()[3:] == ["2025-03-01", "12:00:00", "2025-03-02", "12:00:00"]
    assert "reprice" in out

    code, out, _ = cli(config, "unknown", "--since", "2025-03-02")
    assert out.splitlines()[1].split()[:3] == ["openai", "mystery-model", "1"]


def test_reprice_refuses_while_a_collector_holds_the_store(env):
    config, _, _ = env
    held = lock_store(config)
    try:
        code, _, err = cli(config, "reprice", "--since", "2025-01-01")
    finally:
        held.close()
    assert code == 1
    assert "stop it first" in err


def test_reprice_in_small_pages_gives_the_same_costs(env):
    config, client, price_file = env
    price_file.write_text(PRICES_V2)
    pages = []
    result = reprice(
        client,
        build(parse_config({"pricing": {"price_file": str(price_file)}}, environ={})),
        datetime(2025, 2, 15, tzinfo=UTC),
        progress=lambda state: pages.append(state.stage),
        page_rows=1,
    )
    assert (result.spans, result.changed, result.days) == (4, 3, [date(2025, 3, 1), date(2025, 3, 2)])
    assert pages.count("updating") == 4  # one mutation per one-span page
    assert result.cost_after == D("0.0015") + D("0.003") + D("0.00024") + D("0.00004")
    rows = stored(client)
    assert (rows["house"]["CostUsd"], rows["mystery"]["CostUsd"]) == (D("0.0015"), D("0.003"))
