"""Redaction in the running collector: hashed ids still group across a restart with the same secret, and a
catastrophic-backtracking user pattern with a 10 MB attribute does not stall it."""

from __future__ import annotations

import time
import urllib.request

from collector_process import CollectorProcess, sql_rows
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

CONFIG = """
[redaction]
hash_secret = "test-secret-1"

[redaction.attributes]
"user.id" = "hash"

[[redaction.rules]]
name = "runaway"
pattern = '(a+)+$'
replacement = "[RUNAWAY]"
"""


def _send_users(collector: CollectorProcess, users: list[str], service: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url)))
    tracer = provider.get_tracer("r")
    for i, user in enumerate(users):
        with tracer.start_as_current_span(f"call-{i}", attributes={"user.id": user}):
            pass
    provider.shutdown()


def test_hashed_user_ids_group_across_a_restart(tmp_path):
    config = tmp_path / "redaction.toml"
    config.write_text(CONFIG)
    data_dir = tmp_path / "data"
    first = CollectorProcess(data_dir, "--config", str(config)).start()
    try:
        _send_users(first, ["alice@example.com", "bob@example.com"], "before")
        assert first.stop() == 0
    finally:
        first.kill()
    second = CollectorProcess(data_dir, "--config", str(config)).start()
    try:
        _send_users(second, ["alice@example.com", "carol@example.com"], "after")
        rows = sql_rows(
            data_dir,
            "SELECT ServiceName, SpanName, SpanAttributes['user.id'] AS attr, UserId FROM otel_traces "
            "ORDER BY ServiceName DESC, SpanName",
        )
    finally:
        second.kill()
    tokens = [(r["attr"], r["UserId"]) for r in rows]
    (alice_1, bob), (alice_2, carol) = tokens[:2], tokens[2:]
    assert alice_1 == alice_2  # the same user still groups after the restart
    assert len({alice_1, bob, carol}) == 3  # different users stay apart
    assert all(attr == user_id and attr.startswith("[HASH:") for attr, user_id in tokens)
    assert "example.com" not in str(rows)


def test_runaway_pattern_and_10_mb_value_do_not_stall_the_collector(tmp_path):
    config = tmp_path / "redaction.toml"
    config.write_text(CONFIG)
    collector = CollectorProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", "adversarial"
        span = rs.scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = b"\x07" * 16, b"\x08" * 8, "huge"
        span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_000_001_000
        attribute = span.attributes.add()
        # The worst input for (a+)+$ on a backtracking engine: a long run of 'a' that fails at the end.
        attribute.key, attribute.value.string_value = "input.value", "a" * (10 * 1024 * 1024) + "!"
        post = urllib.request.Request(
            collector.traces_url, data=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
        )
        started = time.monotonic()
        with urllib.request.urlopen(post, timeout=60) as response:
            assert response.status == 200
        elapsed = time.monotonic() - started
        assert elapsed < 30, f"a 10 MB value took {elapsed:.1f}s"
        rows = sql_rows(
            collector.data_dir,
            "SELECT length(SpanAttributes['input.value']) AS n FROM otel_traces WHERE ServiceName = 'adversarial'",
        )
        assert len(rows) == 1 and int(rows[0]["n"]) > 0
        _send_users(collector, ["dave@example.com"], "still-serving")
        assert sql_rows(collector.data_dir, "SELECT count() AS n FROM otel_traces WHERE ServiceName = 'still-serving'")
    finally:
        collector.kill()
