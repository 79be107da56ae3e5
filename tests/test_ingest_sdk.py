"""The stock OTel SDK exporters (gRPC and HTTP/protobuf, with and without gzip) against a real collector:
every OTLP field lands as the OTel Collector ClickHouse exporter writes it."""

from __future__ import annotations

import urllib.parse

import clickhouse_connect
import pytest
from collector_process import sql_rows, wait_drained
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags, TraceState

T0 = 1_700_000_000_123_456_789  # ns, with sub-microsecond digits that must survive

ROW_SQL = """
SELECT toUnixTimestamp64Nano(Timestamp) AS ts, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind,
       ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage,
       arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ts, Events.Name AS event_names,
       Events.Attributes AS event_attrs, Links.TraceId AS link_trace_ids, Links.SpanId AS link_span_ids,
       Links.TraceState AS link_states, Links.Attributes AS link_attrs
FROM otel_traces WHERE ServiceName = '{service}' ORDER BY SpanName
"""


def _exporter(transport: str, collector):
    if transport == "grpc":
        return GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    if transport == "grpc-gzip":
        return GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True, compression=GrpcCompression.Gzip)
    if transport == "http":
        return HttpExporter(endpoint=collector.traces_url)
    return HttpExporter(endpoint=collector.traces_url, compression=HttpCompression.Gzip)


def _emit(transport: str, collector, service: str) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(_exporter(transport, collector)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tracehouse.tests", "1.2.3")

    remote_parent = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value1"), ("other", "x")]),
    )
    linked = SpanContext(
        trace_id=0x1234567890ABCDEF1234567890ABCDEF,
        span_id=0x1122334455667788,
        is_remote=True,
        trace_state=TraceState([("lk", "lv")]),
    )
    root = tracer.start_span(
        "root-op",
        context=trace.set_span_in_context(NonRecordingSpan(remote_parent)),
        kind=trace.SpanKind.SERVER,
        start_time=T0,
        links=[Link(linked, {"link.kind": "follows", "link.n": 3})],
        attributes={
            "str": 'hello <world> & "quotes"',
            "int": -42,
            "float": 1.5,
            "float_whole": 2.0,
            "bool": True,
            "str_list": ["a", "b<c"],
            "int_list": [1, 2, 3],
            "float_list": [0.25, 3.0],
            "bool_list": [True, False],
        },
    )
    root.add_event("cache.miss", {"key": "k1", "attempt": 2}, timestamp=T0 + 1_000)
    root.add_event("empty-event", timestamp=T0 + 2_000)
    with trace.use_span(root, end_on_exit=False):
        child = tracer.start_span("child-op", kind=trace.SpanKind.CLIENT, start_time=T0 + 10_000)
        child.set_status(trace.Status(trace.StatusCode.ERROR, "upstream failed"))
        child.end(end_time=T0 + 510_000)
        ok = tracer.start_span("ok-op", kind=trace.SpanKind.PRODUCER, start_time=T0 + 20_000)
        ok.set_status(trace.Status(trace.StatusCode.OK))
        ok.end(end_time=T0 + 30_000)
        consumer = tracer.start_span("zz-consumer", kind=trace.SpanKind.CONSUMER, start_time=T0 + 40_000)
        consumer.end(end_time=T0 + 40_000)
    root.end(end_time=T0 + 1_000_000)
    provider.shutdown()
    return memory.get_finished_spans()


def _expected_resource(span) -> dict[str, str]:
    return {k: str(v) for k, v in span.resource.attributes.items()}


