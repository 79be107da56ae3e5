"""The read-only SQL surface: `tracehouse sql`, and the query endpoint a running collector offers.

chDB lets one process open an on-disk store, so while the collector runs, `tracehouse sql` goes
through it: the collector serves a small subset of ClickHouse's HTTP interface on 127.0.0.1
(POST / with the query as body, `default_format`, a key), advertised in <data_dir>/collector.json.

Every query, on either path, is checked by ClickHouse's own parser before it runs: one statement,
a SELECT/SHOW/DESCRIBE/EXISTS/EXPLAIN, no INTO OUTFILE, no function that reaches outside the store
(table functions such as file, url, s3, remote, executable; the `file` scalar), and it runs with
readonly=1 so settings cannot be lifted and nothing can be written.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import threading
from collections.abc import Callable

from aiohttp import web
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from tracehouse.collector.runtime import resolve_format

# Table functions that only compute or read the store itself.
SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generaterandom",
        "generateseries",
        "generate_series",
        "values",
        "view",
        "null",
        "merge",
        "format",
        "primes",
    }
)
# Scalar functions that read files or models from the server's disk.
BLOCKED_SCALAR_FUNCTIONS = frozenset({"file", "catboostevaluate", "naivebayesclassifier"})
ALLOWED_STATEMENTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "Show", "Describe", "Exists", "Explain")
_FUNCTION_LINE = re.compile(r"^\s*Function (\S+)", re.MULTILINE)
_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+\w+$")


class QueryRefused(Exception):
    """A query the read-only surface will not run; the message says why."""


class ReadOnlySql:
    """Checks and runs read-only queries on a client of its own, which it switches to readonly=1."""

    def __init__(self, connect: Callable[[], Client]) -> None:
        self._connect = connect
        self._client_instance: Client | None = None
        self._blocked: frozenset[str] | None = None
        self._lock = threading.Lock()

    @property
    def _client(self) -> Client:
        if self._client_instance is None:
            client = self._connect()
            client.set_client_setting("readonly", "1")
            self._client_instance = client
        return self._client_instance

    def close(self) -> None:
        if self._client_instance is not None:
            self._client_instance.close()
            self._client_instance = None

    def _blocked_functions(self) -> frozenset[str]:
        if self._blocked is None:
            names = self._client.query("SELECT name FROM system.table_functions").result_columns
            table_functions = {n.lower() for n in (names[0] if names else [])}
            self._blocked = frozenset(table_functions - SAFE_TABLE_FUNCTIONS) | BLOCKED_SCALAR_FUNCTIONS
        return self._blocked

    def check(self, sql: str) -> tuple[str, bool]:
        """Return the canonical single statement and whether it names its own FORMAT."""
        try:
            client = self._client
        except Exception as exc:
            raise QueryRefused(f"store unreachable: {exc}") from None
        try:
            canonical = client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql}).result_rows[0][
                0
            ]
            format_clause = _FORMAT_CLAUSE.search(canonical)
            statement = canonical[: format_clause.start()] if format_clause else canonical
            ast = client.raw_query("EXPLAIN AST " + statement, fmt="TSVRaw").decode()
        except ClickHouseError as exc:
            raise QueryRefused(_clickhouse_message(exc)) from None
        lines = ast.splitlines()
        top = lines[0].strip() if lines else ""
        if not top.startswith(ALLOWED_STATEMENTS):
            kind = top.split(" ")[0]
            raise QueryRefused(f"the SQL surface is read-only: SELECT, SHOW, DESCRIBE, EXISTS or EXPLAIN, not {kind}")
        if top.startswith("Select") and any(
            line.startswith(" Literal") for line in lines[1:]
        ):  # a literal directly under the statement is an INTO OUTFILE target
            raise QueryRefused("INTO OUTFILE is not allowed: the SQL surface is read-only")
        blocked = self._blocked_functions()
        for name in _FUNCTION_LINE.findall(ast):
            if name.lower() in blocked:
                raise QueryRefused(f"function {name}() reaches outside the store and is not allowed here")
        return canonical, format_clause is not None

    def run(self, sql: str, fmt: str = "table") -> bytes:
        with self._lock:
            canonical, has_format = self.check(sql)
            try:
                return self._client.raw_query(canonical, fmt=None if has_format else resolve_format(fmt))
            except ClickHouseError as exc:
                raise QueryRefused(_clickhouse_message(exc)) from None


def _clickhouse_message(exc: Exception) -> str:
    text = str(exc)
    start = text.find("Code: ")
    return (text[start:] if start >= 0 else text).strip().splitlines()[0]


# --- the endpoint, inside the collector -------------------------------------------------------


class QueryEndpoint:
    """ClickHouse-HTTP-style read-only endpoint over the collector's own store."""

    def __init__(self, sql: ReadOnlySql, host: str, port: int) -> None:
        self._sql = sql
        self._host = host
        self.port = port
        self.key = secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/", self._query)
        app.router.add_get("/ping", self._ping)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        self._sql.close()

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _authorized(self, request: web.Request) -> bool:
        supplied = request.headers.get("X-ClickHouse-Key") or request.query.get("password") or ""
        if not supplied and request.headers.get("Authorization", "").startswith("Basic "):
            decoded = base64.b64decode(request.headers["Authorization"][6:]).decode(errors="replace")
            supplied = decoded.partition(":")[2]
        return secrets.compare_digest(supplied, self.key)

    async def _query(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _ch_error(
                403, 516, "Authentication failed: pass the key from collector.json (AUTHENTICATION_FAILED)"
            )
        body = (await request.read()).decode() if request.method == "POST" else ""
        sql = request.query.get("query", "")
        if body:
            sql = f"{sql} {body}" if sql else body
        if not sql.strip():
            return _ch_error(400, 62, "Empty query (SYNTAX_ERROR)")
        fmt = request.query.get("default_format", "TabSeparated")
        try:
            data = await asyncio.to_thread(self._sql.run, sql, fmt)
        except QueryRefused as exc:
            return _ch_error(400, 164, str(exc))
        return web.Response(body=data, headers={"X-ClickHouse-Format": resolve_format(fmt)})


def _ch_error(status: int, code: int, message: str) -> web.Response:
    text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
    return web.Response(status=status, text=text + "\n", headers={"X-ClickHouse-Exception-Code": str(code)})
