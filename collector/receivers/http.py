"""OTLP/HTTP receiver: POST /v1/traces, protobuf or JSON, optionally gzip, answered in the
request's own content type, with the status codes of the OTLP specification."""

from __future__ import annotations

import logging
import ssl
import zlib

from aiohttp import web

from tracehouse.collector.auth import Authenticator
from tracehouse.collector.pipeline import Pipeline
from tracehouse.collector.receivers.otlp import (
    OtlpError,
    export_response,
    invalid_argument,
    to_json,
    too_large,
)

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACES_PATH = "/v1/traces"
_READ_CHUNK = 1 << 20


class _Unsupported(Exception):
    pass


class HttpReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        host: str,
        port: int,
        max_request_bytes: int,
        authenticator: Authenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._auth = authenticator or Authenticator()
        self._ssl = ssl_context
        self._host = host
        self.port = port
        self._max = max_request_bytes
        self._runner: web.AppRunner | None = None
        self.extra_routes: list[web.RouteDef] = []

    async def start(self) -> None:
        app = web.Application(client_max_size=self._max)
        app.router.add_route("*", TRACES_PATH, self._traces)
        app.add_routes(self.extra_routes)
        # We decompress ourselves, bounded, so a gzip bomb meets the size limit instead of memory.
        self._runner = web.AppRunner(app, auto_decompress=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        content_type = request.content_type
        reply_type = JSON if content_type == JSON else PROTOBUF
        if request.method != "POST":
            return _error(reply_type, 405, "only POST is allowed on " + TRACES_PATH, headers={"Allow": "POST"})
        if content_type not in (PROTOBUF, JSON):
            return _error(reply_type, 415, f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}")
        try:
            tenant = self._auth.tenant(request.headers.get("Authorization"), request.headers.get("x-api-key"))
            self._pipeline.check_capacity()
            body = await self._read_body(request)
            result = await self._pipeline.export(body, content_type == JSON, "http", tenant)
        except _Unsupported as exc:
            return _error(reply_type, 415, str(exc))
        except OtlpError as exc:
            headers = {}
            if exc.retry_after_seconds is not None:
                headers["Retry-After"] = str(exc.retry_after_seconds)
            return _reply(reply_type, exc.http_status, exc.to_status(), headers)
        return _reply(reply_type, 200, export_response(result.rejected, result.message))

    async def _read_body(self, request: web.Request) -> bytes:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", ""):
            raise _Unsupported(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
        if request.content_length is not None and request.content_length > self._max:
            raise too_large(self._max)
        chunks: list[bytes] = []
        size = 0
        decompressor = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
        try:
            while True:
                chunk = await request.content.read(_READ_CHUNK)
                if not chunk:
                    break
                if decompressor is not None:
                    chunk = decompressor.decompress(chunk, self._max + 1 - size)
                    if decompressor.unconsumed_tail:
                        raise too_large(self._max)
                size += len(chunk)
                if size > self._max:
                    raise too_large(self._max)
                chunks.append(chunk)
            if decompressor is not None:
                tail = decompressor.flush()
                size += len(tail)
                if size > self._max:
                    raise too_large(self._max)
                chunks.append(tail)
                if not decompressor.eof:
                    raise invalid_argument("gzip body is truncated")
        except zlib.error as exc:
            raise invalid_argument(f"body is not valid gzip: {exc}") from None
        return b"".join(chunks)


def _reply(content_type: str, status: int, message, headers: dict[str, str] | None = None) -> web.Response:
    body = to_json(message) if content_type == JSON else message.SerializeToString()
    return web.Response(status=status, body=body, content_type=content_type, headers=headers)


def _error(content_type: str, status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    from google.rpc import status_pb2

    code = {405: 12, 415: 3}.get(status, 3)  # UNIMPLEMENTED, INVALID_ARGUMENT
    return _reply(content_type, status, status_pb2.Status(code=code, message=text), headers)
