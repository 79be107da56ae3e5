"""Costs end to end: OTel GenAI spans over OTLP/HTTP into a running collector (normalize -> price),
read back with `tracehouse sql`, against hand computations. Catalogue prices are genai-prices 0.2.3's.
The price file comes from TRACEHOUSE_PRICE_FILE; its effective dates are relative to today, so the
spans stay recent."""

from __future__ import annotations

import argparse
import io
import secrets
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from collector_process import sql_rows
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracehouse.collector import prices_cli
from tracehouse.collector.config import Config

M = D(1_000_000)
DAY_NS = 86_400 * 1_000_000_000


def request(spans: list[tuple[str, int, dict]]) -> bytes:
    """One export request: (span name, start ns, attributes) each, attributes str or int valued."""
    message = ExportTraceServiceRequest()
    resource = message.resource_spans.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "support-bot"
    scope = resource.scope_spans.add()
    for name, start, attributes in spans:
        span = scope.spans.add()
        span.trace_id, span.span_id = secrets.token_bytes(16), secrets.token_bytes(8)
        span.name, span.kind = name, 3
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + 500_000_000
        for key, value in attributes.items():
            attr = span.attributes.add()
            attr.key = key
            if isinstance(value, int):
                attr.value.int_value = value
            else:
                attr.value.string_value = value
    return message.SerializeToString()


def chat(provider: str | None, model: str, response_model: str = "", **usage) -> dict:
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if provider:
        attrs["gen_ai.provider.name"] = provider
    if response_model:
        attrs["gen_ai.response.model"] = response_model
    names = {
        "input": "gen_ai.usage.input_tokens",
        "output": "gen_ai.usage.output_tokens",
        "cache_read": "gen_ai.usage.cache_read.input_tokens",
        "cache_write": "gen_ai.usage.cache_creation.input_tokens",
        "reasoning": "gen_ai.usage.reasoning.output_tokens",
    }
    attrs.update({names[kind]: count for kind, count in usage.items()})
    return attrs


