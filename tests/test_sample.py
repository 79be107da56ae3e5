"""Content sampling: outliers keep their content, a share of traces keep theirs by trace id, the rest
lose prompts and responses but keep model, tokens, cost and latency."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from collector_process import sql_rows
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import ConfigError, load_config, parse_config
from tracehouse.collector.stages import sample
from tracehouse.collector.stages.sample import ContentSampler


def _batch(rows: list[dict]) -> SpanBatch:
    columns = {
        name: [row.get(name, default) for row in rows]
        for name, default in (
            ("TraceId", ""),
            ("StatusCode", "Unset"),
            ("ErrorType", ""),
            ("FinishReason", "stop"),
            ("CostUsd", None),
            ("Duration", 1_000_000),
        )
    }
    return SpanBatch(columns | {"SpanId": [str(i) for i in range(len(rows))]})


def test_outliers_keep_content_and_so_does_the_rest_of_their_trace():
    sampler = ContentSampler(share=0.0, slow_ms=5000, costly_usd=Decimal("0.01"))
    batch = sampler(
        _batch(
            [
                {"TraceId": "a" * 32, "StatusCode": "Error"},
                {"TraceId": "a" * 32},  # same trace as the error
                {"TraceId": "b" * 32, "FinishReason": "content_filter"},
                {"TraceId": "c" * 32, "Duration": 6_000_000_000},
                {"TraceId": "d" * 32, "CostUsd": Decimal("0.02")},
                {"TraceId": "e" * 32, "CostUsd": Decimal("0.001")},
                {"TraceId": "f" * 32, "ErrorType": "RateLimitError"},
            ]
        )
    )
    assert batch.columns["ContentSampled"] == ["error", "error", "refusal", "slow", "costly", "dropped", "error"]


def test_share_is_decided_per_trace_and_close_to_the_setting():
    sampler = ContentSampler(share=0.25)
    rng = random.Random(5)
    trace_ids = [f"{rng.getrandbits(128):032x}" for _ in range(4000)]
    rows = [{"TraceId": t} for t in trace_ids for _ in range(2)]  # two spans per trace
    decisions = sampler(_batch(rows)).columns["ContentSampled"]
    assert all(decisions[2 * i] == decisions[2 * i + 1] for i in range(len(trace_ids)))
    kept = decisions.count("share") / len(decisions)
    assert 0.22 < kept < 0.28
    again = ContentSampler(share=0.25)(_batch(rows)).columns["ContentSampled"]
    assert again == decisions  # deterministic: every collector decides the same


def test_sampling_is_off_by_default_and_validated():
    assert sample.build(load_config(environ={})) is None
    on = parse_config({"sampling": {"content_share": 0.5, "slow_ms": 100}}, environ={})
    assert sample.build(on).share == 0.5
    assert sample.build(load_config(environ={"TRACEHOUSE_CONTENT_SHARE": "0"})) is not None
    for bad in ({"content_share": 2}, {"content_share": "lots"}, {"keep_everything": True}):
        with pytest.raises(ConfigError, match="sampling"):
            parse_config({"sampling": bad}, environ={})


PROMPT = "Summarise the refund policy for order 1234"


def _send(collector, failing: bool, name: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "sampled"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url)))
    with provider.get_tracer("s").start_as_current_span(
        name,
        attributes={
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "input.value": PROMPT,
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": PROMPT,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Refunds within 30 days.",
            "output.value": "Refunds within 30 days.",
            "llm.token_count.prompt": 1000,
            "llm.token_count.completion": 100,
        },
    ) as span:
        if failing:
            span.set_status(Status(StatusCode.ERROR, "upstream 500"))
    provider.shutdown()


@pytest.mark.parametrize("redaction", ["on", "off"])
def test_dropped_content_never_reaches_the_store_but_metadata_does(start_collector, tmp_path, redaction):
    config = tmp_path / "sampling.toml"
    config.write_text("[sampling]\ncontent_share = 0\n")
    collector = start_collector("--config", str(config), env={"TRACEHOUSE_REDACTION": redaction})
    _send(collector, failing=False, name="ordinary")
    _send(collector, failing=True, name="failed")
    rows = {
        r["span_name"]: r
        for r in sql_rows(
            collector.data_dir,
            "SELECT span_name, content_sampled, messages, response, prompt_tokens, completion_tokens, cost_usd, "
            "model, latency_ms_total FROM llm_calls ORDER BY span_name",
        )
    }
    ordinary, failed = rows["ordinary"], rows["failed"]
    assert (ordinary["content_sampled"], failed["content_sampled"]) == ("dropped", "error")
    assert ordinary["messages"] == "" and ordinary["response"] == ""
    assert PROMPT in failed["messages"] and "30 days" in failed["response"]
    for row in (ordinary, failed):
        assert (int(row["prompt_tokens"]), int(row["completion_tokens"]), row["model"]) == (1000, 100, "gpt-4o-mini")
        # 1000 input tokens at $0.15/M + 100 output tokens at $0.60/M
        assert Decimal(str(row["cost_usd"])) == Decimal("0.00021")
        assert float(row["latency_ms_total"]) >= 0
    attributes = sql_rows(
        collector.data_dir,
        "SELECT SpanName, mapKeys(SpanAttributes) AS keys FROM otel_traces WHERE ServiceName = 'sampled'",
    )
    keys = {r["SpanName"]: set(r["keys"]) for r in attributes}
    assert "input.value" not in keys["ordinary"] and "llm.input_messages.0.message.content" not in keys["ordinary"]
    assert "llm.token_count.prompt" in keys["ordinary"]
    assert "input.value" in keys["failed"]
