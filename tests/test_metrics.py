"""/metrics tells what the collector did with real traffic: requests, spans, redactions, unpriced calls, inserts."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from decimal import Decimal

from collector_process import sql_rows, wait_drained
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def _metrics(collector) -> dict[str, float]:
    with urllib.request.urlopen(collector.http_endpoint + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_count_what_happened(start_collector):
    collector = start_collector(migrated=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "metered"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)))
    tracer = provider.get_tracer("m")
    with tracer.start_as_current_span(
        "chat",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "acme-private-model-7",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
            "note": "mail me at jane.doe@example.org",
        },
    ):
        pass
    with tracer.start_as_current_span("plain"):
        pass
    provider.shutdown()
    wait_drained(collector.data_dir)

    m = _metrics(collector)
    assert m['tracehouse_requests_total{outcome="ok",transport="grpc"}'] == 2
    assert m["tracehouse_spans_received_total"] == 2
    assert m["tracehouse_spans_accepted_total"] == 2
    assert m['tracehouse_redactions_total{kind="email"}'] == 1
    assert m["tracehouse_unpriced_calls_total"] == 1
    assert m["tracehouse_insert_rows_total"] == 2
    assert m["tracehouse_spool_bytes"] == 0
    assert m["tracehouse_store_up"] == 1
    assert m["tracehouse_insert_latency_seconds_count"] >= 1


def test_worker_processes_run_the_same_pipeline(start_collector):
    """--workers 2: parse, decode, normalize, price, redact and encode happen in worker processes."""
    collector = start_collector("--workers", "2", migrated=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "pooled"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)))
    tracer = provider.get_tracer("w")
    for i in range(6):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
            "note": f"call {i}: write to ops{i}@example.com",
        }
        with tracer.start_as_current_span(f"chat-{i}", attributes=attributes):
            pass
    provider.shutdown()
    rows = sql_rows(
        collector.data_dir,
        "SELECT SpanName, SpanAttributes['note'] AS note, CostUsd, RedactionCounts['email'] AS emails "
        "FROM otel_traces WHERE ServiceName = 'pooled' ORDER BY SpanName",
    )
    assert [r["note"] for r in rows] == [f"call {i}: write to [EMAIL]" for i in range(6)]
    # gpt-4o-mini: 1000 input tokens at $0.15/M + 100 output tokens at $0.60/M
    assert {Decimal(str(r["CostUsd"])) for r in rows} == {
        Decimal("1000") * Decimal("0.15") / 10**6 + 100 * Decimal("0.60") / 10**6
    }
    assert {int(r["emails"]) for r in rows} == {1}
    assert _metrics(collector)['tracehouse_redactions_total{kind="email"}'] == 6

    # kill -9 leaves no pool behind: the forkserver and the workers under it go too.
    helpers = _descendants(collector.proc.pid)
    assert len(helpers) >= 3  # the forkserver and two workers
    collector.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in helpers):
        time.sleep(0.2)
    assert not [pid for pid in helpers if _alive(pid)], "worker processes outlived a killed collector"


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        found.extend(int(c) for c in children)
        queue.extend(int(c) for c in children)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
