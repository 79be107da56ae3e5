"""The read-only SQL surface: `tracehouse sql`, and the query endpoint a running collector offers.

chDB lets one process open an on-disk store, so while the collector runs, `tracehouse sql` goes
through it: the collector serves a small subset of ClickHouse's HTTP interface on 127.0.0.1
(POST / with the query as body, `default_format`, a key), advertised in <data_dir>/collector.json.

Every query, on either path, is checked by ClickHouse's own parser, and the string that was checked
is the string that runs. The user's text is normalised by formatQuerySingleLine; its own FORMAT (or
the requested one), a name from a fixed allow-list, is put at the end, a tag comment at the start;
EXPLAIN AST of that final string is checked and that final string runs. The check (`check_ast`): one
statement, a SELECT/SHOW TABLES/DESCRIBE/EXISTS/EXPLAIN SELECT; no INTO OUTFILE on any statement; no
SETTINGS clause; only SAFE_TABLE_FUNCTIONS in FROM; no function that reads files, dictionaries or
server configuration; no system table outside READABLE_SYSTEM_TABLES. The query then runs with
readonly=1 and fixed limits (QueryLimits) that ClickHouse enforces and readonly=1 keeps fixed.
Running reads are tagged, so a client that goes away, Ctrl-C or shutdown stops them (KILL QUERY).
An accepted verdict is kept per query shape (the text but for its integer literals), format and row limit
(VerdictCache, bounded): Grafana repeats its queries with a moving time range, and the check costs two engine
round trips; a cache hit runs the checked statement with the query's own literals, under a new tag.

The client half (`read_query`, for `tracehouse sql` and `tracehouse prices`) goes through the endpoint
advertised in collector.json, else opens the store itself under the store lock (both in `runtime`).
`tracehouse sql` imports this module on every call: aiohttp and the ClickHouse driver, which the client
going through the endpoint does not need, are imported inside the functions of the guard and the endpoint.
The wire formats the endpoint speaks for clickhouse-go (Native framed for a protocol revision, compressed
blocks) are in clickhouse_native.py and clickhouse_compressed.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tracehouse.collector.clickhouse_compressed import compressed_blocks
from tracehouse.collector.clickhouse_native import NativeUnsupported, native_for_revision
from tracehouse.collector.logs import LogLimiter
from tracehouse.collector.receivers.connections import AiohttpLog, ConnectionPool, tracking_middleware
from tracehouse.collector.runtime import StoreBusy, lock_store, read_runtime_info

if TYPE_CHECKING:
    from aiohttp import web
    from clickhouse_connect.driver.client import Client
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from tracehouse.collector.auth import TenantReadKeys
    from tracehouse.collector.config import Config
    from tracehouse.collector.receivers.limits import ConnectionLimits

log = logging.getLogger(__name__)
_limited = LogLimiter(log)
# Connections the query endpoint holds at most (each SQL client pools a few; Grafana's plugin ~10).
QUERY_MAX_CONNECTIONS = 256

# --- output formats and results --------------------------------------------------------------------

# The short names of `--format`. csv and tsv are ClickHouse's own CSV and TSV (no header row), as the
# same names are in a FORMAT clause and in `default_format`; CSVWithNames and TSVWithNames add one.
TABLE_FORMATS = {
    "table": "PrettyCompactMonoBlock",
    "csv": "CSV",
    "tsv": "TSV",
    "json": "JSON",
    "jsonl": "JSONEachRow",
}
# The output formats a read may use (`--format`, `default_format`, a FORMAT clause): text and
# columnar data formats only. Not Template or CustomSeparated (their layout comes from files named
# by settings), Protobuf or CapnProto (a schema file), nor anything else this list does not name.
OUTPUT_FORMATS = (
    "TabSeparated TabSeparatedRaw TabSeparatedWithNames TabSeparatedWithNamesAndTypes TabSeparatedRawWithNames"
    " TabSeparatedRawWithNamesAndTypes TSV TSVRaw TSVWithNames TSVWithNamesAndTypes TSVRawWithNames"
    " TSVRawWithNamesAndTypes CSV CSVWithNames CSVWithNamesAndTypes JSON JSONStrings JSONCompact"
    " JSONCompactStrings JSONEachRow JSONLines NDJSON JSONStringsEachRow JSONCompactEachRow"
    " JSONCompactEachRowWithNames JSONCompactEachRowWithNamesAndTypes JSONCompactStringsEachRow JSONColumns"
    " JSONCompactColumns JSONObjectEachRow Pretty PrettyCompact PrettyCompactMonoBlock PrettyMonoBlock"
    " PrettySpace PrettySpaceMonoBlock PrettyNoEscapes PrettyCompactNoEscapes PrettySpaceNoEscapes Vertical"
    " Markdown XML Values Native RowBinary RowBinaryWithNames RowBinaryWithNamesAndTypes Parquet Arrow"
    " ArrowStream ORC Null"
).split()
_FORMATS_BY_LOWER = {name.lower(): name for name in OUTPUT_FORMATS} | {
    short: full for short, full in TABLE_FORMATS.items()
}


class QueryFailed(Exception):
    """A read query that did not run; the message is for the user."""


class NoStore(QueryFailed):
    """There is no store to read: not a fault of the query, so a command says it as it is, not as a query's."""


class QueryCancelled(Exception):
    """Ctrl-C stopped a read query (it was killed in the store, not left running)."""


class FormatRefused(ValueError):
    """An output format outside OUTPUT_FORMATS."""


@dataclass(frozen=True)
class QueryResult:
    body: bytes
    format: str  # the output format the body is in


def resolve_format(name: str) -> str:
    """The ClickHouse output format for a short name (table, csv, ...) or an allow-listed format name."""
    key = name.strip().lower()
    found = TABLE_FORMATS.get(key) or _FORMATS_BY_LOWER.get(key)
    if found is None:
        shown = name if len(name) <= 40 and name.isprintable() else repr(name[:40]) + "..."
        raise FormatRefused(
            f"unknown output format {shown}: use table, csv, tsv, json, jsonl or a ClickHouse output format "
            "such as TSVWithNames, JSONEachRow, Parquet"
        )
    return found


# --- the client: through a running collector, else on the store ---------------------------------


class EndpointUnreachable(Exception):
    """No collector answers at the advertised endpoint (it just stopped, or was killed)."""


class EndpointRefused(Exception):
    """The collector answered with an error; the message is ClickHouse's or the guard's."""


