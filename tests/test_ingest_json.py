"""OTLP/JSON as the specification writes it (hex ids, integer enums, lowerCamelCase, int64 as strings or
numbers, unknown fields) is stored exactly like the same request sent as protobuf."""

from __future__ import annotations

import copy
import gzip
import json
import urllib.request

from collector_process import sql_rows
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACE_ID = "5b8efff798038103d269b633813fc60c"


def otlp_json(service: str) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service}},
                        {"key": "host.cores", "value": {"intValue": 8}},
                    ],
                    "someFutureField": {"ignored": True},
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "json-scope", "version": "0.9"},
                        "spans": [
                            {
                                "traceId": TRACE_ID,
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "traceState": "a=b",
                                "name": "I'm a server span",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                                "attributes": [
                                    {"key": "my.int", "value": {"intValue": "9007199254740993"}},
                                    {"key": "my.num", "value": {"intValue": 7}},
                                    {"key": "my.double", "value": {"doubleValue": 0.1}},
                                    {"key": "my.bool", "value": {"boolValue": False}},
                                    {"key": "my.empty", "value": {"stringValue": ""}},
                                    {"key": "my.zero", "value": {"intValue": "0"}},
                                    {"key": "my.unset", "value": {}},
                                    {"key": "my.bytes", "value": {"bytesValue": "aGk="}},
                                    {
                                        "key": "my.map",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {"key": "z", "value": {"intValue": "1"}},
                                                    {"key": "a", "value": {"stringValue": "x"}},
                                                ]
                                            }
                                        },
                                    },
                                    {
                                        "key": "my.array",
                                        "value": {
                                            "arrayValue": {"values": [{"stringValue": "s"}, {"doubleValue": 1e21}, {}]}
                                        },
                                    },
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1544712660500000000",
                                        "name": "exception",
                                        "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}],
                                    }
                                ],
                                "links": [
                                    {
                                        "traceId": "11111111111111111111111111111111",
                                        "spanId": "2222222222222222",
                                        "traceState": "k=v",
                                        "attributes": [{"key": "why", "value": {"stringValue": "retry"}}],
                                    }
                                ],
                                "status": {"code": 2, "message": "went wrong"},
                                "unknownSpanField": 1,
                            }
                        ],
                    }
                ],
            }
        ]
    }


def _post(url: str, body: bytes, content_type: str, headers: dict | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


def _as_protobuf(doc: dict) -> bytes:
    """The same request through the protobuf JSON mapping (ids base64), serialized as protobuf."""
    doc = copy.deepcopy(doc)
    import base64

    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for holder in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in holder:
                            holder[key] = base64.b64encode(bytes.fromhex(holder[key])).decode()
    return json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True).SerializeToString()


ROW_SQL = """
SELECT toUnixTimestamp64Nano(Timestamp) AS ts, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind,
       ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage,
       arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ts, Events.Name AS event_names,
       Events.Attributes AS event_attrs, Links.TraceId AS lt, Links.SpanId AS ls, Links.TraceState AS lst,
       Links.Attributes AS la
FROM otel_traces WHERE ServiceName = '{service}'
"""


def test_otlp_json_is_stored_like_protobuf(collector):
    status, content_type, body = _post(
        collector.traces_url, json.dumps(otlp_json("svc-json")).encode(), "application/json"
    )
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == {}
    status, content_type, body = _post(
        collector.traces_url,
        gzip.compress(json.dumps(otlp_json("svc-json-gzip")).encode()),
        "application/json",
        {"Content-Encoding": "gzip"},
    )
    assert status == 200
    status, content_type, body = _post(
        collector.traces_url, _as_protobuf(otlp_json("svc-proto")), "application/x-protobuf"
    )
    assert status == 200 and content_type == "application/x-protobuf"
    ExportTraceServiceResponse.FromString(body)

    (from_json,) = sql_rows(collector.data_dir, ROW_SQL.format(service="svc-json"))
    (from_gzip,) = sql_rows(collector.data_dir, ROW_SQL.format(service="svc-json-gzip"))
    (from_proto,) = sql_rows(collector.data_dir, ROW_SQL.format(service="svc-proto"))
    for row in (from_json, from_gzip, from_proto):
        row["ResourceAttributes"].pop("service.name")
    assert from_json == from_proto == from_gzip

    assert int(from_json["ts"]) == 1544712660000000000
    assert int(from_json["Duration"]) == 1_000_000_000
    assert from_json["TraceId"] == TRACE_ID
    assert (from_json["SpanId"], from_json["ParentSpanId"]) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (from_json["SpanKind"], from_json["StatusCode"], from_json["StatusMessage"]) == (
        "Server",
        "Error",
        "went wrong",
    )
    assert from_json["ResourceAttributes"] == {"host.cores": "8"}
    assert from_json["SpanAttributes"] == {
        "my.int": "9007199254740993",
        "my.num": "7",
        "my.double": "0.1",
        "my.bool": "false",
        "my.empty": "",
        "my.zero": "0",
        "my.unset": "",
        "my.bytes": "aGk=",
        "my.map": '{"a":"x","z":1}',
        "my.array": '["s",1e+21,null]',
    }
    assert from_json["event_names"] == ["exception"]
    assert [int(t) for t in from_json["event_ts"]] == [1544712660500000000]
    assert from_json["event_attrs"] == [{"exception.message": "boom"}]
    assert (from_json["lt"], from_json["ls"], from_json["lst"], from_json["la"]) == (
        ["11111111111111111111111111111111"],
        ["2222222222222222"],
        ["k=v"],
        [{"why": "retry"}],
    )