def test_costs_through_otlp_match_hand_computations(start_collector, tmp_path):
    now = time.time_ns()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    price_file = tmp_path / "prices.toml"
    price_file.write_text(
        f"""
[[price]]
model = "house-model"
input = 1
output = 2

[[price]]
model = "house-model"
effective_from = {yesterday.isoformat()}
input = 0.5
output = 1
"""
    )
    collector = start_collector(env={"TRACEHOUSE_PRICE_FILE": str(price_file)})
    spans = [
        ("cached", now, chat("openai", "gpt-4o-mini", input=1000, cache_read=400, output=200)),
        (
            "anthropic",
            now,
            chat("anthropic", "claude-3-5-sonnet-20241022", input=5000, cache_read=3000, cache_write=1000, output=500),
        ),
        ("reasoning", now, chat("openai", "o3", input=1000, output=2000, reasoning=1500)),
        (
            "tiered",
            now,
            chat("anthropic", "claude-sonnet-4-5", input=250_000, cache_read=50_000, output=1000),
        ),
        ("dated", now, chat("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", input=1_000_000, output=1_000_000)),
        ("prefixed", now, chat(None, "openai/gpt-4o", input=1000, output=100)),
        ("user-old", now - 3 * DAY_NS, chat("acme", "house-model", input=1000, output=1000)),
        ("user-new", now, chat("acme", "house-model", input=1000, output=1000)),
        ("provided", now, chat("openai", "gpt-4o-mini", input=1000, output=200) | {"llm.cost.total": "0.0123"}),
        ("unknown", now, chat("openai", "mystery-model", input=1000, output=100)),
        ("agent", now, {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o-mini"}),
    ]
    post = urllib.request.Request(
        collector.traces_url, request(spans), {"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(post, timeout=30) as response:
        assert response.status == 200

    rows = {
        row["SpanName"]: row
        for row in sql_rows(
            collector.data_dir,
            "SELECT SpanName, toString(CostUsd) AS cost, toString(InputCostUsd) AS input_cost, "
            "toString(CacheReadCostUsd) AS cache_read_cost, toString(CacheWriteCostUsd) AS cache_write_cost, "
            "toString(ReasoningCostUsd) AS reasoning_cost, CostSource, PriceModel, PriceEffectiveFrom FROM otel_traces",
        )
    }
    assert len(rows) == len(spans)

    def cost(name: str, column: str = "cost") -> D | None:
        value = rows[name][column]
        return None if value is None else D(value)

    # gpt-4o-mini: input 0.15, cache read 0.075, output 0.6
    assert cost("cached") == 600 * D("0.15") / M + 400 * D("0.075") / M + 200 * D("0.6") / M == D("0.00024")
    assert cost("cached", "cache_read_cost") == 400 * D("0.075") / M
    # claude-3-5-sonnet: input 3, cache read 0.3, cache write 3.75, output 15
    assert cost("anthropic", "input_cost") == (5000 - 3000 - 1000) * D(3) / M
    assert cost("anthropic", "cache_write_cost") == 1000 * D("3.75") / M
    assert cost("anthropic") == D("0.003") + 3000 * D("0.3") / M + D("0.00375") + 500 * D(15) / M == D("0.01515")
    # o3 (since 2025-06-10): input 2, output 8; reasoning tokens are output tokens
    assert cost("reasoning", "reasoning_cost") == 1500 * D(8) / M == D("0.012")
    assert cost("reasoning") == 1000 * D(2) / M + 500 * D(8) / M + D("0.012") == D("0.018")
    # claude-sonnet-4-5 above 200k prompt tokens: input 6, cache read 0.6, output 22.5
    assert cost("tiered") == 200_000 * D(6) / M + 50_000 * D("0.6") / M + 1000 * D("22.5") / M == D("1.2525")
    assert cost("dated") == 1_000_000 * D("0.15") / M + 1_000_000 * D("0.6") / M == D("0.75")
    assert rows["dated"]["PriceModel"] == "gpt-4o-mini"
    # gpt-4o: input 2.5, output 10
    assert cost("prefixed") == 1000 * D("2.5") / M + 100 * D(10) / M == D("0.0035")
    assert cost("user-old") == 1000 * D(1) / M + 1000 * D(2) / M == D("0.003")
    assert cost("user-new") == 1000 * D("0.5") / M + 1000 * D(1) / M == D("0.0015")
    assert [rows[n]["CostSource"] for n in ("user-old", "user-new")] == ["user", "user"]
    assert [rows[n]["PriceEffectiveFrom"] for n in ("user-old", "user-new")] == ["", yesterday.isoformat()]
    assert (cost("provided"), rows["provided"]["CostSource"]) == (D("0.0123"), "provided")
    assert (cost("unknown"), rows["unknown"]["CostSource"]) == (None, "unknown")
    assert (cost("agent"), rows["agent"]["CostSource"]) == (None, "")

    # The daily rollup has every priced call (the unknown one counted, not priced).
    rollup = sql_rows(
        collector.data_dir,
        "SELECT toString(sum(cost_usd)) AS cost, sum(calls) AS calls, sum(unpriced_calls) AS unpriced FROM llm_daily",
    )[0]
    expected = sum(cost(n) for n in rows if cost(n) is not None)
    assert (D(rollup["cost"]), int(rollup["calls"]), int(rollup["unpriced"])) == (expected, 10, 1)

    # `tracehouse prices unknown` asks the running collector.
    parser = argparse.ArgumentParser()
    prices_cli.add_parser(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    code = prices_cli.run(parser.parse_args(["prices", "unknown"]), Config(data_dir=collector.data_dir), out, out)
    assert code == 0, out.getvalue()
    assert out.getvalue().splitlines()[1].split()[:3] == ["openai", "mystery-model", "1"]
