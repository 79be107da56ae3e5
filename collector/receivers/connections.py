"""A bounded set of HTTP connections for an asyncio server.

Every accepted connection is wrapped and counted from the moment it is accepted (TLS handshakes included).
At the cap, the connection idle the longest (no request in progress: a flood of idle or slow-header
connections is exactly that) is closed to make room, so an attacker holding idle connections cannot lock
real clients out; when every connection has a request in progress the new one gets 503 and is closed.
A connection must deliver its first request's headers within the handshake timeout.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tracehouse.collector.logs import LogLimiter

_REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class ConnectionPool:
    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        cap: int,
        handshake_timeout: float,
        limiter: LogLimiter,
        surface: str = "OTLP/HTTP",
    ) -> None:
        self._factory = factory
        self._surface = surface
        self.cap = cap
        self._handshake_timeout = handshake_timeout
        self._limiter = limiter
        # Least recently active first; a finished request moves its connection to the end.
        self._open: OrderedDict[_Connection, None] = OrderedDict()
        self._by_protocol: dict[asyncio.BaseProtocol, _Connection] = {}
        self.evicted = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        # Called at accept, before any TLS handshake: connections are counted from here.
        connection = _Connection(self, self._factory())
        connection.refused = not self._admit(connection)
        return connection

    def __len__(self) -> int:
        return len(self._open)

    def request_started(self, protocol: object) -> None:
        connection = self._by_protocol.get(protocol)  # type: ignore[arg-type]
        if connection is not None:
            connection.busy += 1
            connection.cancel_timer()

    def request_finished(self, protocol: object) -> None:
        connection = self._by_protocol.get(protocol)  # type: ignore[arg-type]
        if connection is not None:
            connection.busy -= 1
            if connection in self._open:
                self._open.move_to_end(connection)

    def _admit(self, connection: _Connection) -> bool:
        if len(self._open) >= self.cap and not self._evict_idle():
            self.refused += 1
            self._limiter.warning(
                "http-connection-refused",
                "%s: %d connections, all busy: refusing a new one with 503",
                self._surface,
                self.cap,
            )
            return False
        self._open[connection] = None
        self._by_protocol[connection.inner] = connection
        return True

    def _evict_idle(self) -> bool:
        for candidate in self._open:
            if candidate.busy == 0:
                self._forget(candidate)
                if candidate.transport is None:
                    # accepted in the same burst, not yet made: it gets the refusal when it is
                    candidate.refused = True
                else:
                    candidate.close()
                self.evicted += 1
                self._limiter.warning(
                    "http-connection-evicted",
                    "%s: at the cap of %d connections: closing the one idle the longest",
                    self._surface,
                    self.cap,
                )
                return True
        return False

    def _forget(self, connection: _Connection) -> None:
        self._open.pop(connection, None)
        self._by_protocol.pop(connection.inner, None)
        connection.cancel_timer()

    def close_all(self) -> None:
        for connection in list(self._open):
            self._forget(connection)
            connection.close()


class _Connection(asyncio.Protocol):
    """Delegates to aiohttp's protocol; only counts, times the first request and closes."""

    __slots__ = ("_pool", "inner", "transport", "busy", "refused", "_timer", "_admitted")

    def __init__(self, pool: ConnectionPool, inner: asyncio.Protocol) -> None:
        self._pool = pool
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self.refused = False
        self._admitted = False
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            pool._handshake_timeout, self._handshake_expired
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.refused:
            self.cancel_timer()
            transport.write(_REFUSAL)  # type: ignore[attr-defined]
            transport.close()
            return
        self._admitted = True
        self.inner.connection_made(transport)

    def _handshake_expired(self) -> None:
        """No first request in time (or a TLS handshake that never finished: asyncio closes that one)."""
        self._timer = None
        if self.busy == 0:
            self._pool._forget(self)
            self.close()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._forget(self)
        if self._admitted:
            self._admitted = False
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self.inner.resume_writing()


class AiohttpLog:
    """aiohttp's server logger, rate-limited: malformed requests are the client's problem, one line each.
    `surface` names the listener in the lines, `key` their rate limits."""

    def __init__(self, limiter: LogLimiter, surface: str, key: str) -> None:
        self._limiter, self._surface, self._key = limiter, surface, key

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def exception(self, message: str, *args: Any, exc_info: Any = None, **_: Any) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc_info, HttpProcessingError | ConnectionError):
            text = " ".join(str(exc_info).split())[:200]
            self._limiter.warning(f"{self._key}-bad-request", "%s: bad request from a client: %s", self._surface, text)
        else:
            self._limiter.error(f"{self._key}-internal", f"{self._surface}: " + message, *args, exc_info=exc_info)


def tracking_middleware(pool: Callable[[], ConnectionPool | None]) -> Callable[..., Any]:
    """An aiohttp middleware marking a connection busy while it has a request in progress (neither closed as
    idle nor timed out). `pool` returns the listener's pool, made after the application it serves."""
    from aiohttp import web

    @web.middleware
    async def track(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        connections = pool()
        assert connections is not None
        connections.request_started(request.protocol)
        try:
            return await handler(request)
        finally:
            connections.request_finished(request.protocol)

    return track
