"""What both OTLP receivers share: request parsing (protobuf and OTLP/JSON), responses and the
error statuses the OTLP specification prescribes (exporters decide to retry or drop from them)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"
STATUS_DETAILS_TRAILER = "grpc-status-details-bin"


@dataclass
class OtlpError(Exception):
    """A refusal with its gRPC code, HTTP status and a message that names the problem."""

    grpc_code: grpc.StatusCode
    http_status: int
    message: str
    retry_after_seconds: int | None = None

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.grpc_code.value[0], message=self.message)
        if self.retry_after_seconds is not None:
            status.details.add().Pack(self.retry_info())
        return status

    def retry_info(self) -> error_details_pb2.RetryInfo:
        return error_details_pb2.RetryInfo(retry_delay=Duration(seconds=self.retry_after_seconds or 0))


def invalid_argument(message: str) -> OtlpError:
    return OtlpError(grpc.StatusCode.INVALID_ARGUMENT, 400, message)


def too_large(size_limit: int) -> OtlpError:
    return OtlpError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, 413, f"request exceeds the {size_limit} byte limit after decompression"
    )


def unavailable(message: str, retry_after_seconds: int = 1) -> OtlpError:
    return OtlpError(grpc.StatusCode.UNAVAILABLE, 503, message, retry_after_seconds)


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise invalid_argument(f"request body is not a valid ExportTraceServiceRequest protobuf: {exc}") from None
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
        raise invalid_argument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid_argument("request body must be a JSON object (an ExportTraceServiceRequest)")
    try:
        for resource_spans in data.get("resourceSpans") or data.get("resource_spans") or []:
            for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or []:
                for span in scope_spans.get("spans") or []:
                    _hex_ids_to_base64(span)
                    for link in span.get("links") or []:
                        _hex_ids_to_base64(link)
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, AttributeError, TypeError, ValueError, binascii.Error) as exc:
        raise invalid_argument(f"request body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from None


def export_response(rejected: int = 0, message: str = "") -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response


def to_json(message) -> bytes:
    return orjson.dumps(json_format.MessageToDict(message))
