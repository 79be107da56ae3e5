"""OTLP/gRPC receiver: TraceService/Export on grpc.aio.

The request is taken as raw bytes (no grpc deserializer) so that an undecodable body is answered
with INVALID_ARGUMENT, as OTLP requires, rather than grpc's generic INTERNAL.

Connections are bounded by gRPC core itself: a count per listener, a handshake deadline (TCP accept to the
client's HTTP/2 SETTINGS), an idle limit and a maximum age, so idle or half-open connections cannot pile up.
"""

from __future__ import annotations

import logging

import grpc

from tracehouse.collector.auth import Authenticator
from tracehouse.collector.errors import PipelineError
from tracehouse.collector.logs import LogLimiter, RateLimitFilter
from tracehouse.collector.pipeline import Pipeline
from tracehouse.collector.receivers.limits import ConnectionLimits, raise_open_file_limit
from tracehouse.collector.receivers.otlp import (
    RETRY_INFO_TRAILER,
    STATUS_DETAILS_TRAILER,
    OtlpError,
    export_response,
    internal_error,
    wire_error,
)

log = logging.getLogger(__name__)
limited = LogLimiter(log)
# grpc logs a traceback per undecodable metadata value ("Invalid encoding on ..."): a client can send those.
logging.getLogger("grpc._cython.cygrpc").addFilter(RateLimitFilter(strip_tracebacks=True))

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def server_options(max_request_bytes: int, limits: ConnectionLimits) -> list[tuple[str, int]]:
    ms = 1000
    return [
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        # A second collector on the same port must fail to start, not take a share of the traffic.
        ("grpc.so_reuseport", 0),
        ("grpc.max_allowed_incoming_connections", limits.connection_cap()),
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout_seconds * ms)),
        ("grpc.max_connection_idle_ms", int(limits.idle_timeout_seconds * ms)),
        ("grpc.max_connection_age_ms", int(limits.max_connection_age_seconds * ms)),
        ("grpc.max_connection_age_grace_ms", int(limits.max_connection_age_grace_seconds * ms)),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        # Large enough that an oversized API key reaches authentication (and gets UNAUTHENTICATED).
        ("grpc.max_metadata_size", limits.max_header_bytes),
        ("grpc.absolute_max_metadata_size", limits.max_header_bytes),
    ]


class GrpcReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        host: str,
        port: int,
        max_request_bytes: int,
        authenticator: Authenticator | None = None,
        tls: tuple[bytes, bytes] | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        """`tls` is (certificate chain PEM, private key PEM); None listens in plaintext."""
        self._pipeline = pipeline
        self._auth = authenticator or Authenticator()
        self._tls = tls
        self._host = host
        self._address = f"{host}:{port}"
        self._max_request_bytes = max_request_bytes
        self._limits = limits or ConnectionLimits()
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        raise_open_file_limit()
        server = grpc.aio.server(options=server_options(self._max_request_bytes, self._limits))
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        server.add_generic_rpc_handlers((handler,))
        try:
            if self._tls:
                certificate, key = self._tls
                credentials = grpc.ssl_server_credentials([(key, certificate)])
                self.port = server.add_secure_port(self._address, credentials)
            else:
                self.port = server.add_insecure_port(self._address)
        except RuntimeError:  # grpc's "Failed to bind": with so_reuseport off, also a port in use
            self.port = 0
        if self.port == 0:
            await server.stop(None)  # not left for the garbage collector after the loop closed
            raise OSError(f"cannot listen for OTLP/gRPC on {self._address}: address in use or not available")
        await server.start()
        self._server = server

    async def stop(self, grace: float) -> None:
        if self._server:
            await self._server.stop(grace)

    async def _export(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            metadata = dict(context.invocation_metadata() or ())
            tenant = self._auth.tenant(_text(metadata.get("authorization")), _text(metadata.get("x-api-key")))
            self._pipeline.check_capacity()
            result = await self._pipeline.export(body, False, "grpc", tenant)
        except PipelineError as exc:
            error = wire_error(exc)
        except Exception:
            limited.error("grpc-internal", "OTLP/gRPC: internal error handling a request", exc_info=True)
            error = internal_error()
        else:
            return export_response(result.rejected, result.message).SerializeToString()
        await _abort(context, error)
        raise AssertionError("unreachable")


def _text(value: str | bytes | None) -> str | None:
    """Metadata values are str, but bytes for `-bin` keys or values gRPC could not decode."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value


async def _abort(context: grpc.aio.ServicerContext, error: OtlpError) -> None:
    trailers = [(STATUS_DETAILS_TRAILER, error.to_status().SerializeToString())]
    if error.retry_after_seconds is not None:
        # The Python OTLP exporter reads the retry delay from this trailer.
        trailers.append((RETRY_INFO_TRAILER, error.retry_info().SerializeToString()))
    await context.abort(error.grpc_code, error.message, trailing_metadata=tuple(trailers))