def query_endpoint(info: dict, sql: str, fmt: str, timeout: float = 300) -> QueryResult:
    """Run a query through a running collector's read-only endpoint."""
    try:
        fmt = resolve_format(fmt)
    except FormatRefused as exc:
        raise EndpointRefused(str(exc)) from None
    url = info["query_url"] + "?" + urllib.parse.urlencode({"default_format": fmt})
    request = urllib.request.Request(
        url, data=sql.encode(), headers={"X-ClickHouse-Key": info["query_key"]}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return QueryResult(response.read(), response.headers.get("X-ClickHouse-Format") or fmt)
    except urllib.error.HTTPError as exc:
        raise EndpointRefused(exc.read().decode(errors="replace").strip()) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise EndpointUnreachable(str(exc)) from None


def read_rows(config: Config, sql: str) -> list[dict[str, Any]]:
    """The rows of a read query (`read_query` as JSON lines), for the commands that read the store."""
    body = read_query(config, sql, "JSONEachRow").body
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def run_read_query(config: Config, sql: str, fmt: str) -> bytes:
    """The body of `read_query` (for callers that name their format)."""
    return read_query(config, sql, fmt).body


def read_query(config: Config, sql: str, fmt: str) -> QueryResult:
    """A read-only query over the store: through the running collector's endpoint when one owns the
    embedded store, else on the store itself (under the store lock). Raises QueryFailed, and
    QueryCancelled on Ctrl-C once the query has been stopped."""
    try:
        resolve_format(fmt)
    except FormatRefused as exc:
        raise QueryFailed(str(exc)) from None
    info = read_runtime_info(config) if config.is_embedded else None
    if info is not None:
        try:
            return query_endpoint(info, sql, fmt)
        except EndpointUnreachable:
            pass  # a collector that just died: open the store ourselves
        except EndpointRefused as exc:
            raise QueryFailed(str(exc)) from None
        except KeyboardInterrupt:
            raise QueryCancelled() from None  # the endpoint stops a query whose client hung up
    if config.is_embedded and not config.store_dir.exists():  # before the lock, which would create the data dir
        raise NoStore(f"no store in {config.data_dir}; start `tracehouse serve` first")
    try:
        lock = lock_store(config)
    except StoreBusy:
        raise QueryFailed("the store is open in another process and no query endpoint answers") from None
    try:
        if config.is_embedded and not config.store_dir.exists():
            raise NoStore(f"no store in {config.data_dir}; start `tracehouse serve` first")
        return _read_in_process(config, sql, fmt)
    finally:
        if lock:
            lock.close()


def _read_in_process(config: Config, sql: str, fmt: str) -> QueryResult:
    """Run on the store in a worker thread: the main thread stays free to take Ctrl-C (a query in
    chDB's C++ code would not see it) and then kills the query before returning."""
    from tracehouse.collector import store

    runner = ReadOnlySql(lambda: store.connect(config.store_url), query_limits(config))
    outcome: list[QueryResult | BaseException] = []

    def work() -> None:
        try:
            outcome.append(runner.run(sql, fmt))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome.append(exc)

    worker = threading.Thread(target=work, name="tracehouse-sql", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        runner.cancel_all()
        with contextlib.suppress(RuntimeError):  # Ctrl-C inside start(): no thread to wait for
            worker.join(10)
        runner.close()
        raise QueryCancelled() from None
    runner.close()
    result = outcome[0]
    if isinstance(result, QueryRefused):
        raise QueryFailed(str(result)) from None
    if isinstance(result, BaseException):
        raise result
    return result


# --- the check ---------------------------------------------------------------------------------

# Table functions allowed in FROM: they only compute (or, view, run a subquery that is checked too),
# and ClickHouse runs them with readonly=1 (tests/test_sql_guard.py runs each one).
# Not merge (merge('system', '.*') reads any system table), not loop, dictionary, input, file, url, ...
SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "generaterandom",
        "generateseries",
        "generate_series",
        "values",
        "view",
        "null",
        "primes",
    }
)
# Compute-only table functions that ClickHouse itself refuses with readonly=1 (READONLY), and what to
# write instead.
READONLY_REFUSED_TABLE_FUNCTIONS = {
    "zeros": "system.zeros with a LIMIT",
    "zeros_mt": "system.zeros_mt with a LIMIT",
    "format": "values('a UInt8, b String', (1, 'x'), ...)",
}
# Scalar functions that read files, models, dictionaries (which may have file/URL/executable sources)
# or the server's configuration (paths). Any name starting with "dict" is refused too.
BLOCKED_SCALAR_FUNCTIONS = frozenset(
    {"file", "catboostevaluate", "naivebayesclassifier", "getserversetting", "getmacro", "joinget", "joingetornull"}
)
# System tables a reader may see. Compute-only (one, numbers, zeros, primes); what schema browsers and
# clients read at connect (databases, tables, columns, parts, functions, formats, settings, ...; the
# information_schema views read only these). Not processes or *_log (other clients' query text), not
# errors, disks, storage_policies, server_settings, build_options, macros, clusters, users, grants,
# dictionaries, merges or mutations (the host's layout, configuration and other clients' commands).
READABLE_SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "primes",
        "databases",
        "tables",
        "columns",
        "parts",
        "functions",
        "table_functions",
        "table_engines",
        "formats",
        "data_type_families",
        "aggregate_function_combinators",
        "collations",
        "time_zones",
        "keywords",
        "settings",
    }
)
_SELECTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})
_EXISTS = frozenset({"ExistsTableQuery", "ExistsViewQuery", "ExistsDictionaryQuery", "ExistsDatabaseQuery"})
_SHOW_CREATE = frozenset({"ShowCreateTableQuery", "ShowCreateViewQuery"})
STATEMENTS = _SELECTS | _EXISTS | _SHOW_CREATE | {"DescribeQuery", "ShowTables", "ShowFunctions", "ShowEngineQuery"}
# ShowTables is the AST of several SHOW forms; these are the ones that read only readable tables.
_SHOW_TABLES_FORMS = re.compile(r"^SHOW (?:FULL )?(?:TEMPORARY )?(?:TABLES|DATABASES)\b|^SHOW (?:CHANGED )?SETTINGS\b")
_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+(\w+)$")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
# An explicit PREWHERE runs on every row read, before additional_table_filters narrows them to a tenant's: an
# expression that fails on another tenant's row would name its value in the error (tenant_reads.py).
_PREWHERE = re.compile(r"\bPREWHERE\b", re.IGNORECASE)
_CHILDREN = re.compile(r" \(children (\d+)\)$")
_TAG = "/* tracehouse-read {} */ "
_PLAIN_TAG = re.compile(r"[0-9A-Za-z_-]{1,64}")
_SELECT_START = re.compile(r"^(?:SELECT|WITH)\b")


def _identifier(name: str) -> str:
    """A column name as a back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _read_only(canonical: str) -> str:
    """The refusal of a statement that is not a read, naming its first two words."""
    return (
        "the SQL surface is read-only: SELECT, SHOW TABLES, DESCRIBE, EXISTS or EXPLAIN,"
        f" not {' '.join(canonical.split()[:2])}"
    )


class QueryRefused(Exception):
    """A query the read-only surface will not run; the message says why, `code` is ClickHouse's."""

    def __init__(self, message: str, code: int = 164) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class QueryLimits:
    """What one read may cost. Enforced by ClickHouse itself; readonly=1 stops a query lifting them."""

    max_execution_seconds: float = 30.0
    max_memory_bytes: int = 2 << 30
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 << 20
    # The formatted output (what the endpoint sends) may be larger than the result: bound it too.
    max_response_bytes: int = 512 << 20
    concurrent_queries: int = 4

    def settings(self) -> dict[str, str]:
        return {
            "max_execution_time": f"{self.max_execution_seconds:g}",
            "timeout_overflow_mode": "throw",
            "max_memory_usage": str(self.max_memory_bytes),
            "max_result_rows": str(self.max_result_rows),
            "max_result_bytes": str(self.max_result_bytes),
            "result_overflow_mode": "throw",
            # chDB turns these on (addressToLine answers the library's path on disk); ClickHouse has them off.
            "allow_introspection_functions": "0",
            # Last: once set, no setting can change, in this client or in the query.
            "readonly": "1",
        }


def query_limits(config: Any) -> QueryLimits:
    """The limits a config sets (query_max_* settings)."""
    return QueryLimits(
        max_execution_seconds=config.query_max_execution_seconds,
        max_memory_bytes=config.query_max_memory_bytes,
        max_result_rows=config.query_max_result_rows,
        max_result_bytes=config.query_max_result_bytes,
        max_response_bytes=max(2 * config.query_max_result_bytes, 16 << 20),
    )


