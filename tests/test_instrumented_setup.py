"""tracehouse.instrumentation on its own: configuration from the standard OTEL_* variables, idempotent setup(),
the context helper's nesting, steps (sync, async, failing), and a burst larger than the SDK's default queue
arriving whole. The app runs in its own process (tests/instrumented_setup_app.py) against a real collector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from collector_process import sql_rows

from tracehouse.instrumentation._provider import (
    DEFAULT_ENDPOINTS,
    GRPC,
    HTTP_PROTOBUF,
    resolve_endpoint,
    resolve_protocol,
)

APP = Path(__file__).with_name("instrumented_setup_app.py")
BURST = 10_000  # five times the SDK's default queue of 2048, produced faster than it can be exported

pytestmark = pytest.mark.timeout(180)

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_grpc_to_the_local_collector(clean_env: pytest.MonkeyPatch) -> None:
    assert resolve_protocol(None) == GRPC
    assert resolve_endpoint(None, GRPC) == DEFAULT_ENDPOINTS[GRPC] == "http://127.0.0.1:4317"
    assert resolve_endpoint(None, HTTP_PROTOBUF) == "http://127.0.0.1:4318/v1/traces"


def test_standard_variables_and_arguments(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert resolve_protocol(None) == HTTP_PROTOBUF
    assert resolve_protocol("grpc") == GRPC  # an argument wins
    assert resolve_endpoint(None, HTTP_PROTOBUF) == "http://collector:4318/v1/traces"  # a base URL
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom")
    assert resolve_endpoint(None, HTTP_PROTOBUF) == "http://traces:9999/custom"  # used as it is
    assert resolve_endpoint("collector.internal:4317", GRPC) == "http://collector.internal:4317"
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert resolve_protocol(None) == GRPC
    with pytest.raises(ValueError, match="http/protobuf"):
        resolve_protocol("http/json")


def _by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (span,) = [s for s in spans if s["SpanName"] == name]
    return span


def test_setup_from_the_environment(collector: Any) -> None:
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_RESOURCE_ATTRIBUTES": "tracehouse.tenant=acme,deployment.environment=test",
    }
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_BSP_MAX_QUEUE_SIZE"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, str(APP), str(BURST)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    app = json.loads(result.stdout)
    assert app["same_provider"] and app["global_provider"]
    assert "openai" in app["instrumentors"]
    assert app["warnings"] == ["tracehouse: setup() already ran; keeping its first configuration"]
    assert app["add"] == 5 and app["explode_raised"] and app["generator_refused"]

    spans = sql_rows(
        collector.data_dir,
        "SELECT TraceId, SpanId, ParentSpanId, SpanName, ServiceName, ResourceAttributes, LlmSpanKind, UserId,"
        " SessionId, Feature, TenantId, Metadata, Tags, StatusCode, ErrorType, ErrorMessage,"
        " SpanAttributes['input.value'] AS input, SpanAttributes['output.value'] AS output"
        " FROM otel_traces WHERE SpanName NOT LIKE 'burst-%' ORDER BY Timestamp",
    )
    assert {span["ServiceName"] for span in spans} == {"svc-setup"}
    assert spans[0]["ResourceAttributes"]["deployment.environment"] == "test"

    tagged_step = _by_name(spans, "tagged-step")
    assert tagged_step["SpanId"] == app["tagged"]["span_id"]
    assert tagged_step["LlmSpanKind"] == "CHAIN"
    assert (tagged_step["UserId"], tagged_step["SessionId"], tagged_step["Feature"]) == ("inner-user", "s-1", "nested")
    assert tagged_step["TenantId"] == "acme"  # from the resource: no block set a tenant
    assert json.loads(tagged_step["Metadata"]) == {"team": "a", "level": 2, "feature": "nested"}
    assert tagged_step["Tags"] == ["x", "y"]

    add, outer = _by_name(spans, "add"), _by_name(spans, "sum-of-two")
    assert add["ParentSpanId"] == outer["SpanId"]
    assert json.loads(add["input"]) == {"a": 2, "b": 3} and add["output"] == "5"

    fetch, parse = _by_name(spans, "fetch-async"), _by_name(spans, "parse")
    assert parse["SpanId"] == app["fetch"]["parse"]["span_id"]
    assert parse["ParentSpanId"] == fetch["SpanId"] and parse["input"] == "Oslo"
    assert json.loads(fetch["output"]) == app["fetch"]

    explode = _by_name(spans, "explode")
    assert explode["StatusCode"] == "Error"
    assert (explode["ErrorType"], explode["ErrorMessage"]) == ("ValueError", "the step failed")

    (burst,) = sql_rows(
        collector.data_dir,
        f"SELECT count() AS spans FROM otel_traces WHERE TraceId = '{app['burst']['trace_id']}'",
    )
    assert int(burst["spans"]) == BURST + 1
