"""OTLP/gRPC receiver: TraceService/Export on grpc.aio.

The request is taken as raw bytes (no grpc deserializer) so that an undecodable body is answered
with INVALID_ARGUMENT, as OTLP requires, rather than grpc's generic INTERNAL.
"""

from __future__ import annotations

import logging

import grpc

from tracehouse.collector.auth import Authenticator
from tracehouse.collector.pipeline import Pipeline
from tracehouse.collector.receivers.otlp import (
    RETRY_INFO_TRAILER,
    STATUS_DETAILS_TRAILER,
    OtlpError,
    export_response,
)

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class GrpcReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        host: str,
        port: int,
        max_request_bytes: int,
        authenticator: Authenticator | None = None,
        tls: tuple[bytes, bytes] | None = None,
    ) -> None:
        """`tls` is (certificate chain PEM, private key PEM); None listens in plaintext."""
        self._pipeline = pipeline
        self._auth = authenticator or Authenticator()
        self._tls = tls
        self._address = f"{host}:{port}"
        self._max_request_bytes = max_request_bytes
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_request_bytes),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ]
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        if self._tls:
            certificate, key = self._tls
            credentials = grpc.ssl_server_credentials([(key, certificate)])
            self.port = self._server.add_secure_port(self._address, credentials)
        else:
            self.port = self._server.add_insecure_port(self._address)
        if self.port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {self._address}")
        await self._server.start()

    async def stop(self, grace: float) -> None:
        if self._server:
            await self._server.stop(grace)

    async def _export(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            metadata = dict(context.invocation_metadata() or ())
            tenant = self._auth.tenant(metadata.get("authorization"), metadata.get("x-api-key"))
            self._pipeline.check_capacity()
            result = await self._pipeline.export(body, False, "grpc", tenant)
        except OtlpError as exc:
            await _abort(context, exc)
            raise AssertionError("unreachable") from None
        return export_response(result.rejected, result.message).SerializeToString()


async def _abort(context: grpc.aio.ServicerContext, error: OtlpError) -> None:
    trailers = [(STATUS_DETAILS_TRAILER, error.to_status().SerializeToString())]
    if error.retry_after_seconds is not None:
        # The Python OTLP exporter reads the retry delay from this trailer.
        trailers.append((RETRY_INFO_TRAILER, error.retry_info().SerializeToString()))
    await context.abort(error.grpc_code, error.message, trailing_metadata=tuple(trailers))
