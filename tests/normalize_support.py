"""Support for the test_normalize* tests (no tests here): build OTLP requests the way exporters send them,
run them through decode + normalize, and read what the stage reported."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracehouse.collector.columns import LLM_COLUMNS
from tracehouse.collector.stages.decode import decode_request
from tracehouse.collector.stages.normalize import normalize

START = 1_700_000_000_000_000_000
END = START + 1_500_000_000


# The attributes of one tool-using turn as openinference-instrumentation-anthropic 3.1.0 writes them (captured with
# anthropic 2.16.0 against a local fake server): every tool_use block is a `tool_use` item of message.contents and
# again a call under message.tool_calls, in the input history and in the output.
ANTHROPIC_TOOL_TURN = {
    "openinference.span.kind": "LLM",
    "llm.system": "anthropic",
    "llm.model_name": "claude-sonnet-4-5",
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Weather in Paris?",
    "llm.input_messages.1.message.role": "assistant",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "Checking.",
    "llm.input_messages.1.message.tool_calls.0.tool_call.id": "toolu_0",
    "llm.input_messages.1.message.tool_calls.0.tool_call.function.name": "get_weather",
    "llm.input_messages.1.message.tool_calls.0.tool_call.function.arguments": '{"city": "Lyon"}',
    "llm.input_messages.1.message.contents.1.message_content.type": "tool_use",
    "llm.input_messages.1.message.contents.1.tool_call.id": "toolu_0",
    "llm.input_messages.1.message.contents.1.tool_call.function.name": "get_weather",
    "llm.input_messages.1.message.contents.1.tool_call.function.arguments": '{"city": "Lyon"}',
    "llm.input_messages.2.message.role": "tool",
    "llm.input_messages.2.message.tool_call_id": "toolu_0",
    "llm.input_messages.2.message.content": "sunny",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.contents.0.message_content.type": "text",
    "llm.output_messages.0.message.contents.0.message_content.text": "Let me check.",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "toolu_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
    "llm.output_messages.0.message.contents.1.message_content.type": "tool_use",
    "llm.output_messages.0.message.contents.1.tool_call.id": "toolu_1",
    "llm.output_messages.0.message.contents.1.tool_call.function.name": "get_weather",
    "llm.output_messages.0.message.contents.1.tool_call.function.arguments": '{"city": "Paris"}',
}


def any_value(value: Any) -> AnyValue:
    """A Python value as OTLP AnyValue; dicts become kvlists and lists arrays (structured attributes)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value(v)) for k, v in value.items())
        return out
    raise TypeError(type(value))


def key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def request(
    spans: list[dict[str, Any]],
    resource: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    """Each span dict: attrs, and optionally events [(name, offset_ns, attrs)], status (code, message), name."""
    req = ExportTraceServiceRequest()
    resource_spans = req.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values({"service.name": "svc", **(resource or {})}))
    scope = resource_spans.scope_spans.add()
    for i, spec in enumerate(spans):
        span: Span = scope.spans.add()
        span.trace_id = (0xABC).to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = spec.get("name", "span")
        span.start_time_unix_nano = START
        span.end_time_unix_nano = END
        span.attributes.extend(key_values(spec.get("attrs", {})))
        for name, offset, attrs in spec.get("events", ()):
            event = span.events.add()
            event.name = name
            event.time_unix_nano = START + offset
            event.attributes.extend(key_values(attrs))
        if "status" in spec:
            code, message = spec["status"]
            span.status.code = {"ok": Status.STATUS_CODE_OK, "error": Status.STATUS_CODE_ERROR}[code]
            span.status.message = message
    return req


def normalized_rows(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    batch = normalize(decode_request(request(spans, resource)).batch)
    return [{name: batch.columns[name][row] for name in LLM_COLUMNS} for row in range(len(batch))]


def normalized(attrs: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The LLM columns of one span with `attrs` (plus events/status/name/resource in `spec`)."""
    resource = spec.pop("resource", None)
    return normalized_rows([{"attrs": attrs, **spec}], resource)[0]


def loads(text: str) -> Any:
    return orjson.loads(text) if text else None


_STAGE_LOGGER = "tracehouse.collector.stages.normalize.stage"


def mapper_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The spans a mapper bug cost their LLM fields, as the stage reports them: one error, with the span's
    id and the exception, per span."""
    return [r for r in caplog.records if r.name == _STAGE_LOGGER and r.levelno >= logging.ERROR and r.exc_info]
