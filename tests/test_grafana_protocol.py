"""The collector's read endpoint as the Grafana ClickHouse data source (grafana-clickhouse-datasource, HTTP
protocol) reaches it through its driver, clickhouse-go v2, so a stock Grafana shows the dashboards on the
embedded store: requests shaped as the driver builds them (conn_http.go, conn_http_query.go: POST / with
`default_format=Native&client_protocol_version=54460`, the SQL as the body, Basic auth, Accept-Encoding), their
Native answers read by a reader written here after the driver's own (lib/proto/block.go, lib/column), not by the
code under test; ClickHouse's compressed blocks (`compress=1`) checked against checksums ClickHouse itself
wrote; and the real clients available here, clickhouse-connect and the official JS client."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import clickhouse_connect
import lz4.block
import pytest

from tracehouse.collector.clickhouse_compressed import cityhash128

pytestmark = pytest.mark.timeout(180)

# clickhouse-go's ClientTCPProtocolVersion (lib/proto/const.go DBMS_TCP_PROTOCOL_VERSION): the driver sends it
# as client_protocol_version on every request and decodes the hello query's answer with it; later answers with
# the revision that query returned.
DRIVER_REVISION = 54460
REVISION_WITH_CUSTOM_SERIALIZATION = 54454
HELLO = "SELECT displayName(), version(), revision(), timezone()"
USER_AGENT = "grafana-datasource/4.8.2 clickhouse-go/2.40.3 (lv:go/1.24.4; os:linux)"
JS_CLIENT = Path(__file__).parent / "clickhouse_js"


# --- a Native reader after clickhouse-go's ------------------------------------------------------------


class Wire:
    """ch-go's proto.Reader over a bytes body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EOFError(f"wanted {n} bytes at {self.pos}, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def int(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little", signed=True)

    def str(self) -> str:
        return self.take(self.uvarint()).decode()

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


def parse_type(text: str) -> tuple[str, list[str]]:
    """`Map(String, UInt8)` -> ("Map", ["String", "UInt8"]) (lib/column/column_gen.go's Type parsing)."""
    if "(" not in text:
        return text, []
    name, inner = text[: text.index("(")], text[text.index("(") + 1 : -1]
    args, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(inner):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return name, args


_INTS = {"UInt8": (1, False), "UInt16": (2, False), "UInt32": (4, False), "UInt64": (8, False)}
_INTS |= {"Int8": (1, True), "Int16": (2, True), "Int32": (4, True), "Int64": (8, True), "Int128": (16, True)}