@dataclass
class Node:
    kind: str
    text: str  # the line without its indentation and `(children N)`
    children: list[Node] = field(default_factory=list)

    def walk(self, parent: Node | None = None) -> Iterator[tuple[Node, Node | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


def parse_ast(dump: str) -> Node:
    """EXPLAIN AST's tree. Names are printed raw, so an identifier with a line break could add lines:
    every node must have exactly the children it declares, which an added line always breaks."""
    stack: list[tuple[int, Node, int]] = []  # depth, node, declared children
    root: Node | None = None
    for line in dump.rstrip("\n").split("\n"):
        depth = len(line) - len(line.lstrip(" "))
        body = line[depth:]
        match = _CHILDREN.search(body)
        node = Node(body.split(" ", 1)[0], body[: match.start()] if match else body)
        while stack and stack[-1][0] >= depth:
            _close(stack.pop())
        if not stack:
            if root is not None or depth != 0:
                raise QueryRefused("the query cannot be checked: more than one statement tree")
            root = node
        else:
            if depth != stack[-1][0] + 1:
                raise QueryRefused("the query cannot be checked: a line break in a name?")
            stack[-1][1].children.append(node)
        stack.append((depth, node, int(match.group(1)) if match else 0))
    while stack:
        _close(stack.pop())
    if root is None:
        raise QueryRefused("the query cannot be checked: empty syntax tree")
    return root


def _close(entry: tuple[int, Node, int]) -> None:
    if len(entry[1].children) != entry[2]:
        raise QueryRefused("the query cannot be checked: a line break in a name?")


def _name(text: str, prefix_words: int = 1) -> str:
    """The identifier after the node kind, without its alias."""
    name = text.split(" ", prefix_words)[-1] if " " in text else ""
    return name.split(" (alias ", 1)[0]


def _check_table(database: str, table: str) -> None:
    if database.lower() == "system" and table.lower() not in READABLE_SYSTEM_TABLES:
        readable = ", ".join(sorted(READABLE_SYSTEM_TABLES))
        raise QueryRefused(f"system.{table} is not readable here; readable system tables: {readable}")


def _check_dotted(name: str, current_database: str) -> None:
    database, dot, table = name.partition(".")
    if dot:
        _check_table(database, table.partition(".")[0])
    else:
        _check_table(current_database, name)


@dataclass(frozen=True)
class Catalogue:
    """Names the check needs from the engine itself, read once."""

    table_functions: frozenset[str]
    scalar_functions: frozenset[str]
    database: str


def check_ast(root: Node, canonical: str, fmt: str, catalogue: Catalogue) -> None:
    """Refuse anything but a read of the store; `fmt` is the FORMAT the final string ends with."""
    if root.kind not in STATEMENTS and root.kind != "Explain":
        raise QueryRefused(_read_only(canonical))
    if root.kind == "ShowTables" and not _SHOW_TABLES_FORMS.match(canonical):
        raise QueryRefused(
            f"{' '.join(canonical.split()[:2])} is not allowed here: SHOW TABLES, DATABASES or SETTINGS only"
        )
    last = root.children[-1] if root.children else None
    if last is None or last.kind != "Identifier" or _name(last.text) != fmt:
        raise QueryRefused("the query cannot be expressed safely: its FORMAT clause is not where it runs")
    for node, parent in root.walk():
        kind = node.kind
        if (kind in STATEMENTS or kind == "Explain") and any(child.kind == "Literal" for child in node.children):
            raise QueryRefused("INTO OUTFILE is not allowed: the SQL surface is read-only")
        if kind == "Explain":
            inner = [c for c in node.children if c.kind not in ("Set", "Identifier", "Literal")]
            if any(c.kind not in _SELECTS and c.kind != "Explain" for c in inner):
                raise QueryRefused("EXPLAIN is allowed for SELECT queries only")
        elif kind == "Set" and (parent is None or parent.kind != "Explain"):
            raise QueryRefused("a SETTINGS clause is not allowed: reads run with readonly=1 and fixed limits")
        elif kind in ("TableIdentifier", "Identifier") and node is not last:
            name = _name(node.text)
            if kind == "TableIdentifier" or "." in name:
                _check_dotted(name, catalogue.database if kind == "TableIdentifier" else "")
        elif kind in _EXISTS or kind in _SHOW_CREATE:
            words = node.text.split(" ")
            if kind != "ExistsDatabaseQuery" and len(words) >= 3:
                _check_table(words[1] or catalogue.database, words[2])
        elif kind == "Function":
            _check_function(node, parent, catalogue)


def _check_function(node: Node, parent: Node | None, catalogue: Catalogue) -> None:
    name = _name(node.text)
    lowered = name.lower()
    if parent is not None and parent.kind == "TableExpression":
        instead = READONLY_REFUSED_TABLE_FUNCTIONS.get(lowered)
        if instead:
            raise QueryRefused(f"table function {name}() does not run with readonly=1; use {instead}")
        if lowered not in SAFE_TABLE_FUNCTIONS:
            raise QueryRefused(f"table function {name}() reaches outside the store and is not allowed here")
        return
    if (
        lowered in BLOCKED_SCALAR_FUNCTIONS
        or lowered.startswith("dict")
        or (lowered in catalogue.table_functions and lowered not in SAFE_TABLE_FUNCTIONS)
        and lowered not in catalogue.scalar_functions
    ):
        raise QueryRefused(f"function {name}() reaches outside the store and is not allowed here")


# --- running -------------------------------------------------------------------------------------


# An unsigned integer literal in a query's code: ASCII digits, no leading zero, at most 18 (always a UInt64),
# with no identifier character (any non-ASCII one counts: ClickHouse reads them in names), digit or dot on
# either side, so it is never part of a name, a float or a tuple index.
_NUMBER = r"(?<![A-Za-z0-9_.\x80-\U0010ffff])(?:0|[1-9][0-9]{0,17})(?![A-Za-z0-9_.\x80-\U0010ffff])"
_QUERY_TOKENS = re.compile(
    r"(?P<skip>'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|--[^\n]*)"
    rf"|(?P<number>{_NUMBER})|(?P<open>['`\"])",
    re.S,
)


def numbers_shape(sql: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """`sql` cut at its unsigned integer literals outside strings, quoted names and comments: the text
    between them and the literals. None for a text this does not read for certain: a block, `#` or heredoc
    comment or string (`/*`, `#`, `$`), a NUL, an unterminated quote."""
    if "/*" in sql or any(char in sql for char in "#$\0"):
        return None
    pieces: list[str] = []
    numbers: list[str] = []
    at = 0
    for match in _QUERY_TOKENS.finditer(sql):
        if match.lastgroup == "open":
            return None
        if match.lastgroup == "number":
            pieces.append(sql[at : match.start()])
            numbers.append(match.group())
            at = match.end()
    pieces.append(sql[at:])
    return tuple(pieces), tuple(numbers)


_SENTINEL_BASE = 918273645500000000  # 18 digits: still a literal numbers_shape reads


class Probe(NamedTuple):
    """A query's integer literals replaced by `sentinels`, and the statement the check made of that text."""

    sentinels: tuple[str, ...]
    canonical: str


def sentinel_probe(sql: str) -> tuple[str, tuple[str, ...]] | None:
    """`sql` with a distinct sentinel for each integer literal, and the sentinels; None when it has no shape or
    a sentinel's digits already occur in it (a sentinel must be recognisable wherever it lands)."""
    shape = numbers_shape(sql)
    if shape is None or not shape[1]:
        return None
    sentinels = tuple(str(_SENTINEL_BASE + index) for index in range(len(shape[1])))
    if any(sentinel[:12] in sql for sentinel in sentinels):
        return None
    filled = [shape[0][0]]
    for sentinel, piece in zip(sentinels, shape[0][1:], strict=True):
        filled += (sentinel, piece)
    return "".join(filled), sentinels


@dataclass(frozen=True)
class _Verdict:
    """What the check made of one query: the checked statement (without tag and FORMAT) cut at its integer
    literals (`pieces`; one piece for a verdict on the exact text), the literals it has beyond the query's
    own (the row limit's), and its output format."""

    pieces: tuple[str, ...]
    tail: tuple[str, ...]
    output: str

    def canonical(self, numbers: tuple[str, ...]) -> str:
        """The checked statement with the query's own literals in their places."""
        filled = [self.pieces[0]]
        for number, piece in zip((*numbers, *self.tail), self.pieces[1:], strict=True):
            filled += (number, piece)
        return "".join(filled)


class VerdictCache:
    """The guard's accepted verdicts, by query shape, the format asked for and the row limit.

    Grafana sends the same queries on every refresh, with the time range's ends as integer literals
    (`toDateTime(1733300000)`) that move each time; the check of one costs two engine round trips
    (formatQuerySingleLine, EXPLAIN AST), more than a small query itself. The check reads node kinds and
    names, the format and the row limit, and the catalogue (fixed per runner), never the value of an
    integer literal: a query whose text differs from a checked one only in such literals (numbers_shape:
    the same text between them, each a plain decimal UInt64) gets the same verdict, and runs as the checked
    statement with its own literals put back where formatQuerySingleLine printed the checked one's (a probe
    with a sentinel per literal must show that each stayed in its own slot, or the verdict is kept for the
    exact text only). Bound parameters are
    quoted in the text, so another value is another shape. Only accepted verdicts are kept: a refusal is
    always recomputed. Bounded: at most `entries` verdicts of queries up to `max_query_chars` each, the
    least recently used dropped first."""

    def __init__(self, entries: int = 512, max_query_chars: int = 16 << 10) -> None:
        self.entries, self.max_query_chars = entries, max_query_chars
        self._verdicts: OrderedDict[tuple[str, tuple[str, ...], str, int | None], _Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, sql: str, fmt: str, row_limit: int | None) -> tuple[str, str] | None:
        """The checked statement (without tag and FORMAT) and output format for `sql`, if its shape or its
        exact text was accepted before."""
        shape = numbers_shape(sql) if len(sql) <= self.max_query_chars else None
        keys = [("shape", shape[0], fmt, row_limit)] if shape else []
        keys.append(("text", (sql,), fmt, row_limit))
        with self._lock:
            for key in keys:
                verdict = self._verdicts.get(key)
                if verdict is not None:
                    self._verdicts.move_to_end(key)
                    return verdict.canonical(shape[1] if key[0] == "shape" and shape else ()), verdict.output
        return None

    def put(
        self, sql: str, fmt: str, row_limit: int | None, canonical: str, output: str, probe: Probe | None = None
    ) -> None:
        """Keep the verdict that `sql` runs as `canonical` in `output`: by shape when `probe` (the same query
        with a sentinel for each literal, checked the same way) shows that each literal of `sql` lands in its
        own slot of `canonical`, the rest of which is the same (then any row limit's); else by the exact text.
        Equal literals are not enough: the formatter moves some (`LIMIT a OFFSET b` prints as `LIMIT b, a`,
        `FROM t SELECT x` as `SELECT x FROM t`) and hides others in strings (`x::Decimal(9)`)."""
        if self.entries <= 0 or len(sql) > self.max_query_chars:
            return
        shape, checked = numbers_shape(sql), numbers_shape(canonical)
        probed = numbers_shape(probe.canonical) if probe is not None else None
        if shape and checked and probe is not None and probed and probed[0] == checked[0]:
            count = len(shape[1])
            tail = checked[1][count:]
            if (
                checked[1][:count] == shape[1]
                and probed[1] == (*probe.sentinels, *tail)
                and tail == ((str(row_limit),) if row_limit is not None and tail else ())
            ):
                self._keep(("shape", shape[0], fmt, row_limit), _Verdict(checked[0], tail, output))
                return
        self._keep(("text", (sql,), fmt, row_limit), _Verdict((canonical,), (), output))

    def _keep(self, key: tuple[str, tuple[str, ...], str, int | None], verdict: _Verdict) -> None:
        with self._lock:
            self._verdicts[key] = verdict
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > self.entries:
                self._verdicts.popitem(last=False)


# How often a tenant's read checks that the store's tables are the ones its filters were built from.
TENANT_TABLES_CHECK_SECONDS = 5.0


class ReadOnlySql:
    """Checks and runs read-only queries on clients of its own: a few, since chDB runs queries of
    several connections at once, so one slow read does not queue the others behind it."""

    def __init__(
        self, connect: Callable[[], Client], limits: QueryLimits | None = None, verdicts: VerdictCache | None = None
    ) -> None:
        self.verdicts = verdicts if verdicts is not None else VerdictCache()
        self._connect = connect
        self.limits = limits or QueryLimits()
        # Idle clients by scope: None reads everything, a tenant's name only its rows (tenant_reads.py).
        self._idle: dict[str | None, list[Client]] = {}
        self._idle_lock = threading.Lock()
        self._store_tables: list[tuple[str, str, frozenset[str]]] | None = None
        # The tenant filters' catalogue: checked against the store's tables at most every few seconds (another
        # collector's migration may add one); clients built from an older catalogue are closed, not reused.
        self._tables_checked = 0.0
        self._generation = 0
        self._client_generation: dict[int, int] = {}
        self._slots = threading.BoundedSemaphore(self.limits.concurrent_queries)
        self._all: list[Client] = []
        self._catalogue: Catalogue | None = None
        self._control: Client | None = None
        self._control_lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._closing = False

    # clients

    def _new_client(self, tenant: str | None = None) -> Client:
        from tracehouse.collector.tenant_reads import CONNECTION_SETTINGS

        try:
            client = self._connect()
            if tenant is not None:
                # Before readonly=1 (the limits' last setting), so no query can change it.
                client.set_client_setting("additional_table_filters", self._tenant_filters(client, tenant))
                for name, value in CONNECTION_SETTINGS.items():
                    client.set_client_setting(name, value)
                self._client_generation[id(client)] = self._generation
            for name, value in self.limits.settings().items():
                client.set_client_setting(name, value)
        except Exception as exc:  # noqa: BLE001 - any failure to open is "unreachable" to the user
            raise QueryRefused(f"store unreachable: {_clickhouse_message(exc)}", 210) from None
        self._all.append(client)
        return client

    def _tenant_filters(self, client: Client, tenant: str) -> str:
        from tracehouse.collector.tenant_reads import CATALOGUE_SQL, filters_setting, table_filters

        if self._store_tables is None:
            rows = client.query(CATALOGUE_SQL).result_rows
            self._store_tables = [(name, engine, frozenset(columns)) for name, engine, columns in rows]
        return filters_setting(table_filters(self._store_tables, tenant))

    def _acquire(self, wait: float, tenant: str | None = None) -> Client:
        if self._closing or not self._slots.acquire(timeout=wait):
            why = "the collector is shutting down" if self._closing else "too many queries at once"
            raise QueryRefused(f"{why}; try again (TOO_MANY_SIMULTANEOUS_QUERIES)", 202)
        try:
            if tenant is not None:
                self._check_store_tables()
        except QueryRefused:
            self._slots.release()
            raise
        with self._idle_lock:
            idle = self._idle.get(tenant)
            if idle:
                return idle.pop()
        try:
            return self._new_client(tenant)
        except QueryRefused:
            self._slots.release()
            raise

    def _check_store_tables(self) -> None:
        """Rebuild the tenant filters when the store's tables changed since they were built."""
        now = time.monotonic()
        if self._store_tables is None or now - self._tables_checked < TENANT_TABLES_CHECK_SECONDS:
            return
        from tracehouse.collector.tenant_reads import TABLE_NAMES_SQL

        try:
            with self._control_lock:
                if self._control is None:
                    self._control = self._connect()
                    self._control.set_client_setting("readonly", "1")
                names = self._control.query(TABLE_NAMES_SQL).result_rows[0][0]
        except Exception as exc:  # noqa: BLE001 - any failure to ask is "unreachable" to the user
            raise QueryRefused(f"store unreachable: {_clickhouse_message(exc)}", 210) from None
        self._tables_checked = now
        if sorted(names) == sorted(name for name, _, _ in self._store_tables):
            return
        log.info("the store's tables changed: tenant read filters rebuilt")
        with self._idle_lock:
            self._store_tables = None
            self._generation += 1
            stale = [client for scope, idle in self._idle.items() if scope is not None for client in idle]
            self._idle = {scope: idle for scope, idle in self._idle.items() if scope is None}
        for client in stale:
            self._discard(client)

    def _discard(self, client: Client) -> None:
        self._client_generation.pop(id(client), None)
        with contextlib.suppress(Exception):
            self._all.remove(client)
            client.close()

    def _release(self, client: Client, healthy: bool = True, tenant: str | None = None) -> None:
        if tenant is not None and self._client_generation.get(id(client)) != self._generation:
            healthy = False  # built from an older catalogue
        if healthy:
            with self._idle_lock:
                self._idle[tenant] = [*self._idle.pop(tenant, []), client]  # the scope used last goes last
                surplus = self._surplus_idle()
            for extra in surplus:
                self._discard(extra)
        else:
            # chDB answers the next call on a connection whose query was stopped with a stray error
            # (measured on 26.9 after TIMEOUT_EXCEEDED): such a connection is closed, not reused.
            self._discard(client)
        self._slots.release()

    def _surplus_idle(self) -> list[Client]:
        """Idle clients past twice the concurrency, from the scopes used longest ago (many tenants' Grafanas
        must not keep a client each open forever)."""
        surplus = []
        total = sum(len(idle) for idle in self._idle.values())
        for scope in list(self._idle):
            while total > 2 * self.limits.concurrent_queries and self._idle[scope]:
                surplus.append(self._idle[scope].pop(0))
                total -= 1
            if not self._idle[scope]:
                del self._idle[scope]
        return surplus

    def close(self) -> None:
        self._closing = True
        self.cancel_all()
        for client in [*self._all, *([self._control] if self._control else [])]:
            with contextlib.suppress(Exception):  # closing is best effort at shutdown
                client.close()
        self._all.clear()
        self._control = None

    def catalogue(self, client: Client) -> Catalogue:
        if self._catalogue is None:
            table_functions = client.query("SELECT lower(name) FROM system.table_functions").result_columns
            scalars = client.query("SELECT lower(name) FROM system.functions").result_columns
            database = client.query("SELECT currentDatabase()").result_rows[0][0]
            self._catalogue = Catalogue(
                frozenset(table_functions[0] if table_functions else ()),
                frozenset(scalars[0] if scalars else ()),
                database,
            )
        return self._catalogue

    # check and run

    def prepare(self, client: Client, sql: str, fmt: str, tag: str, row_limit: int | None = None) -> tuple[str, str]:
        """The exact statement to run, and its output format: checked, tagged, FORMAT at the end. A
        `row_limit` (a client's `limit` setting) caps a SELECT's rows as ClickHouse's `limit` does: the
        checked statement is then `SELECT * FROM (<the query>) LIMIT n` (other statements are cut in `run`)."""
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            output = resolve_format(fmt)
        except FormatRefused as exc:
            raise QueryRefused(str(exc), 73) from None
        cacheable = _PLAIN_TAG.fullmatch(tag) is not None  # a tag that cannot end the comment it sits in
        verdict = self.verdicts.get(sql, fmt, row_limit) if cacheable else None
        if verdict is not None:
            return f"{_TAG.format(tag)}{verdict[0]} FORMAT {verdict[1]}", verdict[1]
        canonical, output = self._canonical(client, sql, output, row_limit)
        final = f"{_TAG.format(tag)}{canonical} FORMAT {output}"
        try:
            dump = client.raw_query("EXPLAIN AST " + final, fmt=None).decode()
        except ClickHouseError as exc:
            raise _refused(exc) from None
        if not dump[:1].isupper():  # a header line: the FORMAT bound to EXPLAIN, so no statement takes one
            raise QueryRefused(_read_only(canonical))
        check_ast(parse_ast(dump), canonical, output, self.catalogue(client))
        if cacheable:
            self.verdicts.put(sql, fmt, row_limit, canonical, output, self._probe(client, sql, output, row_limit))
        return final, output

    def _canonical(self, client: Client, sql: str, output: str, row_limit: int | None) -> tuple[str, str]:
        """`sql` as ClickHouse prints it back (formatQuerySingleLine), its own FORMAT taken off (and made the
        output format), refused if it writes a file, wrapped in the row limit."""
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            canonical = client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql})
            canonical = canonical.result_rows[0][0]
        except ClickHouseError as exc:
            raise _refused(exc, _CANONICAL_SCOPE) from None
        own_format = _FORMAT_CLAUSE.search(canonical)
        if own_format:
            try:
                output = resolve_format(own_format.group(1))
            except FormatRefused as exc:
                if canonical.startswith("INSERT "):  # its FORMAT names the data's format: refuse the write
                    raise QueryRefused(_read_only(canonical)) from None
                raise QueryRefused(str(exc), 73) from None
            canonical = canonical[: own_format.start()]
        if _OUTFILE.search(_QUOTED.sub("''", canonical)):
            raise QueryRefused("INTO OUTFILE is not allowed: the SQL surface is read-only")
        if row_limit is not None and _SELECT_START.match(canonical):
            canonical = f"SELECT * FROM ({canonical}) LIMIT {int(row_limit)}"
        return canonical, output

    def _probe(self, client: Client, sql: str, output: str, row_limit: int | None) -> Probe | None:
        """Where formatQuerySingleLine puts each integer literal of `sql`: the query with a distinct sentinel
        in each literal's place, canonicalized as the query was (VerdictCache.put keeps a verdict by shape only
        when every sentinel comes back in its own slot)."""
        probe = sentinel_probe(sql)
        if probe is None:
            return None
        text, sentinels = probe
        try:
            return Probe(sentinels, self._canonical(client, text, output, row_limit)[0])
        except QueryRefused:
            return None

    def check(self, sql: str, fmt: str = "TabSeparated") -> str:
        """The statement `run` would run (for tests and tools)."""
        client = self._acquire(wait=5)
        try:
            return self.prepare(client, sql, fmt, uuid.uuid4().hex)[0]
        finally:
            self._release(client)

    def run(
        self,
        sql: str,
        fmt: str = "table",
        tag: str | None = None,
        wait: float = 5,
        row_limit: int | None = None,
        tenant: str | None = None,
    ) -> QueryResult:
        """Check and run `sql`; with `tenant`, on a client that reads that tenant's rows only."""
        from clickhouse_connect.driver.exceptions import ClickHouseError

        tag = tag or uuid.uuid4().hex
        done = threading.Event()
        self._running[tag] = done
        try:
            client = self._acquire(wait, tenant)
            healthy = False
            try:
                final, output = self.prepare(client, sql, fmt, tag, row_limit)
                if tenant is not None and _PREWHERE.search(_QUOTED.sub("''", final.removeprefix(_TAG.format(tag)))):
                    raise QueryRefused("PREWHERE is not allowed with a tenant's read key: use WHERE", 164)
                if done.is_set():  # cancelled while being checked
                    raise QueryRefused("Query was cancelled. (QUERY_WAS_CANCELLED)", 394)
                statement = final.removeprefix(_TAG.format(tag)).removesuffix(f" FORMAT {output}")
                try:
                    if row_limit is None or _SELECT_START.match(statement):  # a SELECT's limit is in `final`
                        body = client.raw_query(final, fmt=None)
                    else:
                        body = self._first_rows(client, final, statement, output, tag, row_limit)
                except ClickHouseError as exc:
                    raise _refused(exc) from None
                healthy = True
            except QueryRefused as exc:
                healthy = exc.code == 164 and not str(exc).startswith("Code:")  # refused by the guard itself
                raise
            finally:
                self._release(client, healthy, tenant)
        finally:
            self._running.pop(tag, None)
            done.set()
        if len(body) > self.limits.max_response_bytes:
            raise QueryRefused(
                f"the result is larger than {self.limits.max_response_bytes} bytes; narrow the query"
                " (TOO_MANY_ROWS_OR_BYTES)",
                396,
            )
        return QueryResult(body, output)

    def _first_rows(self, client: Client, final: str, statement: str, output: str, tag: str, limit: int) -> bytes:
        """A checked statement that takes no `SELECT * FROM (...) LIMIT n` around it (SHOW, DESCRIBE, EXISTS,
        EXPLAIN), cut to its first `limit` rows as ClickHouse's `limit` setting cuts a SELECT's: its answer
        read as JSON rows, the first ones given back in `output` by a SELECT of them (names and types as the
        statement answered them; the rows a parameter, never SQL text)."""
        if limit <= 0:
            return client.raw_query(final, fmt=None)
        raw = client.raw_query(f"{_TAG.format(tag)}{statement} FORMAT JSONCompactEachRowWithNamesAndTypes", fmt=None)
        lines = raw.decode(errors="replace").split("\n")
        if len(lines) <= 2 + limit or not lines[2 + limit]:  # no more rows than the limit: the answer as it is
            return client.raw_query(final, fmt=None)
        names, types = json.loads(lines[0]), json.loads(lines[1])
        columns = ", ".join(f"tupleElement(r, {i + 1}) AS {_identifier(name)}" for i, name in enumerate(names))
        rows_type = string_literal(f"Array(Tuple({', '.join(types)}))")
        rows = f"arrayJoin(JSONExtract({{rows:String}}, {rows_type}))"
        first = f"{_TAG.format(tag)}SELECT {columns} FROM (SELECT {rows} AS r) FORMAT {output}"
        return client.raw_query(first, fmt=None, parameters={"rows": f"[{','.join(lines[2 : 2 + limit])}]"})

    # cancel

    def cancel(self, tag: str, wait: float = 5.0) -> None:
        """Stop a running read (the client went away, Ctrl-C, shutdown) and wait until it ended."""
        done = self._running.get(tag)
        if done is None:
            return
        done.set()
        end = threading.Event()
        for _ in range(int(wait / 0.1)):
            if tag not in self._running:
                return
            self._kill(tag)
            if end.wait(0.1) or tag not in self._running:
                return

    def cancel_all(self) -> None:
        for tag in list(self._running):
            self.cancel(tag)

    def _kill(self, tag: str) -> None:
        pattern = _TAG.format(tag).strip()
        with self._control_lock:
            try:
                if self._control is None:
                    self._control = self._connect()
                    self._control.set_client_setting("readonly", "1")
                self._control.raw_query(f"KILL QUERY WHERE startsWith(query, '{pattern}') ASYNC", fmt=None)
            except Exception as exc:  # noqa: BLE001 - the query may have ended meanwhile
                log.debug("KILL QUERY for %s failed: %s", tag, exc)


def _clickhouse_message(exc: Exception) -> str:
    text = str(exc)
    start = text.find("Code: ")
    return (text[start:] if start >= 0 else text).strip().splitlines()[0]


# How ClickHouse names the query an error came from when that query is the guard's own printing of the user's
# text: the user did not write it, so it is cut from the message (the position the message gives is the text's).
_CANONICAL_SCOPE = ": In scope SELECT formatQuerySingleLine("
_TRAILING_ERROR_NAME = re.compile(r"\. \(([A-Z_]+)\)$")


def _refused(exc: ClickHouseError, wrapper_scope: str = "") -> QueryRefused:
    message = _clickhouse_message(exc)
    if wrapper_scope and (at := message.find(wrapper_scope)) >= 0:
        name = _TRAILING_ERROR_NAME.search(message)
        message = message[:at] + (f". ({name.group(1)})" if name else "")
    match = re.match(r"Code: (\d+)", message)
    return QueryRefused(message, int(match.group(1)) if match else 164)


# --- the endpoint, inside the collector -------------------------------------------------------

# Query-string parameters: read by the endpoint, ignored (transport options of ClickHouse clients,
# with no effect on what runs), or refused. Nothing reaches the engine unchecked.
_PARAMETERS = frozenset({"query", "default_format", "database", "user", "password"})
_TRANSPORT_PARAMETERS = frozenset(
    {
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "compress",
        "decompress",
        "enable_http_compression",
        "http_zlib_compression_level",
        "wait_end_of_query",
        "buffer_size",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "client_protocol_version",
        "quota_key",
        "add_http_cors_header",
        "cancel_http_readonly_queries_on_client_close",
    }
)


# Settings a client may pass to narrow what one read may cost, never to widen it: a value at or above the
# endpoint's own limit (or 0, ClickHouse's "no limit") changes nothing. `limit` caps a SELECT's rows the
# way ClickHouse's setting does (the Grafana plugin's row limit sends it).
_NARROWING_SETTINGS = frozenset({"limit", "max_result_rows", "max_result_bytes", "max_execution_time"})
_HTTP_ENCODINGS = ("zstd", "lz4", "gzip", "deflate")  # the order ClickHouse prefers them in
_CONTENT_TYPES = {
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNames": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
    "Parquet": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "ArrowStream": "application/octet-stream",
    "ORC": "application/octet-stream",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
}


# What the narrowing settings take: a count of rows or bytes is ClickHouse's UInt64 in decimal digits, a time
# its seconds in decimal (ClickHouse keeps them as microseconds in an Int64). Anything else (1e300, -1, 0x10,
# 1_000, inf, a number past the type's end) is a 400 naming the setting, never a number ClickHouse refuses.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,20}")
_SECONDS = re.compile(r"[0-9]{1,13}(?:\.[0-9]{1,9})?")
_MAX_UINT64 = (1 << 64) - 1
_MAX_SECONDS = ((1 << 63) - 1) // 10**6


def _setting_number(request: web.Request, name: str, ceiling: float | None = None) -> float | None:
    """A narrowing setting's value: None when not given (or, for `limit`, 0: no limit). A value above
    the endpoint's own `ceiling`, or 0 for a setting that has one (ClickHouse's "no limit"), is the
    ceiling: a client may narrow what a read may cost, never widen it."""
    text = request.query.get(name)
    if text is None or text == "":
        return None
    value: float
    if name == "max_execution_time":
        if not _SECONDS.fullmatch(text) or (value := float(text)) > _MAX_SECONDS:
            raise _HttpRefusal(
                400,
                72,
                f"setting {name}={text[:40]!r}: not a number of seconds from 0 to {_MAX_SECONDS}, in decimal"
                " (CANNOT_PARSE_NUMBER)",
            )
    elif not _WHOLE_NUMBER.fullmatch(text) or (value := int(text)) > _MAX_UINT64:
        unit = "bytes" if name.endswith("bytes") else "rows"
        raise _HttpRefusal(
            400,
            72,
            f"setting {name}={text[:40]!r}: not a whole number of {unit} from 0 to {_MAX_UINT64} (CANNOT_PARSE_NUMBER)",
        )
    if ceiling is not None and (value == 0 or value > ceiling):
        # Held to the endpoint's limit, as a ClickHouse `max` constraint would not: the Grafana plugin sends its
        # query timeout (60 s by default) as max_execution_time with every query, and a refusal fails them all.
        return ceiling
    return value or None


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "0").strip().lower() in ("1", "true")


