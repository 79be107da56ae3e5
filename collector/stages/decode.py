"""Decode stage: an OTLP request body (protobuf or OTLP/JSON) into an ExportTraceServiceRequest, and that
into a SpanBatch, exactly as the OTel Collector ClickHouse exporter writes it (hex ids, ns timestamps,
exporter strings for kind and status, attribute values stringified like pdata's Value.AsString).

A body that does not parse is refused whole (`errors.Invalid`, which the receivers answer with
INVALID_ARGUMENT / 400); a span that does not decode is rejected alone (below).

What decode lets through is acknowledged and must be insertable: ClickHouse refuses a whole insert
for one bad value, so every value is brought into its column's domain here, span by span, and a
span that cannot be is rejected alone (OTLP partial success names it; the rest of the request is kept).

Time policy (DateTime64(9) holds 1970-01-01 .. 2262-04-11T23:47:16.854775807Z, Int64 nanoseconds):
- start_time_unix_nano 0 (unset, e.g. OTLP/JSON without timestamps) or after MAX_TIME_NS: the span is
  rejected, with a message naming it. Any other start is stored exactly as sent.
- end_time_unix_nano unset or before the start: Duration 0 (Duration is UInt64, so any later end fits).
- an event time unset or after MAX_TIME_NS: the event is kept (its name and attributes are the content)
  at the span's start time, and the response carries a warning (partial success with 0 rejected).

Other values ClickHouse would refuse cannot come out of here: ids are validated, strings are valid
UTF-8 (the protobuf parser and orjson refuse invalid UTF-8 and lone surrogates, so such a request is
INVALID_ARGUMENT as a whole), ints and doubles are stringified, attribute maps have unique keys and the
Events.* / Links.* arrays of one span have equal lengths by construction.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.errors import Invalid

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
MAX_REJECT_MESSAGES = 5
MAX_TIME_NS = 2**63 - 1  # the last instant DateTime64(9) holds: 2262-04-11T23:47:16.854775807Z

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)


# --- parsing: the request body -----------------------------------------------------------------


def parse_request(body: bytes, is_json: bool) -> ExportTraceServiceRequest:
    """The request a body holds (OTLP/JSON when `is_json`, else protobuf); raises errors.Invalid."""
    return parse_json(body) if is_json else parse_protobuf(body)


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise Invalid(f"request body is not a valid ExportTraceServiceRequest protobuf: {exc}") from None
    return request


# OTLP/JSON differs from the protobuf JSON mapping in one way that matters: ids are hex, not base64.
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(obj: dict) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                # Not hex: keep a value of the wrong length so the span is rejected with a message.
                raw = b"\x00"
            obj[key] = base64.b64encode(raw).decode()


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object (an ExportTraceServiceRequest)")
    try:
        for resource_spans in data.get("resourceSpans") or data.get("resource_spans") or []:
            for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or []:
                for span in scope_spans.get("spans") or []:
                    _hex_ids_to_base64(span)
                    for link in span.get("links") or []:
                        _hex_ids_to_base64(link)
    except (AttributeError, TypeError):
        raise Invalid(
            "request body is not a valid OTLP/JSON ExportTraceServiceRequest: resourceSpans, scopeSpans, spans and"
            " links must be lists of objects"
        ) from None
    try:
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, AttributeError, TypeError, ValueError, binascii.Error) as exc:
        raise Invalid(f"request body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from None


# --- decoding: the request into columns --------------------------------------------------------

# Go's encoding/json string escaping (HTML-safe), which pdata uses for arrays and maps.
_GO_JSON_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_GO_JSON_ESCAPES.update(
    {
        ord("\n"): "\\n",
        ord("\r"): "\\r",
        ord("\t"): "\\t",
        ord('"'): '\\"',
        ord("\\"): "\\\\",
        ord("<"): "\\u003c",
        ord(">"): "\\u003e",
        ord("&"): "\\u0026",
        0x2028: "\\u2028",
        0x2029: "\\u2029",
    }
)


def format_double(value: float) -> str:
    """A double as pdata renders it: ES6 number-to-string (shortest digits, exponent outside [1e-6, 1e21))."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        mantissa, _, exponent = format(value, "e").partition("e") if "e" not in text else text.partition("e")
        sign = exponent[0] if exponent[0] in "+-" else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        if mantissa.endswith(".0"):
            mantissa = mantissa[:-2]
        return f"{mantissa}e{sign}{digits}"
    if "e" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _go_json(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return '"' + value.string_value.translate(_GO_JSON_ESCAPES) + '"'
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return format_double(value.double_value)
    if kind == "bytes_value":
        return '"' + base64.b64encode(value.bytes_value).decode() + '"'
    if kind == "array_value":
        return "[" + ",".join(_go_json(v) for v in value.array_value.values) + "]"
    if kind == "kvlist_value":
        entries = {kv.key: kv.value for kv in value.kvlist_value.values}
        return (
            "{"
            + ",".join('"' + key.translate(_GO_JSON_ESCAPES) + '":' + _go_json(entries[key]) for key in sorted(entries))
            + "}"
        )
    return "null"


def any_value_to_str(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_double(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind is None:
        return ""
    return _go_json(value)


def attributes_to_map(attributes) -> dict[str, str]:
    out = {}
    for kv in attributes:
        value = kv.value
        # Most attribute values are non-empty strings: one field read, no type dispatch. An empty read
        # means another type (or an empty string), which the generic path handles.
        text = value.string_value
        out[kv.key] = text if text else any_value_to_str(value)
    return out


@dataclass
class DecodeResult:
    batch: SpanBatch
    rejected: int = 0
    reject_messages: list[str] = field(default_factory=list)
    events_retimed: int = 0
    warnings: list[str] = field(default_factory=list)

    def reject(self, span_name: str, problem: str) -> None:
        self.rejected += 1
        if len(self.reject_messages) < MAX_REJECT_MESSAGES:
            self.reject_messages.append(f"span {span_name!r}: {problem}")

    @property
    def message(self) -> str:
        """The partial-success message: the rejected spans, then warnings about what was adjusted."""
        parts = []
        if self.rejected:
            more = self.rejected - len(self.reject_messages)
            text = "; ".join(self.reject_messages)
            parts.append(f"{self.rejected} span(s) rejected: {text}" + (f"; and {more} more" if more > 0 else ""))
        if self.events_retimed:
            more = self.events_retimed - len(self.warnings)
            text = "; ".join(self.warnings) + (f"; and {more} more" if more > 0 else "")
            parts.append(
                f"{self.events_retimed} event(s) with an unset or out-of-range time stored at their span's start: "
                + text
            )
        return "; ".join(parts)


def _invalid_start(start: int) -> str:
    if start == 0:
        return "start_time_unix_nano is unset (0); a span needs its start time"
    if start > MAX_TIME_NS:
        return f"start_time_unix_nano {start} is after 2262-04-11T23:47:16Z, beyond what the store can hold"
    return ""


def _event_times(span, start: int, result: DecodeResult) -> list[int]:
    """The events' times, those outside the storable range replaced by the span's start."""
    times = [e.time_unix_nano for e in span.events]
    if min(times) > 0 and max(times) <= MAX_TIME_NS:
        return times
    fixed = []
    for event, ns in zip(span.events, times, strict=True):
        if 0 < ns <= MAX_TIME_NS:
            fixed.append(ns)
            continue
        fixed.append(start)
        result.events_retimed += 1
        if len(result.warnings) < MAX_REJECT_MESSAGES:
            result.warnings.append(f"span {span.name!r} event {event.name!r} time_unix_nano {ns}")
    return fixed


def _invalid_ids(trace_id: bytes, span_id: bytes, parent_span_id: bytes) -> str:
    if len(trace_id) != 16:
        return f"trace_id must be 16 bytes, got {len(trace_id)}"
    if trace_id == _ZERO_TRACE_ID:
        return "trace_id must not be all zeros"
    if len(span_id) != 8:
        return f"span_id must be 8 bytes, got {len(span_id)}"
    if span_id == _ZERO_SPAN_ID:
        return "span_id must not be all zeros"
    if parent_span_id and len(parent_span_id) != 8:
        return f"parent_span_id must be empty or 8 bytes, got {len(parent_span_id)}"
    return ""


def _invalid_links(links) -> str:
    """A link's ids are empty (not set) or of full length: the OTel Collector refuses any other length too."""
    for n, link in enumerate(links):
        if len(link.trace_id) not in (0, 16):
            return f"link {n}: trace_id must be empty or 16 bytes, got {len(link.trace_id)}"
        if len(link.span_id) not in (0, 8):
            return f"link {n}: span_id must be empty or 8 bytes, got {len(link.span_id)}"
    return ""


def decode_request(request: ExportTraceServiceRequest) -> DecodeResult:
    batch = SpanBatch()
    c = batch.columns
    timestamps, trace_ids, span_ids, parent_ids = c["Timestamp"], c["TraceId"], c["SpanId"], c["ParentSpanId"]
    trace_states, names, kinds, services = c["TraceState"], c["SpanName"], c["SpanKind"], c["ServiceName"]
    resource_attrs, scope_names, scope_versions = c["ResourceAttributes"], c["ScopeName"], c["ScopeVersion"]
    span_attrs, durations, status_codes, status_messages = (
        c["SpanAttributes"],
        c["Duration"],
        c["StatusCode"],
        c["StatusMessage"],
    )
    ev_ts, ev_names, ev_attrs = c["Events.Timestamp"], c["Events.Name"], c["Events.Attributes"]
    ln_trace, ln_span, ln_state, ln_attrs = (
        c["Links.TraceId"],
        c["Links.SpanId"],
        c["Links.TraceState"],
        c["Links.Attributes"],
    )
    result = DecodeResult(batch)
    for resource_spans in request.resource_spans:
        res_map = attributes_to_map(resource_spans.resource.attributes)
        service = res_map.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            scope_version = scope_spans.scope.version
            for span in scope_spans.spans:
                trace_id, span_id, parent_id = span.trace_id, span.span_id, span.parent_span_id
                start = span.start_time_unix_nano
                problem = (
                    _invalid_ids(trace_id, span_id, parent_id)
                    or (_invalid_start(start) if not 0 < start <= MAX_TIME_NS else "")
                    or (_invalid_links(span.links) if span.links else "")
                )
                if problem:
                    result.reject(span.name, problem)
                    continue
                end = span.end_time_unix_nano
                timestamps.append(start)
                trace_ids.append(trace_id.hex())
                span_ids.append(span_id.hex())
                parent_ids.append(parent_id.hex())
                trace_states.append(span.trace_state)
                names.append(span.name)
                kinds.append(SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "Unspecified")
                services.append(service)
                resource_attrs.append(res_map)
                scope_names.append(scope_name)
                scope_versions.append(scope_version)
                span_attrs.append(attributes_to_map(span.attributes))
                durations.append(end - start if end > start else 0)
                code = span.status.code
                status_codes.append(STATUS_CODES[code] if 0 <= code < len(STATUS_CODES) else "Unset")
                status_messages.append(span.status.message)
                if span.events:
                    ev_ts.append(_event_times(span, start, result))
                    ev_names.append([e.name for e in span.events])
                    ev_attrs.append([attributes_to_map(e.attributes) for e in span.events])
                else:
                    ev_ts.append([])
                    ev_names.append([])
                    ev_attrs.append([])
                if span.links:
                    ln_trace.append([link.trace_id.hex() for link in span.links])
                    ln_span.append([link.span_id.hex() for link in span.links])
                    ln_state.append([link.trace_state for link in span.links])
                    ln_attrs.append([attributes_to_map(link.attributes) for link in span.links])
                else:
                    ln_trace.append([])
                    ln_span.append([])
                    ln_state.append([])
                    ln_attrs.append([])
    return result