def read_column(wire: Wire, kind: str, rows: int) -> list:
    """`rows` values of a column (lib/column/<type>.go Decode)."""
    import struct

    name, args = parse_type(kind)
    if name in _INTS:
        size, signed = _INTS[name]
        return [wire.int(size) if signed else wire.uint(size) for _ in range(rows)]
    if name in ("Float32", "Float64"):
        fmt, size = ("<f", 4) if name == "Float32" else ("<d", 8)
        return [struct.unpack(fmt, wire.take(size))[0] for _ in range(rows)]
    if name == "Bool":
        return [wire.take(1) == b"\x01" for _ in range(rows)]
    if name == "String":
        return [wire.str() for _ in range(rows)]
    if name == "FixedString":
        return [wire.take(int(args[0])) for _ in range(rows)]
    if name in ("Date",):
        return [wire.uint(2) for _ in range(rows)]
    if name in ("DateTime", "Date32"):
        return [wire.uint(4) if name == "DateTime" else wire.int(4) for _ in range(rows)]
    if name == "DateTime64":
        return [wire.int(8) for _ in range(rows)]
    if name == "Decimal":
        precision = int(args[0])
        size = 4 if precision <= 9 else 8 if precision <= 18 else 16
        return [wire.int(size) for _ in range(rows)]
    if name == "UUID":
        return [str(uuid.UUID(bytes=wire.take(8)[::-1] + wire.take(8)[::-1])) for _ in range(rows)]
    if name == "Enum8":
        labels = {int(v.split("=")[1]): v.split("=")[0].strip().strip("'") for v in args}
        return [labels[wire.int(1)] for _ in range(rows)]
    if name == "Nothing":
        wire.take(rows)
        return [None] * rows
    if name == "SimpleAggregateFunction":
        return read_column(wire, args[1], rows)
    if name == "Nullable":
        nulls = wire.take(rows)
        values = read_column(wire, args[0], rows)
        return [None if null else value for null, value in zip(nulls, values, strict=True)]
    if name in ("Array", "Map"):
        offsets = [wire.uint(8) for _ in range(rows)]
        total = offsets[-1] if offsets else 0
        if name == "Array":
            flat = read_column(wire, args[0], total)
        else:
            keys, values = read_column(wire, args[0], total), read_column(wire, args[1], total)
            flat = list(zip(keys, values, strict=True))
        out, start = [], 0
        for end in offsets:
            out.append(flat[start:end] if name == "Array" else dict(flat[start:end]))
            start = end
        return out
    if name == "Tuple":
        elements = [a.split(" ", 1)[1] if " " in a and a.split(" ", 1)[0].islower() else a for a in args]
        columns = [read_column(wire, element, rows) for element in elements]
        return [tuple(values) for values in zip(*columns, strict=True)] if columns else [()] * rows
    if name == "LowCardinality":
        return _read_low_cardinality(wire, args[0], rows)
    raise AssertionError(f"this reader does not know {kind}")


def _read_low_cardinality(wire: Wire, kind: str, rows: int) -> list:
    """lib/column/lowcardinality.go: the key version (state prefix), then ONE granule: flags (index width in
    the low byte, HasAdditionalKeys required, no global dictionary), the dictionary, the indexes."""
    assert wire.uint(8) == 1, "key version: sharedDictionariesWithAdditionalKeys"
    flags = wire.uint(8)
    assert flags & 0xFF in (0, 1, 2, 3) and not flags & (1 << 8) and flags & (1 << 9), hex(flags)
    inner, inner_args = parse_type(kind)
    nullable = inner == "Nullable"
    dictionary = read_column(wire, inner_args[0] if nullable else kind, wire.int(8))
    indexes = [wire.uint(1 << (flags & 0xFF)) for _ in range(wire.int(8))]
    assert len(indexes) == rows, "one granule holds the whole block"
    return [None if nullable and i == 0 else dictionary[i] for i in indexes]


@dataclass
class Block:
    names: list[str]
    types: list[str]
    columns: list[list] = field(default_factory=list)
    rows: int = 0


def read_native(body: bytes, revision: int) -> list[Block]:
    """lib/proto/block.go Decode, block after block until the body ends."""
    wire, blocks = Wire(body), []
    while not wire.done:
        if revision > 0:  # decodeBlockInfo: field 1, is_overflows, field 2, bucket_num, 0
            assert (wire.uvarint(), wire.take(1), wire.uvarint(), wire.int(4), wire.uvarint()) == (
                1,
                b"\x00",
                2,
                -1,
                0,
            )
        count, rows = wire.uvarint(), wire.uvarint()
        block = Block([], [], rows=rows)
        for _ in range(count):
            block.names.append(wire.str())
            block.types.append(wire.str())
            if revision >= REVISION_WITH_CUSTOM_SERIALIZATION:
                assert wire.take(1) == b"\x00", "custom serialization: not supported by clickhouse-go"
            block.columns.append(read_column(wire, block.types[-1], rows) if rows else [])
        blocks.append(block)
    return blocks


def rows_of(blocks: list[Block]) -> list[tuple]:
    return [row for block in blocks for row in zip(*block.columns, strict=True)]