@dataclass(frozen=True)
class _RequestOptions:
    """What one request asks of a read, checked: its format, its client's protocol revision, the
    compression it wants and the limits it narrows."""

    fmt: str
    revision: int = 0  # client_protocol_version: Native blocks carry what that revision reads
    compress: bool = False  # compress=1: the body in ClickHouse's compressed blocks
    http_compression: bool = False  # enable_http_compression=1: Content-Encoding from Accept-Encoding
    query_id: str = ""
    row_limit: int | None = None  # the SELECT's rows capped here (limit, or max_result_rows + 1)
    max_rows: int | None = None  # more rows than this is an error (max_result_rows, Native only)
    max_bytes: int | None = None
    timeout: float | None = None

    @classmethod
    def of(cls, request: web.Request, fmt: str, limits: QueryLimits) -> _RequestOptions:
        revision_text = request.query.get("client_protocol_version", "0") or "0"
        if not revision_text.isdigit() or len(revision_text) > 9:
            raise _HttpRefusal(400, 72, f"client_protocol_version={revision_text[:20]!r}: not a revision number")
        limit = _setting_number(request, "limit")
        rows = _setting_number(request, "max_result_rows", limits.max_result_rows)
        max_rows = int(rows) if rows is not None and rows < limits.max_result_rows else None
        if max_rows is not None and resolve_format_or_none(fmt) != "Native":
            raise _HttpRefusal(
                400, 115, "max_result_rows narrower than the endpoint's is applied with Native output only; use limit"
            )
        row_limit = int(limit) if limit is not None else None
        if max_rows is not None:
            row_limit = min(row_limit, max_rows + 1) if row_limit is not None else max_rows + 1
        result_bytes = _setting_number(request, "max_result_bytes", limits.max_result_bytes)
        seconds = _setting_number(request, "max_execution_time", limits.max_execution_seconds)
        query_id = request.query.get("query_id", "")[:200]
        if not query_id.isprintable():  # it goes back in a response header: no line breaks, no control bytes
            raise _HttpRefusal(400, 36, "query_id: printable characters only")
        return cls(
            fmt=fmt,
            revision=int(revision_text),
            compress=_flag(request, "compress"),
            http_compression=_flag(request, "enable_http_compression"),
            query_id=query_id,
            row_limit=row_limit,
            max_rows=max_rows,
            max_bytes=int(result_bytes)
            if result_bytes is not None and result_bytes < limits.max_result_bytes
            else None,
            timeout=seconds if seconds is not None and seconds < limits.max_execution_seconds else None,
        )


