"""OTLP/HTTP receiver: POST /v1/traces, protobuf or JSON, optionally compressed, answered in the request's
own content type, with the status codes of the OTLP specification.

POST /v1/scores and POST /v1/reviews (JSON, see `collector.scores` and `collector.reviews`) share the port,
TLS, API keys, size limit and compression with /v1/traces: 200 with `{"ids": [...]}` once they are durable,
otherwise the same statuses (400 naming the malformed field, 401, 413, 503 with Retry-After), with a
google.rpc.Status JSON body. GET /v1/prompts/NAME (the prompt registry's read API, collector.prompt_registry)
answers with the same keys and tenants: 200 with the version, 404 naming what it does not have.

Connections are bounded (count, handshake and idle time; see `connections`), and everything a client can
trigger is logged through a rate limiter, never one traceback per request.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections.abc import Awaitable, Callable

import grpc
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from google.rpc import code_pb2, status_pb2

from tracehouse.collector.auth import Authenticator
from tracehouse.collector.errors import Invalid, PipelineError, TooLarge
from tracehouse.collector.logs import LogLimiter
from tracehouse.collector.pipeline import Pipeline
from tracehouse.collector.receivers.connections import AiohttpLog, ConnectionPool, tracking_middleware
from tracehouse.collector.receivers.encoding import UnsupportedEncoding, clip, content_coding, decompress
from tracehouse.collector.receivers.limits import ConnectionLimits, raise_open_file_limit
from tracehouse.collector.receivers.otlp import OtlpError, export_response, internal_error, to_json, wire_error

log = logging.getLogger(__name__)
limited = LogLimiter(log)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACES_PATH = "/v1/traces"
SCORES_PATH = "/v1/scores"
REVIEWS_PATH = "/v1/reviews"
PROMPTS_PATH = "/v1/prompts/{name}"
_READ_CHUNK = 1 << 20
_ALLOW = "POST, OPTIONS"


class _ClientGone(Exception):
    """The client closed the connection before its body arrived: nobody is left to answer."""


def _request_timeout(seconds: float) -> OtlpError:
    """A body that stopped arriving: a matter of this transport only, so it is a wire status from the start."""
    return OtlpError(grpc.StatusCode.DEADLINE_EXCEEDED, 408, f"no request body data for {seconds:g} s")


class HttpReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        host: str,
        port: int,
        max_request_bytes: int,
        authenticator: Authenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._auth = authenticator or Authenticator()
        self._ssl = ssl_context
        self._host = host
        self.port = port
        self._max = max_request_bytes
        self._limits = limits or ConnectionLimits()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.connections: ConnectionPool | None = None
        self.extra_routes: list[web.RouteDef] = []
        # GET /v1/prompts/NAME: (tenant, name, label, version number) -> (status, JSON body), run in a thread;
        # set by the service (it reads the store), None answers 503
        self.prompt_lookup: Callable[[str | None, str, str | None, int | None], tuple[int, dict]] | None = None

    async def start(self) -> None:
        raise_open_file_limit()
        limits = self._limits
        app = web.Application(client_max_size=self._max, middlewares=[tracking_middleware(lambda: self.connections)])
        for path in (TRACES_PATH, TRACES_PATH + "/"):
            app.router.add_route("*", path, self._traces)
        for path in (SCORES_PATH, SCORES_PATH + "/"):
            app.router.add_route("*", path, self._scores)
        for path in (REVIEWS_PATH, REVIEWS_PATH + "/"):
            app.router.add_route("*", path, self._reviews)
        app.router.add_route("*", PROMPTS_PATH, self._prompts)
        app.add_routes(self.extra_routes)
        # We decompress ourselves, bounded, so a gzip bomb meets the size limit instead of memory.
        self._runner = web.AppRunner(
            app,
            auto_decompress=False,
            access_log=None,
            keepalive_timeout=limits.idle_timeout_seconds,
            max_field_size=limits.max_header_bytes,
            logger=AiohttpLog(limited, "OTLP/HTTP", "http"),
            shutdown_timeout=5,
        )
        await self._runner.setup()
        self.connections = ConnectionPool(
            self._runner.server, limits.connection_cap(), limits.handshake_timeout_seconds, limited
        )
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self.connections,
                self._host,
                self.port,
                ssl=self._ssl,
                backlog=limits.backlog,
                ssl_handshake_timeout=limits.handshake_timeout_seconds if self._ssl else None,
            )
        except OSError as exc:
            await self._runner.cleanup()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise OSError(exc.errno, f"cannot listen for OTLP/HTTP on {self._host}:{self.port}: {reason}") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner:
            await self._runner.cleanup()
        if self.connections is not None:
            self.connections.close_all()

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        content_type = request.content_type
        # The Status in the request's encoding; a request in neither (a browser's GET) gets JSON, which it can read.
        reply_type = PROTOBUF if content_type == PROTOBUF else JSON
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": _ALLOW})
        if request.method != "POST":
            return _error(reply_type, 405, "only POST is allowed on " + TRACES_PATH, headers={"Allow": _ALLOW})
        if content_type not in (PROTOBUF, JSON):
            return _error(reply_type, 415, f"unsupported content type {clip(content_type)}; use {PROTOBUF} or {JSON}")
        try:
            tenant = self._auth.tenant(request.headers.get("Authorization"), request.headers.get("x-api-key"))
            self._pipeline.check_capacity()
            coding = content_coding(request.headers.get("Content-Encoding"))
            raw = await self._read_body(request)
            body = await asyncio.to_thread(decompress, raw, coding, self._max) if coding != "identity" else raw
            result = await self._pipeline.export(body, content_type == JSON, "http", tenant)
        except UnsupportedEncoding as exc:
            return _error(reply_type, 415, str(exc))
        except (PipelineError, OtlpError) as exc:
            return _refusal(reply_type, wire_error(exc))
        except _ClientGone as exc:
            limited.info("http-client-gone", "OTLP/HTTP: a client closed its connection mid-request: %s", exc)
            return web.Response(status=400)
        except Exception:
            limited.error("http-internal", "OTLP/HTTP: internal error handling a request", exc_info=True)
            return _refusal(reply_type, internal_error())
        return _reply(reply_type, 200, export_response(result.rejected, result.message))

    async def _scores(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/scores: one score or a list, JSON; the tenant comes from the API key, as for spans."""
        return await self._rows(request, SCORES_PATH, self._pipeline.export_scores)

    async def _reviews(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/reviews: one review or a list, JSON; the tenant comes from the API key, as for spans."""
        return await self._rows(request, REVIEWS_PATH, self._pipeline.export_reviews)

    async def _prompts(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/prompts/NAME?label=L|version=N: a registry version (collector.prompt_registry), for the
        API key's tenant; 404 naming the prompt or label it does not have."""
        from tracehouse.collector.prompt_registry import RowsRefused, check_name, parse_query

        if request.method != "GET":
            return _error(JSON, 405, "only GET is allowed on /v1/prompts/NAME", headers={"Allow": "GET"})
        try:
            tenant = self._auth.tenant(request.headers.get("Authorization"), request.headers.get("x-api-key"))
            name = check_name(request.match_info["name"])
            label, number = parse_query(request.query)
            if self.prompt_lookup is None:
                return _error(JSON, 503, "the prompt registry is not available", code=code_pb2.UNAVAILABLE)
            status, answer = await asyncio.to_thread(self.prompt_lookup, tenant, name, label, number)
        except RowsRefused as exc:
            return _error(JSON, 400, str(exc))
        except PipelineError as exc:
            return _refusal(JSON, wire_error(exc))
        except Exception:
            limited.error("http-internal", "OTLP/HTTP: internal error handling /v1/prompts", exc_info=True)
            return _error(JSON, 503, "the prompt registry could not be read; try again", code=code_pb2.UNAVAILABLE)
        if status != 200:
            message = str(answer.get("error", ""))
            code = code_pb2.NOT_FOUND if status == 404 else code_pb2.UNAVAILABLE
            body = orjson.dumps({"code": code, "message": message, "error": message})
            return web.Response(status=status, body=body, content_type=JSON)
        return web.Response(status=200, body=orjson.dumps(answer), content_type=JSON)

    async def _rows(
        self, request: web.Request, path: str, export: Callable[[bytes, str | None], Awaitable[list[str]]]
    ) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": _ALLOW})
        if request.method != "POST":
            return _error(JSON, 405, "only POST is allowed on " + path, headers={"Allow": _ALLOW})
        if request.content_type != JSON:
            return _error(JSON, 415, f"unsupported content type {clip(request.content_type)}; use {JSON}")
        try:
            tenant = self._auth.tenant(request.headers.get("Authorization"), request.headers.get("x-api-key"))
            self._pipeline.check_capacity()
            coding = content_coding(request.headers.get("Content-Encoding"))
            raw = await self._read_body(request)
            body = await asyncio.to_thread(decompress, raw, coding, self._max) if coding != "identity" else raw
            ids = await export(body, tenant)
        except UnsupportedEncoding as exc:
            return _error(JSON, 415, str(exc))
        except (PipelineError, OtlpError) as exc:
            return _refusal(JSON, wire_error(exc))
        except _ClientGone as exc:
            limited.info("http-client-gone", "OTLP/HTTP: a client closed its connection mid-request: %s", exc)
            return web.Response(status=400)
        except Exception:
            limited.error("http-internal", f"OTLP/HTTP: internal error handling {path}", exc_info=True)
            return _refusal(JSON, internal_error())
        return web.Response(status=200, body=orjson.dumps({"ids": ids}), content_type=JSON)

    async def _read_body(self, request: web.Request) -> bytes:
        """The body as sent (still compressed), bounded in size and in time without progress."""
        if request.content_length is not None and request.content_length > self._max:
            raise TooLarge(self._max)
        chunks: list[bytes] = []
        size = 0
        idle = self._limits.idle_timeout_seconds
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        chunk = await request.content.read(_READ_CHUNK)
                except TimeoutError:
                    raise _request_timeout(idle) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > self._max:
                    raise TooLarge(self._max)
                chunks.append(chunk)
        except ConnectionError as exc:
            raise _ClientGone(str(exc) or type(exc).__name__) from None
        except RequestPayloadError as exc:
            raise Invalid(f"request body is malformed: {' '.join(str(exc).split())[:200]}") from None
        return b"".join(chunks)


def _refusal(content_type: str, error: OtlpError) -> web.Response:
    """A google.rpc.Status body with the error's HTTP status; Retry-After when the client should retry."""
    headers = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(error.retry_after_seconds)
    response = _reply(content_type, error.http_status, error.to_status(), headers)
    if error.http_status == 408:
        response.force_close()  # the rest of a stalled body is not worth waiting for
    return response


def _reply(content_type: str, status: int, message, headers: dict[str, str] | None = None) -> web.Response:
    body = to_json(message) if content_type == JSON else message.SerializeToString()
    return web.Response(status=status, body=body, content_type=content_type, headers=headers)


def _error(
    content_type: str,
    status: int,
    text: str,
    headers: dict[str, str] | None = None,
    code: int | None = None,
) -> web.Response:
    if code is None:
        code = code_pb2.UNIMPLEMENTED if status == 405 else code_pb2.INVALID_ARGUMENT
    return _reply(content_type, status, status_pb2.Status(code=code, message=text), headers)
