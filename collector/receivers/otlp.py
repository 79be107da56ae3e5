"""What both OTLP receivers share: responses, and the error statuses the OTLP specification prescribes
(exporters decide to retry or drop from them).

The pipeline refuses in its own vocabulary (`tracehouse.collector.errors`); `wire_error` is the one place
a refusal becomes a gRPC code, an HTTP status, a google.rpc.Status and, for a retryable one, RetryInfo.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tracehouse.collector.errors import Permanent, PipelineError, Retryable, TooLarge, Unauthenticated

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


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT

# OTLP: retryable -> UNAVAILABLE / 503 (with the delay); permanent -> INVALID_ARGUMENT / 400 (dropped).
_WIRE_STATUS: dict[type[PipelineError], tuple[grpc.StatusCode, int]] = {
    Retryable: (grpc.StatusCode.UNAVAILABLE, 503),
    Permanent: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    TooLarge: (grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, 401),
}


def internal_error() -> OtlpError:
    """An unexpected failure in the collector: the details go to its log, not to the client."""
    return OtlpError(grpc.StatusCode.INTERNAL, 500, "internal error in the collector; see its log")


def wire_error(error: PipelineError | OtlpError) -> OtlpError:
    """The status a refusal is answered with; a kind without one is an internal error, never a silent 200."""
    if isinstance(error, OtlpError):
        return error
    for kind in type(error).__mro__:
        status = _WIRE_STATUS.get(kind)
        if status is not None:
            retry_after = error.retry_after_seconds if isinstance(error, Retryable) else None
            return OtlpError(status[0], status[1], error.message, retry_after)
    return internal_error()


def export_response(rejected: int = 0, message: str = "") -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response


def to_json(message) -> bytes:
    return orjson.dumps(json_format.MessageToDict(message))