def resolve_format_or_none(name: str) -> str | None:
    try:
        return resolve_format(name)
    except FormatRefused:
        return None


@dataclass(frozen=True)
class _Shaped:
    body: bytes
    rows: int | None
    result_bytes: int
    encoding: str


def _shape_response(result: QueryResult, options: _RequestOptions, headers: Mapping[str, str]) -> _Shaped:
    """The body as the client asked for it: Native framed for its revision, the narrowed limits checked,
    ClickHouse's compressed blocks (compress=1), then HTTP compression (enable_http_compression=1)."""
    body, rows = result.body, None
    if result.format == "Native" and (options.revision or options.max_rows is not None):
        try:
            native = native_for_revision(body, options.revision)
        except NativeUnsupported as exc:
            raise QueryRefused(
                f"a column of type {exc} cannot be sent in Native to a protocol-revision client here;"
                " cast it in the query (toString(...), CAST(... AS ...)) (NOT_IMPLEMENTED)",
                48,
            ) from None
        body, rows = native.body, native.rows
    if options.max_rows is not None and rows is not None and rows > options.max_rows:
        raise QueryRefused(f"Limit for result exceeded, max rows: {options.max_rows} (TOO_MANY_ROWS_OR_BYTES)", 396)
    if options.max_bytes is not None and len(result.body) > options.max_bytes:
        raise QueryRefused(f"Limit for result exceeded, max bytes: {options.max_bytes} (TOO_MANY_ROWS_OR_BYTES)", 396)
    result_bytes = len(body)
    if options.compress:
        body = compressed_blocks(body)
    encoding = ""
    if options.http_compression:
        accepted = {part.split(";")[0].strip().lower() for part in headers.get("Accept-Encoding", "").split(",")}
        encoding = next((name for name in _HTTP_ENCODINGS if name in accepted), "")
        body = _http_encode(body, encoding)
    return _Shaped(body, rows, result_bytes, encoding)