def read_compressed(body: bytes) -> bytes:
    """ch-go's compress.Reader: checksum, method, sizes, payload; the checksum must match."""
    out, pos = bytearray(), 0
    while pos < len(body):
        checksum, header = body[pos : pos + 16], body[pos + 16 : pos + 25]
        method, size, raw = header[0], int.from_bytes(header[1:5], "little"), int.from_bytes(header[5:9], "little")
        framed = body[pos + 16 : pos + 16 + size]
        low, high = cityhash128(framed)
        assert low.to_bytes(8, "little") + high.to_bytes(8, "little") == checksum
        assert method == 0x82, hex(method)  # LZ4
        out += lz4.block.decompress(framed[9:], uncompressed_size=raw)
        pos += 16 + size
    return bytes(out)


# --- requests as the plugin's driver sends them -----------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def plugin_request(
    collector, sql: str, settings: dict | None = None, headers: dict | None = None, query_id: str = ""
) -> Answer:
    """dialHttp + createRequest: Options.Settings, then default_format and client_protocol_version in the URL
    (url.Values.Encode sorts them), query_id when set; user info in the URL, which Go's client sends as Basic
    auth; Accept-Encoding for the plugin's HTTP compression (gzip); the SQL as the body."""
    url = urllib.parse.urlsplit(collector.info["query_url"])
    params = {**(settings or {}), "default_format": "Native", "client_protocol_version": str(DRIVER_REVISION)}
    if query_id:
        params["query_id"] = query_id
    credentials = base64.b64encode(f"default:{collector.info['query_key']}".encode()).decode()
    request = urllib.request.Request(
        f"http://{url.hostname}:{url.port}/?" + urllib.parse.urlencode(sorted(params.items())),
        data=sql.encode(),
        method="POST",
        headers={
            "Authorization": f"Basic {credentials}",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


def server_revision(collector) -> int:
    """queryHello: the answer is read with the driver's own revision; its revision() is used from then on."""
    answer = plugin_request(collector, HELLO)
    assert answer.status == 200, answer.text
    ((name, version, revision, timezone),) = rows_of(read_native(answer.body, DRIVER_REVISION))
    assert name and version.count(".") >= 2 and timezone
    return revision


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from collector_process import CollectorProcess

    collector = CollectorProcess(
        tmp_path_factory.mktemp("grafana") / "data",
        "--query-max-result-rows",
        "100000",
        "--query-max-execution-seconds",
        "5",
    )
    collector.start()
    yield collector
    collector.kill()


# --- the checksum, against ClickHouse's own -----------------------------------------------------------------


def test_cityhash128_matches_the_checksums_clickhouse_writes(tmp_path):
    """A MergeTree part's .bin files are ClickHouse's compressed blocks, checksums written by chDB itself: an
    uncompressed column gives every length from a few bytes up (each of CityHash's length branches), LZ4
    columns long blocks."""
    script = textwrap.dedent(
        f"""
        import clickhouse_connect
        c = clickhouse_connect.get_client(dsn="chdb://{tmp_path / "store"}")
        c.command("CREATE TABLE raw (x UInt8 CODEC(NONE)) ENGINE = MergeTree ORDER BY tuple()"
                  " SETTINGS min_bytes_for_wide_part = 0")
        for rows in range(1, 200):
            c.command(f"INSERT INTO raw SELECT number FROM numbers({{rows}})")
        c.command("CREATE TABLE packed (a UInt64, s String) ENGINE = MergeTree ORDER BY a"
                  " SETTINGS min_bytes_for_wide_part = 0")
        c.command("INSERT INTO packed SELECT number, repeat(toString(number), number % 9) FROM numbers(100000)")
        c.close()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    lengths, blocks = set(), 0
    for path in (tmp_path / "store").glob("store/*/*/*/*.bin"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            size = int.from_bytes(data[pos + 17 : pos + 21], "little")
            low, high = cityhash128(data[pos + 16 : pos + 16 + size])
            assert low.to_bytes(8, "little") + high.to_bytes(8, "little") == data[pos : pos + 16], (path, pos)
            lengths.add(size)
            blocks += 1
            pos += 16 + size
    assert blocks >= 30 and min(lengths) < 16 and any(16 < n < 128 for n in lengths) and max(lengths) > 10_000
    # The short inputs ClickHouse never frames (under 9 bytes) follow the same code; these pin them.
    assert cityhash128(b"") != cityhash128(b"\x00") != cityhash128(b"\x00" * 8)


# --- the plugin's own requests ------------------------------------------------------------------------------


def test_health_check_and_ping_read_as_the_driver_reads_them(served):
    answer = plugin_request(served, HELLO, query_id="grafana-health-1")
    assert answer.status == 200, answer.text
    assert answer.headers["X-ClickHouse-Format"] == "Native"
    assert answer.headers["X-ClickHouse-Query-Id"] == "grafana-health-1"
    assert json.loads(answer.headers["X-ClickHouse-Summary"])["result_rows"] == "1"
    assert "Content-Encoding" not in answer.headers  # as ClickHouse: gzip only with enable_http_compression=1
    (block,) = read_native(answer.body, DRIVER_REVISION)
    assert block.types == ["String", "String", "UInt32", "String"]
    revision = block.columns[2][0]
    assert revision >= DRIVER_REVISION
    # ping: SELECT 1, one column named "1" (conn_http.go ping)
    answer = plugin_request(served, "SELECT 1")
    (block,) = read_native(answer.body, revision)
    assert (block.names, block.columns) == (["1"], [[1]])
    # A client without client_protocol_version (clickhouse-connect, the JS client) gets revision-0 Native.
    plain = _post(served, "SELECT 1", {"default_format": "Native"})
    assert rows_of(read_native(plain.body, 0)) == [(1,)]
    assert plain.body != answer.body


TYPES_QUERY = """
SELECT
    number AS n,
    toInt32(number) - 5 AS i,
    number / 4 AS f,
    toString(number) AS s,
    toLowCardinality(concat('feature-', toString(number % 3))) AS lc,
    toLowCardinality(if(number % 2 = 0, NULL, toNullable(toString(number)))) AS lcn,
    if(number % 3 = 0, NULL, number) AS maybe,
    range(number % 4) AS arr,
    map('k', number, 'j', number + 1) AS m,
    tuple(number, toString(number)) AS t,
    CAST((number, 'x'), 'Tuple(a UInt64, b String)') AS named,
    toDateTime(1700000000 + number, 'UTC') AS ts,
    toDateTime64(1700000000.5 + number, 3, 'UTC') AS ts64,
    toDate('2025-01-01') + number AS d,
    toDecimal64(number, 4) AS dec,
    number % 2 = 1 AS flag,
    CAST(if(number % 2 = 0, 'a', 'b'), 'Enum8(\\'a\\' = 1, \\'b\\' = 2)') AS e,
    toUUID('6ba7b810-9dad-11d1-80b4-00c04fd430c8') AS u,
    toFixedString('ab', 3) AS fs,
    NULL AS nothing,
    [[number], []] AS nested,
    [map('a', [toNullable(number), NULL])] AS deep
FROM numbers({rows})
ORDER BY n
"""


def test_every_type_the_dashboards_use_reads_as_the_driver_reads_it(served):
    revision = server_revision(served)
    answer = plugin_request(served, TYPES_QUERY.format(rows=1000))
    assert answer.status == 200, answer.text
    blocks = read_native(answer.body, revision)
    assert json.loads(answer.headers["X-ClickHouse-Summary"])["result_rows"] == "1000"
    got = rows_of(blocks)
    # The same values as revision-0 Native (what chDB writes), read by the same reader.
    plain = _post(served, TYPES_QUERY.format(rows=1000), {"default_format": "Native"})
    assert got == rows_of(read_native(plain.body, 0))
    assert blocks[0].names[:5] == ["n", "i", "f", "s", "lc"]
    assert got[5] == (
        5,
        0,
        1.25,
        "5",
        "feature-2",
        "5",
        5,
        [0],
        {"k": 5, "j": 6},
        (5, "5"),
        (5, "x"),
        1700000005,
        1700000005500,
        20094,
        50000,
        True,
        "b",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        b"ab\x00",
        None,
        [[5], []],
        [{"a": [5, None]}],
    )
    assert got[6][5] is None and got[6][6] is None  # NULL through LowCardinality(Nullable) and Nullable
    # An answer of several blocks (max_block_size 65409), each framed.
    sql = "SELECT number, toString(number) AS s, toLowCardinality(toString(number % 7)) AS lc FROM numbers(90000)"
    blocks = read_native(plugin_request(served, sql).body, revision)
    assert len(blocks) > 1 and rows_of(blocks) == [(n, str(n), str(n % 7)) for n in range(90000)]


def test_compressed_blocks_and_http_compression(served):
    revision = server_revision(served)
    sql = TYPES_QUERY.format(rows=3000)
    plain = plugin_request(served, sql)
    # compress=1 (clickhouse-go with LZ4 or ZSTD): ClickHouse's compressed blocks around the Native body.
    compressed = plugin_request(served, sql, {"compress": "1"})
    assert compressed.status == 200 and compressed.body != plain.body
    assert read_compressed(compressed.body) == plain.body
    assert rows_of(read_native(read_compressed(compressed.body), revision))[2999][0] == 2999
    # enable_http_compression=1: Content-Encoding from Accept-Encoding, around either.
    zipped = plugin_request(served, sql, {"enable_http_compression": "1", "compress": "1"})
    assert zipped.headers.get("Content-Encoding") == "gzip"
    assert read_compressed(gzip.decompress(zipped.body)) == plain.body
    deflated = plugin_request(served, sql, {"enable_http_compression": "1"}, {"Accept-Encoding": "deflate, br"})
    assert deflated.headers.get("Content-Encoding") == "deflate"
    import zlib

    assert zlib.decompress(deflated.body) == plain.body


def test_schema_browser_and_variable_queries(served):
    """What the plugin's query builder, variable editor and SQL editor send (src/data/CHDatasource.ts,
    CHVariableSupport.tsx)."""
    revision = server_revision(served)

    def rows(sql: str) -> list[tuple]:
        answer = plugin_request(served, sql)
        assert answer.status == 200, (sql, answer.text)
        return rows_of(read_native(answer.body, revision))

    assert ("default",) in rows("SHOW DATABASES")
    tables = {row[0] for row in rows('SHOW TABLES FROM "default"')}
    assert {"otel_traces", "llm_calls", "llm_daily"} <= tables
    described = {row[0]: row[1] for row in rows('DESC TABLE "default"."llm_calls"')}
    assert described["service"].startswith("LowCardinality") and described["ts"].startswith("DateTime64")
    assert ("default",) in rows("SELECT name FROM system.databases ORDER BY name")
    assert ("llm_calls",) in rows("SELECT name FROM system.tables WHERE database = 'default' ORDER BY name")
    columns = rows("SELECT name, type, table FROM system.columns WHERE database IN ('default') AND table = 'llm_calls'")
    assert ("service", described["service"], "llm_calls") in columns
    functions = rows(
        "SELECT name, is_aggregate, case_insensitive, alias_to, origin, description, syntax, arguments,"
        " returned_value, examples, categories FROM system.functions LIMIT 10000"
    )
    assert any(row[0] == "count" and row[1] for row in functions)


def test_settings_narrow_the_limits_and_never_widen_them(served):
    revision = server_revision(served)
    # The plugin's row limit: `limit` in the URL caps a query's rows, under its own LIMIT too.
    answer = plugin_request(served, "SELECT number FROM numbers(100) ORDER BY number DESC", {"limit": "3"})
    assert rows_of(read_native(answer.body, revision)) == [(99,), (98,), (97,)]
    answer = plugin_request(served, "SELECT number FROM numbers(10) LIMIT 2", {"limit": "5"})
    assert rows_of(read_native(answer.body, revision)) == [(0,), (1,)]
    # max_result_rows under the endpoint's 100000: more rows is ClickHouse's error.
    answer = plugin_request(served, "SELECT number FROM numbers(10)", {"max_result_rows": "5"})
    assert answer.status == 400 and answer.headers["X-ClickHouse-Exception-Code"] == "396", answer.text
    answer = plugin_request(served, "SELECT number FROM numbers(10)", {"max_result_rows": "10"})
    assert answer.status == 200 and len(rows_of(read_native(answer.body, revision))) == 10
    # Above the endpoint's limits, or 0 (no limit): held to the endpoint's, never lifted (the plugin sends its
    # query timeout, 60 s by default, as max_execution_time with every query: a refusal would fail them all).
    for settings in ({"max_result_rows": "100001"}, {"max_result_rows": "0"}, {"max_execution_time": "3600"}):
        answer = plugin_request(served, "SELECT 1", settings)
        assert answer.status == 200 and rows_of(read_native(answer.body, revision)) == [(1,)], (settings, answer.text)
    for settings in ({"limit": "1000000"}, {"max_result_rows": "0"}, {"max_result_rows": "1000000"}):
        answer = plugin_request(served, "SELECT number FROM numbers(150000)", settings)
        assert answer.headers["X-ClickHouse-Exception-Code"] == "396", answer.text  # the endpoint's 100000 holds
    started = time.monotonic()
    answer = plugin_request(
        served, "SELECT sum(cityHash64(number)) FROM numbers(100000000000)", {"max_execution_time": "3600"}
    )
    assert answer.headers["X-ClickHouse-Exception-Code"] == "159", answer.text  # the endpoint's 5 s hold
    assert time.monotonic() - started < 30
    # A shorter max_execution_time stops the query (and the endpoint goes on answering).
    started = time.monotonic()
    answer = plugin_request(
        served, "SELECT sum(cityHash64(number)) FROM numbers(100000000000)", {"max_execution_time": "1"}
    )
    assert answer.status == 400 and answer.headers["X-ClickHouse-Exception-Code"] == "159", answer.text
    assert time.monotonic() - started < 10
    assert rows_of(read_native(plugin_request(served, "SELECT 2").body, revision)) == [(2,)]
    for settings in ({"limit": "x"}, {"max_execution_time": "-1"}, {"max_memory_usage": "1"}):
        answer = plugin_request(served, "SELECT 1", settings)
        assert answer.status == 400, (settings, answer.text)


def test_writes_get_the_readonly_refusal(served):
    """clickhouse-go's batch insert over HTTP: DESCRIBE TABLE, then `query=INSERT ... FORMAT Native` in the
    URL and the Native block as the body (gzip for the plugin), which may well be valid UTF-8."""
    block = b"\x01\x01\x07service\x06String\x01x"
    for body, headers in ((block, {}), (gzip.compress(block), {"Content-Encoding": "gzip"})):
        answer = _post(
            served,
            body,
            {"query": "INSERT INTO llm_calls (service) FORMAT Native", "default_format": "Native"},
            headers,
        )
        assert answer.status == 400 and answer.headers["X-ClickHouse-Exception-Code"] == "164", answer.text
        assert answer.text.startswith("Code: 164.") and "(READONLY)" in answer.text
    answer = plugin_request(served, "CREATE TABLE x (a UInt8) ENGINE = Memory")
    assert answer.headers["X-ClickHouse-Exception-Code"] == "164" and "(READONLY)" in answer.text


@pytest.mark.timeout(600)  # load() waits out midnight UTC (up to ~6.5 min) so that today's calls stay today's
def test_every_shipped_dashboard_panel_reads_in_native(tmp_path_factory):
    """Every SQL panel of every dashboard, expanded as the plugin expands it, through the plugin's request:
    the Native answer reads as the driver reads it and holds what the JSON answer holds."""
    sys.path.insert(0, str(Path(__file__).parent))
    import test_dashboards as dashboards
    from test_dashboards_data import load

    collector, data = load(tmp_path_factory.mktemp("grafana-dashboards") / "data")
    try:
        revision = server_revision(collector)
        ctx = dashboards.context(data)
        seen = 0
        for uid, title, _ref, _target in dashboards.SQL_TARGETS:
            dashboard = dashboards.BY_UID[uid]
            (panel,) = [p for p in dashboards.all_panels(dashboard) if p["title"] == title]
            sql = dashboards.gm.expand(panel["targets"][0]["rawSql"], dashboards.variables(dashboard, data, ctx), ctx)
            answer = plugin_request(collector, sql)
            assert answer.status == 200, (uid, title, answer.text)
            blocks = read_native(answer.body, revision)
            columns, json_rows = data.store.query(sql)
            if not blocks:  # chDB writes nothing for no rows; the driver reads an empty body as an empty block
                assert not json_rows, title
                continue
            assert [(n, t) for n, t in zip(blocks[0].names, blocks[0].types, strict=True)] == columns, title
            assert len(rows_of(blocks)) == len(json_rows), title
            seen += 1
        assert seen > len(dashboards.SQL_TARGETS) // 2
    finally:
        collector.kill()


# --- real clients -------------------------------------------------------------------------------------------


def _post(collector, body: str | bytes, params: dict, headers: dict | None = None) -> Answer:
    request = urllib.request.Request(
        collector.info["query_url"] + "?" + urllib.parse.urlencode(params),
        data=body.encode() if isinstance(body, str) else body,
        method="POST",
        headers={"X-ClickHouse-Key": collector.info["query_key"], **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read())


@pytest.mark.parametrize("compress", [False, True, "zstd", "gzip"])
def test_clickhouse_connect_with_compression_and_settings(served, compress):
    url = urllib.parse.urlsplit(served.info["query_url"])
    client = clickhouse_connect.get_client(
        host=url.hostname, port=url.port, username="default", password=served.info["query_key"], compress=compress
    )
    try:
        result = client.query(
            "SELECT number AS n, toString(number) AS s, [number] AS a FROM numbers(5000) WHERE n >= {low:UInt32}",
            parameters={"low": 10},
            settings={"limit": 4},  # the one setting system.settings shows changeable under readonly=1
        )
        assert result.result_rows == [(n, str(n), [n]) for n in range(10, 14)]
        assert result.summary.get("result_rows") == "4"
        # and every statement's, as ClickHouse's `limit` caps a SELECT's: SHOW, DESCRIBE, EXPLAIN in Native
        for sql in ("SHOW TABLES", "DESCRIBE TABLE otel_traces", "EXPLAIN PIPELINE SELECT 1 + number FROM numbers(9)"):
            whole = client.query(sql)
            cut = client.query(sql, settings={"limit": 2})
            assert len(whole.result_rows) > 2 and cut.result_rows == whole.result_rows[:2], sql
            assert cut.column_names == whole.column_names and cut.column_types == whole.column_types, sql
        assert client.query("SELECT count() FROM numbers(60000)").result_rows == [(60000,)]
    finally:
        client.close()


def test_the_official_js_client(served):
    if shutil.which("node") is None:
        pytest.skip("no node on PATH")
    if not (JS_CLIENT / "node_modules" / "@clickhouse" / "client").is_dir():
        pytest.skip("tests/clickhouse_js is not installed: make test runs npm ci for it")
    env = {
        **os.environ,
        "TRACEHOUSE_QUERY_URL": served.info["query_url"],
        "TRACEHOUSE_QUERY_KEY": served.info["query_key"],
    }
    done = subprocess.run(
        ["node", str(JS_CLIENT / "check.mjs")], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(done.stdout)
    expected = [{"name": "it's {x:String}", "n": n} for n in (40, 41, 42)]
    assert out["ping"] == {"ok": True, "value": True}
    assert out["rows"] == {"ok": True, "value": expected}
    assert out["compressed"]["ok"] and out["compressed"]["value"]["rows"] == expected
    for step in ("insert", "command"):
        assert out[step]["ok"] is False and (out[step]["code"], out[step]["type"]) == ("164", "READONLY"), out[step]
