"""/metrics tells what the collector did with real traffic: requests, spans, redactions, unpriced calls, inserts."""

from __future__ import annotations

import urllib.request

from collector_process import wait_drained
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


def test_metrics_count_what_happened(collector):
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