def _http_encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        import gzip

        return gzip.compress(body, compresslevel=3)
    if encoding == "deflate":  # HTTP's deflate is the zlib format
        import zlib

        return zlib.compress(body, 3)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(body)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.compress(body)
    return body


# Answers up to this size are shaped (Native re-framed, compressed) on the event loop: a hand-off to a worker
# thread costs more than the work (~0.1-0.7 ms on 2 busy cores, bench/bench_query.py), and Grafana's panels
# answer in a few KB. Larger ones go to a thread, so the loop keeps serving other requests meanwhile.
INLINE_SHAPE_BYTES = 16 << 10


class _HttpRefusal(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


_ADMIN_BODY_BYTES = 1 << 20  # the largest body an administration route reads (aiohttp's client_max_size)


class QueryEndpoint:
    """ClickHouse-HTTP-style read-only endpoint over the collector's own store."""

    def __init__(
        self,
        sql: ReadOnlySql,
        host: str,
        port: int,
        read_key: str = "",
        inline_shape_bytes: int = INLINE_SHAPE_BYTES,
        limits: ConnectionLimits | None = None,
        tenant_keys: TenantReadKeys | None = None,
    ) -> None:
        """`inline_shape_bytes`: -1 shapes every answer on a worker thread (bench_query's lever off). `limits`:
        the receivers' connection limits (handshake and idle timeouts, header size), at most
        QUERY_MAX_CONNECTIONS connections whatever they say: SQL clients keep a few each, and the port must not
        take the file descriptors the receivers, the spool and the store need."""
        from tracehouse.collector.receivers.limits import ConnectionLimits

        limits = limits or ConnectionLimits()
        cap = min(QUERY_MAX_CONNECTIONS, limits.connection_cap())
        self._limits = dataclasses.replace(limits, max_connections=cap)
        self.connections: ConnectionPool | None = None
        self._server: asyncio.Server | None = None
        self._sql = sql
        self._inline_shape_bytes = inline_shape_bytes
        self._host = host
        self.port = port
        # A new key each start (collector.json) does everything; the operator's fixed `query_read_key`
        # (a provisioned Grafana's password) only reads: it cannot reach the administration routes.
        self.key = secrets.token_urlsafe(24)
        self._read_key = read_key
        # `[query_read_keys]`: read keys that see one tenant's rows (tenant_reads.py).
        self._tenant_keys = tenant_keys
        self._runner: web.AppRunner | None = None
        # Local administration (POST /forget): the same key, handlers that return a response.
        # Administration routes: handler(request, body), the body read and decoded here (as a query's is).
        self.admin_routes: dict[str, Callable[[web.Request, bytes], Any]] = {}

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application(
            client_max_size=_ADMIN_BODY_BYTES, middlewares=[tracking_middleware(lambda: self.connections)]
        )
        app.router.add_route("*", "/", self._query)
        app.router.add_get("/ping", self._ping)
        for path, handler in self.admin_routes.items():
            app.router.add_post(path, self._admin(handler))
        # handler_cancellation: a client that hangs up cancels its handler, which stops its query.
        limits = self._limits
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            auto_decompress=False,  # _read_body decodes, and refuses a compressed body cut short
            keepalive_timeout=limits.idle_timeout_seconds,
            max_field_size=limits.max_header_bytes,
            # after an answer to a body that stalled, aiohttp reads on up to this long before closing
            lingering_time=2.0,
            logger=AiohttpLog(_limited, "query endpoint", "query"),
        )
        await self._runner.setup()
        # Counted from accept, the idle ones closed first at the cap, the first request's headers due within
        # the handshake timeout: as on the OTLP/HTTP port (receivers/connections.py).
        self.connections = ConnectionPool(
            self._runner.server, limits.max_connections, limits.handshake_timeout_seconds, _limited, "query endpoint"
        )
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self.connections, self._host, self.port, backlog=min(limits.backlog, 128)
            )
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    async def stop(self) -> None:
        """Stop running reads first (they need no draining), then the server, then the clients."""
        self._sql._closing = True
        await asyncio.to_thread(self._sql.cancel_all)
        if self._server is not None:
            self._server.close()
        if self._runner:
            await self._runner.cleanup()
        if self.connections is not None:
            self.connections.close_all()
        await asyncio.to_thread(self._sql.close)

    async def _ping(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text="Ok.\n")

    def _admin(self, handler: Callable[[web.Request, bytes], Any]) -> Callable[[web.Request], Any]:
        async def authorized(request: web.Request) -> web.StreamResponse:
            try:
                self._authorize(request, administration=True)
                body, more = await _read_body(request, self._limits.idle_timeout_seconds, _ADMIN_BODY_BYTES)
                if more:
                    raise _HttpRefusal(413, 307, f"the body is larger than {_ADMIN_BODY_BYTES >> 20} MiB")
            except _HttpRefusal as refusal:
                return _ch_error(refusal.status, refusal.code, str(refusal))
            return await handler(request, body)

        return authorized

    def _authorize(self, request: web.Request, administration: bool = False) -> str | None:
        """The tenant whose rows the request reads (None: every row), or _HttpRefusal."""
        supplied = request.headers.get("X-ClickHouse-Key") or request.query.get("password") or ""
        authorization = request.headers.get("Authorization", "")
        if not supplied and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise _HttpRefusal(
                    400, 516, "malformed Authorization header: Basic needs base64 of user:key (AUTHENTICATION_FAILED)"
                ) from None
            supplied = decoded.partition(":")[2]
        given = supplied.encode("utf-8", "surrogateescape")
        if secrets.compare_digest(given, self.key.encode()):
            return None
        if self._read_key and secrets.compare_digest(given, self._read_key.encode()):
            if administration:
                raise _HttpRefusal(
                    403, 497, "the read key (query_read_key) only reads: use collector.json's key (ACCESS_DENIED)"
                )
            return None
        tenant = self._tenant_keys.tenant(given) if self._tenant_keys is not None else None
        if tenant is not None:
            if administration:
                raise _HttpRefusal(
                    403,
                    497,
                    "a tenant's read key (query_read_keys) only reads: use collector.json's key (ACCESS_DENIED)",
                )
            return tenant
        raise _HttpRefusal(403, 516, "Authentication failed: pass the key from collector.json (AUTHENTICATION_FAILED)")

    def _parameters(self, request: web.Request) -> _RequestOptions:
        """What a request asks for; every parameter is allow-listed, or the request refused."""
        for name in request.query:
            if name in _PARAMETERS or name in _TRANSPORT_PARAMETERS or name in _NARROWING_SETTINGS:
                continue
            if name.startswith("param_"):
                if not _PARAMETER_NAME.fullmatch(name[len("param_") :]):
                    raise _HttpRefusal(400, 456, f"query parameter {name!r}: not a parameter name")
                continue
            raise _HttpRefusal(
                400, 115, f"parameter {name!r} is not accepted: reads run with fixed settings (UNKNOWN_SETTING)"
            )
        database = request.query.get("database") or request.headers.get("X-ClickHouse-Database")
        served = self._sql._catalogue.database if self._sql._catalogue else "default"
        if database and database != served:  # never passed on: reads run in the store's database
            raise _HttpRefusal(400, 81, f"database {database!r}: this endpoint serves {served!r} only")
        fmt = request.query.get("default_format") or request.headers.get("X-ClickHouse-Format") or "TabSeparated"
        return _RequestOptions.of(request, fmt, self._sql.limits)

    async def _query(self, request: web.Request) -> web.Response:
        from aiohttp import web

        started = time.monotonic_ns()
        try:
            tenant = self._authorize(request)
            options = self._parameters(request)
            sql, not_sql = await self._read_sql(request)
        except _HttpRefusal as exc:
            response = _ch_error(exc.status, exc.code, str(exc))
            if exc.status == 408:
                response.force_close()  # the rest of a stalled body is not worth waiting for
            return response
        if not_sql is not None:
            return await self._refuse_data(sql, not_sql)
        values = {name[len("param_") :]: value for name, value in request.query.items() if name.startswith("param_")}
        try:  # a long query's binding is a loop over its text: not on the loop the receivers share
            sql = await asyncio.to_thread(bind_parameters, sql, values) if "{" in sql else sql
        except QueryRefused as exc:
            return _ch_error(400, exc.code, str(exc))
        tag = uuid.uuid4().hex
        query_id = options.query_id or str(uuid.UUID(tag))
        task = asyncio.ensure_future(
            asyncio.to_thread(self._sql.run, sql, options.fmt, tag, row_limit=options.row_limit, tenant=tenant)
        )
        try:
            result = await asyncio.wait_for(asyncio.shield(task), options.timeout)
            if len(result.body) <= self._inline_shape_bytes:  # microseconds of work: no second thread hop
                response = _shape_response(result, options, request.headers)
            else:
                response = await asyncio.to_thread(_shape_response, result, options, request.headers)
        except asyncio.CancelledError:
            log.info("read query cancelled: the client went away")
            await asyncio.to_thread(self._sql.cancel, tag)
            raise
        except TimeoutError:
            await asyncio.to_thread(self._sql.cancel, tag)
            with contextlib.suppress(Exception):  # the killed query's own error
                await task
            return _ch_error(
                400, 159, f"Timeout exceeded: maximum: {options.timeout:g} seconds (TIMEOUT_EXCEEDED)", query_id
            )
        except QueryRefused as exc:
            return _ch_error(503 if exc.code == 202 else 400, exc.code, str(exc), query_id)
        summary = {"written_rows": "0", "written_bytes": "0", "result_bytes": str(response.result_bytes)}
        if response.rows is not None:
            summary["result_rows"] = str(response.rows)
        summary["elapsed_ns"] = str(time.monotonic_ns() - started)
        headers = {
            "X-ClickHouse-Format": result.format,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
            "Content-Type": _CONTENT_TYPES.get(result.format, "text/plain; charset=UTF-8"),
        }
        if response.encoding:
            headers["Content-Encoding"] = response.encoding
        return web.Response(body=response.body, headers=headers)

    async def _read_sql(self, request: web.Request) -> tuple[str, _HttpRefusal | None]:
        """The SQL of a request: the `query` parameter, then the body, as ClickHouse joins them.

        A body that is not all SQL (not UTF-8, or over MAX_QUERY_BYTES: an INSERT's rows, the way
        ClickHouse clients send them) comes back as the SQL before it, with the refusal it gets unless
        that SQL is a write (`_refuse_data`). The rest of such a body is never read."""
        idle = self._limits.idle_timeout_seconds
        raw, more = await _read_body(request, idle) if request.method == "POST" else (b"", False)
        not_sql = None
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            body = raw[: exc.start].decode("utf-8")
            not_sql = _HttpRefusal(400, 62, f"the query is not valid UTF-8 (byte {exc.start}) (SYNTAX_ERROR)")
        if more:  # (a character cut in two at the limit is not valid UTF-8 either)
            not_sql = _HttpRefusal(413, 307, f"the query is larger than {MAX_QUERY_BYTES >> 20} MiB")
        sql = request.query.get("query", "")
        if body:
            sql = f"{sql} {body}" if sql else body
        if not sql.strip() and not_sql is None:
            raise _HttpRefusal(400, 62, "Empty query (SYNTAX_ERROR)")
        return sql, not_sql

    async def _refuse_data(self, sql: str, refusal: _HttpRefusal) -> web.Response:
        """Answer a request whose body is data, not SQL: a write (an INSERT with its rows) gets the
        read-only refusal that the same statement sent as text gets; anything else `refusal`."""
        if sql.strip():
            try:
                await asyncio.to_thread(self._sql.check, sql)
            except QueryRefused as exc:
                if exc.code == 164:
                    return _ch_error(400, exc.code, str(exc))
        return _ch_error(refusal.status, refusal.code, str(refusal))