@pytest.mark.parametrize("transport", ["grpc", "grpc-gzip", "http", "http-gzip"])
def test_sdk_exporter_spans_land_field_for_field(transport, collector):
    service = f"svc-{transport}"
    sent = {span.name: span for span in _emit(transport, collector, service)}
    rows = {row["SpanName"]: row for row in sql_rows(collector.data_dir, ROW_SQL.format(service=service))}
    assert set(rows) == {"root-op", "child-op", "ok-op", "zz-consumer"}

    root, child = rows["root-op"], rows["child-op"]
    root_span = sent["root-op"]
    assert int(root["ts"]) == T0
    assert root["TraceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert root["SpanId"] == format(root_span.context.span_id, "016x")
    assert root["ParentSpanId"] == "b7ad6b7169203331"
    assert root["TraceState"] == "vendor=value1,other=x"
    assert root["SpanKind"] == "Server"
    assert root["ServiceName"] == service
    assert root["ResourceAttributes"] == _expected_resource(root_span)
    assert root["ResourceAttributes"]["deployment.environment"] == "test"
    assert (root["ScopeName"], root["ScopeVersion"]) == ("tracehouse.tests", "1.2.3")
    assert root["SpanAttributes"] == {
        "str": 'hello <world> & "quotes"',
        "int": "-42",
        "float": "1.5",
        "float_whole": "2",
        "bool": "true",
        "str_list": '["a","b\\u003cc"]',
        "int_list": "[1,2,3]",
        "float_list": "[0.25,3]",
        "bool_list": "[true,false]",
    }
    assert int(root["Duration"]) == 1_000_000
    assert (root["StatusCode"], root["StatusMessage"]) == ("Unset", "")
    assert [int(t) for t in root["event_ts"]] == [T0 + 1_000, T0 + 2_000]
    assert root["event_names"] == ["cache.miss", "empty-event"]
    assert root["event_attrs"] == [{"key": "k1", "attempt": "2"}, {}]
    assert root["link_trace_ids"] == ["1234567890abcdef1234567890abcdef"]
    assert root["link_span_ids"] == ["1122334455667788"]
    assert root["link_states"] == [""]  # the Python SDK exporter does not send a link's trace state
    assert root["link_attrs"] == [{"link.kind": "follows", "link.n": "3"}]

    assert child["TraceId"] == root["TraceId"]
    assert child["ParentSpanId"] == root["SpanId"]
    assert child["SpanKind"] == "Client"
    assert (child["StatusCode"], child["StatusMessage"]) == ("Error", "upstream failed")
    assert int(child["Duration"]) == 500_000
    assert child["event_names"] == [] and child["link_trace_ids"] == []
    assert (rows["ok-op"]["SpanKind"], rows["ok-op"]["StatusCode"]) == ("Producer", "Ok")
    assert (rows["zz-consumer"]["SpanKind"], int(rows["zz-consumer"]["Duration"])) == ("Consumer", 0)

    # The trace-id lookup table the Grafana trace view uses is filled by its materialized view.
    lookup = sql_rows(
        collector.data_dir,
        "SELECT TraceId, min(Start) AS s, max(End) AS e FROM otel_traces_trace_id_ts "
        f"WHERE TraceId = '{root['TraceId']}' GROUP BY TraceId",
    )
    assert len(lookup) == 1 and lookup[0]["s"].startswith("2023-11-14 22:13:20")


def test_any_clickhouse_client_reads_the_running_collector(collector):
    """clickhouse-connect over the collector's ClickHouse-compatible read-only endpoint, then directly on chDB."""
    _emit("grpc", collector, "svc-cc")
    wait_drained(collector.data_dir)
    url = urllib.parse.urlparse(collector.info["query_url"])
    client = clickhouse_connect.get_client(
        host=url.hostname, port=url.port, username="default", password=collector.info["query_key"]
    )
    live = client.query(
        "SELECT SpanName, SpanKind, toUnixTimestamp64Nano(Timestamp) FROM otel_traces "
        "WHERE ServiceName = 'svc-cc' ORDER BY SpanName"
    ).result_rows
    assert live == [
        ("child-op", "Client", T0 + 10_000),
        ("ok-op", "Producer", T0 + 20_000),
        ("root-op", "Server", T0),
        ("zz-consumer", "Consumer", T0 + 40_000),
    ]
    with pytest.raises(Exception, match="read-only"):
        client.command("INSERT INTO otel_traces (SpanName) VALUES ('x')")
    client.close()

    assert collector.stop() == 0
    direct = clickhouse_connect.get_client(dsn=f"chdb://{(collector.data_dir / 'clickhouse').resolve()}")
    try:
        stored = direct.query(
            "SELECT SpanName, SpanAttributes['int'] FROM otel_traces "
            "WHERE ServiceName = 'svc-cc' AND SpanName = 'root-op'"
        ).result_rows
    finally:
        direct.close()
    assert stored == [("root-op", "-42")]
