"""Bad input gets the status the OTLP specification prescribes, with a google.rpc.Status body that names
the problem, and leaves the collector serving and everything valid stored."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request

import grpc
import pytest
from collector_process import CollectorProcess, sql_rows
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

LIMIT = 200_000
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRUNCATED_PROTOBUF = b"\x0a\xff\xff\xff\x0f\x01"  # field 1, claims a ~4 GB length, then ends


@pytest.fixture(scope="module")
def small_collector(tmp_path_factory):
    proc = CollectorProcess(tmp_path_factory.mktemp("errors") / "data", "--max-request-bytes", str(LIMIT)).start()
    yield proc
    proc.kill()


def _post(url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _span_json(name: str, trace_id: str = "5b8efff798038103d269b633813fc60c", span_id: str = "eee19b7ec3c1b174"):
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000100000000",
    }


def _request_json(service: str, spans: list[dict]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                    "scopeSpans": [{"spans": spans}],
                }
            ]
        }
    ).encode()


def _request_proto(
    service: str, spans: int, name: str = "s", trace_id: bytes = b"\x01" * 16
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for i in range(spans):
        span = ss.spans.add()
        span.trace_id = trace_id
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = name
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = 1_700_000_000_000_001_000
    return request


def _assert_still_serving(collector: CollectorProcess, service: str) -> None:
    status, _, _ = _post(
        collector.traces_url, _request_json(service, [_span_json("after")]), {"Content-Type": "application/json"}
    )
    assert status == 200
    assert collector.alive()


# --- OTLP/HTTP -----------------------------------------------------------------------------------


def test_http_undecodable_protobuf_is_400_with_status(small_collector):
    status, headers, body = _post(
        small_collector.traces_url, TRUNCATED_PROTOBUF, {"Content-Type": "application/x-protobuf"}
    )
    assert status == 400
    assert headers["Content-Type"] == "application/x-protobuf"
    rpc_status = status_pb2.Status.FromString(body)
    assert rpc_status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "ExportTraceServiceRequest" in rpc_status.message
    _assert_still_serving(small_collector, "after-bad-proto")


@pytest.mark.parametrize(
    ("body", "phrase"),
    [(b"{not json", "not valid JSON"), (b'{"resourceSpans": "nope"}', "OTLP/JSON"), (b"[1,2]", "JSON object")],
)
def test_http_bad_json_is_400_with_json_status(small_collector, body, phrase):
    status, headers, reply = _post(small_collector.traces_url, body, {"Content-Type": "application/json"})
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(reply)
    assert doc["code"] == 3 and phrase in doc["message"]
    _assert_still_serving(small_collector, "after-bad-json")


def test_http_wrong_method_is_405(small_collector):
    """A GET (a browser opening the endpoint) gets its Status as JSON it can show, not protobuf bytes."""
    status, headers, body = _post(small_collector.traces_url, b"", {}, method="GET")
    assert status == 405
    assert "POST" in headers["Allow"].split(", ")
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["message"] == "only POST is allowed on /v1/traces"


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}],
)
def test_http_unsupported_media_is_415(small_collector, headers):
    status, _, body = _post(small_collector.traces_url, b"abc", headers)
    assert status == 415
    assert b"unsupported" in body


def test_http_oversize_body_is_413_before_and_after_decompression(small_collector):
    big = _request_proto("too-big", 1, name="x" * (LIMIT + 10)).SerializeToString()
    status, _, body = _post(small_collector.traces_url, big, {"Content-Type": "application/x-protobuf"})
    assert status == 413
    assert status_pb2.Status.FromString(body).code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    bomb = gzip.compress(big)
    assert len(bomb) < LIMIT // 10
    status, _, body = _post(
        small_collector.traces_url, bomb, {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    )
    assert status == 413
    assert "limit" in status_pb2.Status.FromString(body).message
    count = sql_rows(small_collector.data_dir, "SELECT count() AS n FROM otel_traces WHERE ServiceName = 'too-big'")
    assert int(count[0]["n"]) == 0
    _assert_still_serving(small_collector, "after-413")


def test_http_corrupt_gzip_is_400(small_collector):
    status, _, body = _post(
        small_collector.traces_url,
        b"\x1f\x8b\x08\x00garbage",
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert status == 400
    assert "gzip" in status_pb2.Status.FromString(body).message


@pytest.mark.parametrize(("body", "content_type"), [(b"", "application/x-protobuf"), (b"{}", "application/json")])
def test_http_empty_request_succeeds(small_collector, body, content_type):
    status, _, reply = _post(small_collector.traces_url, body, {"Content-Type": content_type})
    assert status == 200


def test_http_partial_success_stores_valid_spans(small_collector):
    body = _request_json(
        "partial-http",
        [
            _span_json("good"),
            _span_json("short-trace-id", trace_id="0102030405"),
            _span_json("zero-span-id", span_id="0000000000000000"),
        ],
    )
    status, _, reply = _post(small_collector.traces_url, body, {"Content-Type": "application/json"})
    assert status == 200
    partial = json.loads(reply)["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 2
    assert "trace_id must be 16 bytes" in partial["errorMessage"]
    assert "span_id must not be all zeros" in partial["errorMessage"]
    rows = sql_rows(small_collector.data_dir, "SELECT SpanName FROM otel_traces WHERE ServiceName = 'partial-http'")
    assert rows == [{"SpanName": "good"}]


# --- OTLP/gRPC -----------------------------------------------------------------------------------


@pytest.fixture
def channel(small_collector):
    with grpc.insecure_channel(
        small_collector.grpc_endpoint, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as ch:
        yield ch


def test_grpc_undecodable_request_is_invalid_argument_with_details(channel, small_collector):
    export = channel.unary_unary(EXPORT)
    with pytest.raises(grpc.RpcError) as info:
        export(TRUNCATED_PROTOBUF, timeout=10)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in error.details()
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    assert status_pb2.Status.FromString(details).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    _assert_still_serving(small_collector, "after-grpc-bad")


def test_grpc_oversize_request_is_resource_exhausted(channel, small_collector):
    stub = TraceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Export(_request_proto("grpc-too-big", 1, name="y" * (LIMIT + 10)), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_still_serving(small_collector, "after-grpc-413")


def test_grpc_empty_request_succeeds(channel):
    response = TraceServiceStub(channel).Export(ExportTraceServiceRequest(), timeout=10)
    assert response == ExportTraceServiceResponse()


def test_grpc_partial_success(channel, small_collector):
    request = _request_proto("partial-grpc", 3)
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01\x02"
    response = TraceServiceStub(channel).Export(request, timeout=10)
    assert response.partial_success.rejected_spans == 1
    assert "trace_id must be 16 bytes, got 2" in response.partial_success.error_message
    rows = sql_rows(small_collector.data_dir, "SELECT count() AS n FROM otel_traces WHERE ServiceName = 'partial-grpc'")
    assert int(rows[0]["n"]) == 2


def test_a_span_with_a_link_of_a_bad_id_length_is_rejected_the_others_kept(channel, small_collector):
    """A link's trace id of 5 bytes was stored as 10 hex digits, a link to no trace: the OTel Collector refuses
    such a request, we reject the span and name the link. Empty link ids (not set) stay accepted."""
    request = _request_proto("bad-link", 4)
    spans = request.resource_spans[0].scope_spans[0].spans
    for n, span in enumerate(spans):
        span.name = f"span-{n}"
    bad_trace, bad_span = spans[0].links.add(), spans[1].links.add()
    spans[2].links.add()  # no ids set
    bad_trace.trace_id, bad_trace.span_id = b"\x05" * 5, b"\x06" * 8
    bad_span.trace_id, bad_span.span_id = b"\x05" * 16, b"\x06" * 3
    good = spans[3].links.add()
    good.trace_id, good.span_id = b"\x07" * 16, b"\x08" * 8
    response = TraceServiceStub(channel).Export(request, timeout=10)
    assert response.partial_success.rejected_spans == 2
    message = response.partial_success.error_message
    assert "link 0: trace_id must be empty or 16 bytes, got 5" in message, message
    assert "link 0: span_id must be empty or 8 bytes, got 3" in message, message
    rows = sql_rows(
        small_collector.data_dir,
        "SELECT SpanName AS name, Links.TraceId AS links FROM otel_traces WHERE ServiceName = 'bad-link' ORDER BY name",
    )
    assert [(row["name"], row["links"]) for row in rows] == [("span-2", [""]), ("span-3", ["07" * 16])], rows