_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# One way to match each placeholder (the type's spaces are stripped after): a lazy type between optional
# spaces backtracked cubically on `{a:` and a run of spaces, and the binding runs on the event loop.
_PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:([^{}]*)\}")
_QUOTES = "'\"`"
_SPECIAL = re.compile(r"['\"`{#]|--|/\*")


def bind_parameters(sql: str, values: Mapping[str, str]) -> str:
    """ClickHouse's server-side parameters (`{name:Type}` with `param_name` in the URL, as clickhouse-go,
    clickhouse-connect and the JS client send them), bound before the guard reads the query: each placeholder
    outside string literals, quoted names and comments becomes `CAST('<value>', '<Type>')`, the value parsed
    as the type's text (as ClickHouse parses a parameter), an `Identifier` a quoted name. Raises QueryRefused
    (456, ClickHouse's code) for a placeholder without its value."""
    if "{" not in sql:
        return sql
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in _QUOTES:
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == char:
                    if j + 1 < n and sql[j + 1] == char:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
            continue
        if sql.startswith("--", i) or char == "#":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
            continue
        match = _PLACEHOLDER.match(sql, i) if char == "{" else None
        kind = match.group(2).strip() if match is not None else ""
        if not kind:  # ordinary text up to the next quote, comment or brace, in one piece
            found = _SPECIAL.search(sql, i + 1)
            j = n if found is None else found.start()
            out.append(sql[i:j])
            i = j
            continue
        name = match.group(1)
        if name not in values:
            raise QueryRefused(f"Substitution `{name}` is not set: pass param_{name} (UNKNOWN_QUERY_PARAMETER)", 456)
        value = values[name]
        if kind == "Identifier":  # `db.table` names a table of a database, as ClickHouse reads it
            parts = value.split(".") if all(value.split(".")) else [value]
            out.append(".".join("`" + p.replace("\\", "\\\\").replace("`", "\\`") + "`" for p in parts))
        elif value == "\\N" and kind.startswith("Nullable("):
            out.append(f"CAST(NULL, {string_literal(kind)})")
        else:
            # A value is text in ClickHouse's Escaped format: a string's escapes are undone here, a composite
            # value (an array of strings) keeps them for CAST's own parsing of its quoted elements.
            text = _unescape(value) if _STRING_TYPE.fullmatch(kind) else value
            out.append(f"CAST({string_literal(text)}, {string_literal(kind)})")
        i = match.end()
    return "".join(out)


_STRING_TYPE = re.compile(r"(?:Nullable\(|LowCardinality\()*(?:String|FixedString\(\d+\))\)*")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "a": "\a", "v": "\v"}
_ESCAPED = re.compile(r"\\(.)", re.S)


def _unescape(text: str) -> str:
    """A value in ClickHouse's Escaped (TabSeparated) text format: `\\t`, `\\n`, `\\'`, `\\\\`, ..."""
    return _ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), text) if "\\" in text else text


def string_literal(text: str) -> str:
    """A ClickHouse string literal (backslash escapes), for values a user typed into a command."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The SQL one request may carry. A body beyond it is data (an INSERT's rows): its first bytes are read
# to find the statement, the rest never.
MAX_QUERY_BYTES = 1 << 20
# Content-Encodings of request bodies, all decoded here: aiohttp's own decoding is off on this port (it ran a
# gzip body cut short as the prefix it decoded to). Each decoder expands no more than the body's limit wants
# and, at the body's end, checks that its stream ended there too.
_BODY_ENCODINGS = frozenset({"", "identity", "gzip", "deflate", "br", "zstd", "lz4"})


async def _read_body(request: web.Request, idle_seconds: float, limit: int = MAX_QUERY_BYTES) -> tuple[bytes, bool]:
    """Up to `limit` bytes of a request's body, decoded, and whether there was more; a body that stops
    arriving for `idle_seconds` is refused (a half-sent body must not hold its connection forever)."""
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _BODY_ENCODINGS:
        raise _HttpRefusal(
            415, 89, f"Content-Encoding {encoding!r} is not supported: gzip, deflate, br, zstd, lz4 or none"
        )
    decoder = _body_decoder(encoding)
    ceiling = limit + 1
    chunks: list[bytes] = []
    size = 0
    try:
        while size < ceiling:
            try:
                async with asyncio.timeout(idle_seconds):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise _HttpRefusal(
                    408, 209, f"no part of the request body arrived for {idle_seconds:g} seconds"
                ) from None
            if not chunk:
                if decoder is not None:
                    decoder.finish()
                break
            if decoder is not None:
                chunk = decoder.decompress(chunk, ceiling - size)
            chunks.append(chunk)
            size += len(chunk)
    except (RequestPayloadError, HttpProcessingError) as exc:
        log.info("query endpoint: a request body that ended early (%s)", type(exc).__name__)
        raise _HttpRefusal(400, 62, "incomplete request body") from None
    except (ConnectionError, OSError) as exc:
        log.info("query endpoint: client went away while sending its query (%s)", type(exc).__name__)
        raise _HttpRefusal(400, 62, "incomplete request body") from None
    body = b"".join(chunks)
    return body[:limit], size > limit


class _BodyDecoder(Protocol):
    def decompress(self, data: bytes, at_most: int) -> bytes:
        """What `data` decodes to, at most `at_most` bytes (the rest stays buffered, never expanded)."""
        ...

    def finish(self) -> None:
        """At the end of the body: a stream cut short is an error, not the query's first part."""
        ...


def _body_decoder(encoding: str) -> _BodyDecoder | None:
    if encoding in ("", "identity"):
        return None
    if encoding == "lz4":
        return _Lz4Frames()
    if encoding in ("gzip", "deflate"):
        return _ZlibMembers(encoding)
    if encoding == "zstd":
        return _ZstdFrames()
    return _BrotliStream()


def _not_encoded(encoding: str) -> _HttpRefusal:
    return _HttpRefusal(400, 271, f"the body is not {encoding} data as its Content-Encoding says")


def _cut_short(encoding: str) -> _HttpRefusal:
    return _HttpRefusal(400, 271, f"the {encoding} body ends inside its stream: it was cut short")


class _ZlibMembers:
    """gzip (concatenated members, as gzip(1) reads them) or deflate (the zlib format HTTP names so, or raw
    deflate, which some clients send under that name and aiohttp took), one stream, nothing after it."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._stream: Any = None  # the current member's zlib.decompressobj
        self._ended = False  # deflate: the stream ended, nothing may follow
        self._tail = b""  # input not decoded yet (past a limit, or a zlib header's first byte)

    def _new(self, head: bytes) -> Any:
        import zlib

        if self._encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        wrapped = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0  # RFC 1950's header check
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def decompress(self, data: bytes, at_most: int) -> bytes:
        import zlib

        data, self._tail = self._tail + data, b""
        out = bytearray()
        try:
            while data and len(out) < at_most:
                if self._ended:
                    raise zlib.error("bytes after the end of the deflate stream")
                if self._stream is None:
                    if len(data) < 2 and self._encoding == "deflate":
                        break
                    self._stream = self._new(data)
                out += self._stream.decompress(data, at_most - len(out))
                data = self._stream.unconsumed_tail
                if self._stream.eof:  # gzip: the next member starts in what is left
                    data = self._stream.unused_data + data
                    self._stream, self._ended = None, self._encoding == "deflate"
        except zlib.error:
            raise _not_encoded(self._encoding) from None
        self._tail = data
        return bytes(out)

    def finish(self) -> None:
        if self._stream is not None or self._tail:
            raise _cut_short(self._encoding)


# zstd input is decoded this many bytes at a time: the library's decompressobj has no output limit, and a
# zstd block (128 KiB at most) takes 4 bytes or more, so one step expands to a few MiB at most.
_ZSTD_STEP = 128


class _ZstdFrames:
    """Concatenated zstd frames (as zstd(1) reads them), each checked to end whole."""

    def __init__(self) -> None:
        try:
            import zstandard
        except ImportError:  # clickhouse-connect depends on it, so the collector extra has it
            raise _HttpRefusal(415, 89, "Content-Encoding zstd is not available here") from None
        self._error = zstandard.ZstdError
        self._context = zstandard.ZstdDecompressor()
        self._frame: Any = None
        self._tail = b""

    def decompress(self, data: bytes, at_most: int) -> bytes:
        data, self._tail = self._tail + data, b""
        out = bytearray()
        try:
            while data and len(out) < at_most:
                if self._frame is None:
                    self._frame = self._context.decompressobj()
                step, data = data[:_ZSTD_STEP], data[_ZSTD_STEP:]
                out += self._frame.decompress(step)
                if self._frame.eof:  # the next frame starts in what is left
                    data, self._frame = self._frame.unused_data + data, None
        except self._error:
            raise _not_encoded("zstd") from None
        self._tail = data
        return bytes(out[:at_most])

    def finish(self) -> None:
        if self._frame is not None or self._tail:
            raise _cut_short("zstd")


class _BrotliStream:
    """One brotli stream, with the Brotli package's output limit (1.2 and later); refused without it."""

    def __init__(self) -> None:
        try:
            import brotli
        except ImportError:
            brotli = None
        decompressor = getattr(brotli, "Decompressor", None)
        if decompressor is None or not hasattr(decompressor, "can_accept_more_data"):
            raise _HttpRefusal(415, 89, "Content-Encoding br is not available here: use gzip, zstd or lz4")
        self._error = brotli.error
        self._stream = decompressor()
        self._started = False

    def decompress(self, data: bytes, at_most: int) -> bytes:
        self._started = True
        try:
            if self._stream.is_finished():
                raise self._error("bytes after the end of the brotli stream")
            return self._stream.process(data, max_output_length=at_most)
        except self._error:
            raise _not_encoded("br") from None

    def finish(self) -> None:
        if self._started and not self._stream.is_finished():
            raise _cut_short("br")


class _Lz4Frames:
    """Incremental decoding of concatenated LZ4 frames (one per block, as clickhouse-connect sends them)."""

    def __init__(self) -> None:
        try:
            import lz4.frame
        except ImportError:  # clickhouse-connect depends on it, so the collector extra has it
            raise _HttpRefusal(415, 89, "Content-Encoding lz4 is not available here") from None
        self._new = lz4.frame.LZ4FrameDecompressor
        self._frame = self._new()
        self._in_frame = False  # bytes of the current frame were read and its end was not

    def decompress(self, data: bytes, at_most: int) -> bytes:
        """What `data` decodes to, at most `at_most` bytes (the rest stays buffered, never expanded)."""
        out = bytearray()
        try:
            while len(out) < at_most:
                self._in_frame = self._in_frame or bool(data)
                out += self._frame.decompress(data, max_length=at_most - len(out))
                data = b""
                if self._frame.eof:  # the next frame starts in what is left
                    data, self._frame, self._in_frame = self._frame.unused_data, self._new(), False
                    if not data:
                        break
                elif self._frame.needs_input:
                    break
        except RuntimeError:
            raise _HttpRefusal(400, 271, "the body is not lz4 data as its Content-Encoding says") from None
        return bytes(out)

    def finish(self) -> None:
        """At the end of the body: a frame cut short is an error, not the query's first part."""
        if self._in_frame:
            raise _HttpRefusal(400, 271, "the lz4 body ends inside a frame: it was cut short")


# ClickHouse's names of the error codes the endpoint answers with itself.
_ERROR_NAMES = {
    48: "NOT_IMPLEMENTED",
    62: "SYNTAX_ERROR",
    72: "CANNOT_PARSE_NUMBER",
    73: "UNKNOWN_FORMAT",
    81: "UNKNOWN_DATABASE",
    89: "UNKNOWN_COMPRESSION_METHOD",
    115: "UNKNOWN_SETTING",
    159: "TIMEOUT_EXCEEDED",
    164: "READONLY",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    271: "CANNOT_DECOMPRESS",
    307: "TOO_MANY_BYTES",
    394: "QUERY_WAS_CANCELLED",
    396: "TOO_MANY_ROWS_OR_BYTES",
    456: "UNKNOWN_QUERY_PARAMETER",
    516: "AUTHENTICATION_FAILED",
}
_ERROR_NAME = re.compile(r"\((?=[A-Z0-9_]*[A-Z]{3})[A-Z0-9_]+\)")


_MAX_ERROR_CHARS = 4096


def _ch_error(status: int, code: int, message: str, query_id: str | None = None) -> web.Response:
    from aiohttp import web

    text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
    if len(text) > _MAX_ERROR_CHARS:  # ClickHouse quotes the query in some errors: not a megabyte of it
        text = text[: _MAX_ERROR_CHARS // 2] + " ... " + text[-_MAX_ERROR_CHARS // 2 :]
    name = _ERROR_NAMES.get(code)
    if name and not _ERROR_NAME.search(text):  # ClickHouse's messages end with it; clients parse it
        text += f" ({name})"
    headers = {"X-ClickHouse-Exception-Code": str(code)}
    if query_id:
        headers["X-ClickHouse-Query-Id"] = query_id
    return web.Response(status=status, text=text + "\n", headers=headers)
