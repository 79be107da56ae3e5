"""The read-only SQL surface cannot read, write or reach anything outside the store, nor run unbounded.

One test per class of attack, each a table of strings, through the running collector's endpoint (and,
for the CLI, `tracehouse sql` with and without it). Every refusal names the problem, nothing is read
or written, and the endpoint still answers normally afterwards.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from collector_process import CollectorProcess, tracehouse_sql

SECRET = "tracehouse-guard-secret-7f3a"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One collector for the module, with a 2 s read limit, and a file with a secret next to it."""
    root = tmp_path_factory.mktemp("guard")
    (root / "secret.txt").write_text(SECRET)
    proc = CollectorProcess(root / "data", env={"TRACEHOUSE_QUERY_MAX_EXECUTION_SECONDS": "2"}).start()
    yield proc, root
    proc.kill()


def _request(
    collector: CollectorProcess,
    body: bytes | str | None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    keyed: bool = True,
) -> tuple[int, str]:
    url = urllib.parse.urlsplit(collector.info["query_url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    all_headers = {"X-ClickHouse-Key": collector.info["query_key"]} if keyed else {}
    all_headers.update(headers or {})
    path = "/" + ("?" + urllib.parse.urlencode(params) if params else "")
    conn.request("POST", path, body=body.encode() if isinstance(body, str) else body, headers=all_headers)
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    conn.close()
    return response.status, text


def _ok(collector: CollectorProcess, sql: str = "SELECT count() FROM otel_traces") -> str:
    status, text = _request(collector, sql)
    assert status == 200, text
    return text


def _refused(collector: CollectorProcess, cases: list[tuple[str, str]], root: Path) -> None:
    for sql, phrase in cases:
        status, text = _request(collector, sql)
        assert status == 400, (sql, status, text)
        assert text.startswith("Code: "), (sql, text)
        assert phrase.lower() in text.lower(), (sql, text)
        assert SECRET not in text and "root:" not in text, sql
    assert not list(root.glob("out*")), "a refused query wrote a file"
    assert _ok(collector) == "0\n"  # and the endpoint, and its session, still work
    log = collector.log()
    assert "Traceback" not in log, log


def test_format_is_allow_listed_never_appended(served):
    collector, root = served
    injected = f"TSV; SELECT file('{root / 'secret.txt'}')"
    for fmt in (injected, "TSV FORMAT JSON", "Template", "Protobuf", "TSV\nSELECT 1"):
        status, text = _request(collector, "SELECT 1", params={"default_format": fmt})
        assert status == 400 and "output format" in text and SECRET not in text, (fmt, text)
        status, text = _request(collector, "SELECT 1", headers={"X-ClickHouse-Format": fmt.replace("\n", " ")})
        assert status == 400 and SECRET not in text, (fmt, text)
    for sql in ("SELECT 1 FORMAT Template", "SELECT 1 FORMAT CapnProto", "SELECT * FROM format(Template, 'x')"):
        status, text = _request(collector, sql)
        assert status == 400 and "format" in text.lower(), (sql, text)
    status, text = _request(collector, "SELECT 1 AS x", params={"default_format": "jsoneachrow"})
    assert (status, text) == (200, '{"x":1}\n')
    result = tracehouse_sql(collector.data_dir, "SELECT 1", injected, check=False)
    assert result.returncode == 1 and b"output format" in result.stderr and SECRET.encode() not in result.stdout


def test_into_outfile_refused_on_every_statement(served):
    collector, root = served
    out = root / "out.txt"
    cases = [
        f"SELECT 1 INTO OUTFILE '{out}'",
        f"SELECT 1 INTO OUTFILE '{out}' APPEND AND STDOUT FORMAT TSV",
        f"SHOW TABLES INTO OUTFILE '{out}'",
        f"SHOW TABLES FROM system LIKE 'o%' INTO OUTFILE '{out}' FORMAT TSV",
        f"EXPLAIN SYNTAX SELECT 'chosen content' INTO OUTFILE '{out}'",
        f"EXPLAIN PIPELINE SELECT 1 INTO OUTFILE '{out}'",
        f"DESCRIBE TABLE otel_traces INTO OUTFILE '{out}'",
        f"EXISTS TABLE otel_traces INTO OUTFILE '{out}'",
        f"SHOW CREATE TABLE otel_traces INTO OUTFILE '{out}'",
        f"SELECT * FROM (SELECT 1 INTO OUTFILE '{out}')",
    ]
    _refused(collector, [(sql, "OUTFILE") for sql in cases[:-1]] + [(cases[-1], "Syntax error")], root)


def test_nothing_reaches_outside_the_store(served):
    collector, root = served
    secret = root / "secret.txt"
    cases = [
        (f"SELECT file('{secret}')", "file()"),
        ("SELECT file('/proc/self/environ')", "file()"),
        (f"SELECT * FROM file('{secret}', 'LineAsString')", "file()"),
        (f"DESCRIBE TABLE file('{secret}')", "file()"),
        (f"EXPLAIN PIPELINE SELECT * FROM file('{secret}')", "file()"),
        (f"EXPLAIN ESTIMATE SELECT * FROM file('{secret}')", "file()"),
        (f"SELECT 1 WHERE 'x' IN (SELECT * FROM file('{secret}', 'LineAsString'))", "file()"),
        (f"WITH (SELECT line FROM file('{secret}', 'LineAsString')) AS s SELECT s", "file()"),
        ("SELECT * FROM url('http://127.0.0.1:9/x', CSV)", "url()"),
        ("SELECT 1 IN url('http://127.0.0.1:9/x', CSV)", "url()"),
        ("SELECT * FROM s3Cluster('c', 'http://127.0.0.1:9/b/k.csv')", "s3cluster()"),
        ("SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)", "remotesecure()"),
        ("SELECT * FROM azureBlobStorage('http://127.0.0.1:9', 'c', 'b')", "azureblobstorage()"),
        ("SELECT * FROM jdbc('jdbc:x', 't')", "jdbc()"),
        ("SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', CSV)", "hdfs()"),
        (f"SELECT * FROM sqlite('{secret}', 't')", "sqlite()"),
        ("SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')", "mysql()"),
        ("SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')", "postgresql()"),
        ("SELECT * FROM executable('cat /etc/passwd', TSV, 'x String')", "executable()"),
        ("SELECT * FROM python('x')", "python()"),
        ("SELECT * FROM input('x String')", "input()"),
        ("SELECT * FROM filesystem('/')", "filesystem()"),
        ("SELECT * FROM loop(numbers(1))", "loop()"),
        ("SELECT * FROM dictionary('d')", "dictionary()"),
        ("SELECT dictGet('d', 'a', toUInt64(1))", "dictget()"),
        ("SELECT dictHas('d', toUInt64(1))", "dicthas()"),
        ("SELECT getServerSetting('path')", "getserversetting()"),
        ("SELECT * FROM cluster('default', system.one)", "cluster()"),
    ]
    _refused(collector, cases, root)


def test_system_tables_outside_the_allow_list_are_unreachable(served):
    collector, root = served
    blocked = [
        "SELECT query FROM system.processes",
        "SELECT p.query FROM system.processes AS p",
        "SELECT * FROM (SELECT * FROM system.processes)",
        "WITH q AS (SELECT * FROM system.processes) SELECT * FROM q",
        "SELECT 1 WHERE 'x' IN system.processes",
        "SELECT * FROM system.one AS a JOIN system.disks AS b ON 1",
        "SELECT * FROM view(SELECT * FROM system.server_settings)",
        "SELECT * FROM `system`.`build_options`",
        "SELECT * FROM system.query_log",
        "DESCRIBE system.processes",
        "SHOW CREATE TABLE system.disks",
        "EXISTS TABLE system.disks",
        "EXPLAIN SELECT * FROM system.users",
    ]
    cases = [(sql, "is not readable here") for sql in blocked] + [
        ("SELECT * FROM merge('system', '^proc')", "merge()"),
        ("SELECT * FROM clusterAllReplicas('default', system.processes)", "clusterallreplicas()"),
        ("SHOW PROCESSLIST", "read-only"),
        ("SHOW DICTIONARIES", "not allowed"),
        ("SHOW CREATE DICTIONARY d", "read-only"),
        ("SHOW GRANTS", "read-only"),
        ("SELECT 1 AS `x\n Function numbers`", "cannot be checked"),
    ]
    _refused(collector, cases, root)
    # What a schema browser or client needs stays readable.
    assert "otel_traces" in _ok(collector, "SELECT name FROM system.tables WHERE database = currentDatabase()")
    assert "otel_traces" in _ok(collector, "SELECT table_name FROM information_schema.tables")
    assert _ok(collector, "SELECT value FROM system.settings WHERE name = 'readonly'") == "1\n"
    assert "otel_traces" in _ok(collector, "SHOW TABLES")
    assert "Timestamp" in _ok(collector, "DESCRIBE otel_traces")


def test_statements_that_change_state_are_refused_and_leave_the_session_alone(served):
    collector, root = served
    cases = [
        ("USE system", "read-only"),
        ("KILL QUERY WHERE 1", "read-only"),
        ("SET readonly = 0", "read-only"),
        ("SYSTEM SHUTDOWN", "read-only"),
        ("CREATE FUNCTION f AS x -> x", "read-only"),
        ("INSERT INTO otel_traces (SpanName) VALUES ('x')", "read-only"),
        ("SELECT 1; USE system", "Multi-statements"),
        ("SELECT 1 SETTINGS max_execution_time = 0", "readonly"),
        ("SELECT 1 SETTINGS readonly = 0", "readonly"),
        ("EXPLAIN PIPELINE max_execution_time = 0 SELECT 1", "Unknown setting"),
    ]
    _refused(collector, cases, root)
    assert _ok(collector, "SELECT currentDatabase()") == "default\n"


# One read of every table function the guard allows, with its exact answer (TSV, one row).
TABLE_FUNCTION_READS = {
    "numbers": ("SELECT sum(number) FROM numbers(5)", "10\n"),
    "numbers_mt": ("SELECT sum(number) FROM numbers_mt(5)", "10\n"),
    "generaterandom": ("SELECT count() FROM (SELECT * FROM generateRandom('a UInt8, b String', 1) LIMIT 3)", "3\n"),
    "generateseries": ("SELECT groupArray(generate_series) FROM generateSeries(1, 3)", "[1,2,3]\n"),
    "generate_series": ("SELECT groupArray(generate_series) FROM generate_series(2, 4)", "[2,3,4]\n"),
    "values": ("SELECT groupArray(b) FROM values('a UInt8, b String', (1, 'x'), (2, 'y'))", "['x','y']\n"),
    "view": ("SELECT count() FROM view(SELECT * FROM otel_traces)", "0\n"),
    "null": ("SELECT count() FROM null('a UInt8')", "0\n"),
    "primes": ("SELECT groupArray(prime) FROM primes(4)", "[2,3,5,7]\n"),
}


def test_every_allowed_table_function_runs_read_only(served):
    """Each table function the guard lets through also runs with readonly=1: the README's list holds."""
    from tracehouse.collector.query import READONLY_REFUSED_TABLE_FUNCTIONS, SAFE_TABLE_FUNCTIONS

    collector, root = served
    assert set(TABLE_FUNCTION_READS) == SAFE_TABLE_FUNCTIONS
    for name, (sql, expected) in TABLE_FUNCTION_READS.items():
        status, text = _request(collector, sql)
        assert (status, text) == (200, expected), (name, text)
    # The compute-only ones ClickHouse refuses with readonly=1 are refused by the guard, with what to use.
    refused = [
        ("SELECT count() FROM zeros(3)", "system.zeros"),
        ("SELECT count() FROM zeros_mt(3)", "system.zeros_mt"),
        ("SELECT * FROM format(CSV, 'a UInt8', '1')", "values("),
    ]
    assert {sql.split("FROM ")[1].split("(")[0] for sql, _ in refused} == set(READONLY_REFUSED_TABLE_FUNCTIONS)
    _refused(collector, [(sql, f"readonly=1; use {instead}") for sql, instead in refused], root)
    assert _ok(collector, "SELECT count() FROM (SELECT * FROM system.zeros LIMIT 3)") == "3\n"


def test_a_clickhouse_client_writing_gets_the_read_only_refusal(served):
    """INSERTs as clickhouse-connect sends them: the statement in the body, or in the URL with the rows
    (binary, compressed, streamed, larger than a query may be) in the body. Each gets READONLY (164)."""
    import io

    import clickhouse_connect
    from clickhouse_connect.datatypes.registry import get_from_name
    from clickhouse_connect.driver.exceptions import DatabaseError

    collector, _root = served
    url = urllib.parse.urlsplit(collector.info["query_url"])
    strings, integers = get_from_name("String"), get_from_name("UInt64")
    for compress in (False, "lz4", "zstd", "gzip"):
        client = clickhouse_connect.get_client(
            host=url.hostname, port=url.port, password=collector.info["query_key"], compress=compress
        )
        writes = {
            "command": lambda c=client: c.command("INSERT INTO otel_traces (SpanName) VALUES ('x')"),
            "insert": lambda c=client: c.insert("otel_traces", [["x"]], ["SpanName"], column_types=[strings]),
            "insert of zeros": lambda c=client: c.insert("otel_traces", [[0]], ["Duration"], column_types=[integers]),
            "insert of 4 MB": lambda c=client: c.insert(
                "otel_traces",
                [["x" * 32, i] for i in range(100_000)],
                ["SpanName", "Duration"],
                column_types=[strings, integers],
            ),
            "raw_insert": lambda c=client: c.raw_insert("otel_traces", ["SpanName"], b"x\n", fmt="TabSeparated"),
            "raw_insert streamed": lambda c=client: c.raw_insert(
                "otel_traces", ["SpanName"], (b"x\n" for _ in range(3)), fmt="TabSeparated"
            ),
            "raw_insert of 4 MB, not UTF-8": lambda c=client: c.raw_insert(
                "otel_traces", ["SpanName"], io.BytesIO(b"\xff\n" * 2_000_000), fmt="TabSeparated"
            ),
            "command with data": lambda c=client: c.command("INSERT INTO otel_traces FORMAT TSV", data=b"\xff\n"),
            "DROP": lambda c=client: c.command("DROP TABLE otel_traces"),
        }
        for what, write in writes.items():
            with pytest.raises(DatabaseError) as refusal:
                write()
            assert "code: 164" in str(refusal.value) and "read-only" in str(refusal.value), (compress, what)
        assert client.query("SELECT count() FROM otel_traces").result_rows == [(0,)]
        client.close()
    # The same shapes by hand: the statement in the URL, data that is not SQL in the body.
    for body, headers in [(b"\x00\xff\x01", {}), (b"x" * (2 << 20), {"Content-Type": "application/octet-stream"})]:
        status, text = _request(
            collector, body, params={"query": "INSERT INTO otel_traces (SpanName) FORMAT RowBinary"}, headers=headers
        )
        assert status == 400 and text.startswith("Code: 164.") and "read-only" in text, text
    # A read whose body is not all SQL keeps its own error.
    assert _request(collector, b"SELECT 1 \xff")[1].startswith("Code: 62.")
    status, text = _request(collector, b"SELECT 1 -- " + b"x" * (2 << 20))
    assert status == 413 and text.startswith("Code: 307."), text
    status, text = _request(collector, b"SELECT 1", headers={"Content-Encoding": "lz4"})
    assert status == 400 and text.startswith("Code: 271."), text
    assert "Traceback" not in collector.log()


def test_endpoint_parameters_are_allow_listed(served):
    collector, _root = served
    for params, phrase in [
        ({"readonly": "0"}, "not accepted"),
        ({"max_memory_usage": "0"}, "not accepted"),
        ({"database": "system"}, "serves 'default' only"),
    ]:
        status, text = _request(collector, "SELECT 1", params=params)
        assert status == 400 and phrase in text, (params, text)
    # The limits a client may narrow: 0 ("no limit") is held to the endpoint's own, never lifted.
    for params in ({"max_execution_time": "0"}, {"max_result_rows": "0"}):
        assert _request(collector, "SELECT 1", params=params) == (200, "1\n"), params
    status, text = _request(collector, "SELECT number FROM numbers(2000000)", params={"max_result_rows": "0"})
    assert status == 400 and "396" in text, text  # the endpoint's 1,000,000 rows hold
    # Query parameters are bound, then the guard reads the bound query: a table name given as a parameter
    # is refused like the same name written in the SQL.
    status, text = _request(collector, "SELECT * FROM {t:Identifier}", params={"param_t": "system.processes"})
    assert status == 400 and "system.processes" in text, text
    status, text = _request(collector, "SELECT 1", headers={"X-ClickHouse-Database": "system"})
    assert status == 400 and "only" in text
    # Transport options of ClickHouse clients are ignored; `query` is prepended to the body, as ClickHouse does.
    status, text = _request(collector, "+ 1", params={"session_id": "s", "query": "SELECT 41", "database": "default"})
    assert (status, text) == (200, "42\n")


def test_endpoint_bad_requests_get_clickhouse_errors_not_500s(served):
    collector, _root = served
    cases = [
        ({"Authorization": "Basic %%%"}, b"SELECT 1", 400),
        ({"Authorization": "Basic " + base64.b64encode("default:pässwörd".encode()).decode()}, b"SELECT 1", 403),
        ({"Authorization": "Basic " + base64.b64encode(b"default:\xff\xfe").decode()}, b"SELECT 1", 400),
        ({}, b"SELECT '\xff\xfe'", 400),
    ]
    for headers, body, expected in cases:
        status, text = _request(collector, body, headers=headers, keyed=not headers)
        assert status == expected and text.startswith("Code: "), (headers, body, status, text)
    basic = base64.b64encode(f"default:{collector.info['query_key']}".encode()).decode()
    status, text = _request(collector, "SELECT 1", headers={"Authorization": "Basic " + basic}, keyed=False)
    assert (status, text) == (200, "1\n")
    # A client that goes away in the middle of its body: at most one log line, the endpoint unharmed.
    before = len(collector.log().splitlines())
    url = urllib.parse.urlsplit(collector.info["query_url"])
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {collector.info['query_key']}\r\n"
            "Content-Length: 1000\r\n\r\nSELECT".encode()
        )
    assert _ok(collector, "SELECT 2") == "2\n"
    new_lines = collector.log().splitlines()[before:]
    assert len(new_lines) <= 1 and "Traceback" not in "\n".join(new_lines), new_lines


def test_a_syntax_error_names_the_users_text_not_the_guards_wrapper(served):
    """The guard has ClickHouse print the text back first, so a syntax error came out as "In scope SELECT
    formatQuerySingleLine('SELEC ...')": a query the user never wrote. The message names the position in the
    user's own text and the error, nothing else."""
    collector, _root = served
    status, text = _request(collector, "SELEC count() FROM otel_traces")
    assert status == 400, text
    first_line = text.splitlines()[0]
    assert first_line.startswith("Code: 62.") and "Syntax error: failed at position 12" in first_line, text
    assert first_line.endswith("(SYNTAX_ERROR)"), text
    assert "formatQuerySingleLine" not in text and "In scope" not in text, text


def test_reads_are_bounded_and_cannot_lift_their_limits(served):
    collector, _root = served
    status, text = _request(collector, "SELECT count() FROM numbers(1e13)")
    assert status == 400 and "TIMEOUT_EXCEEDED" in text, text
    status, text = _request(collector, "SELECT count() FROM numbers(1e13) SETTINGS max_execution_time = 0")
    assert status == 400 and "readonly" in text.lower(), text
    status, text = _request(collector, "SELECT number FROM numbers(1e8)")
    assert status == 400 and "TOO_MANY_ROWS_OR_BYTES" in text, text
    status, text = _request(collector, "SELECT groupArray(number) FROM numbers(1e10)")
    assert status == 400 and ("MEMORY_LIMIT_EXCEEDED" in text or "TIMEOUT_EXCEEDED" in text), text
    limits = _ok(collector, "SELECT getSetting('max_execution_time'), getSetting('max_result_rows')")
    assert limits == "2\t1000000\n"
    assert _ok(collector, "SELECT 1") == "1\n"  # the connection that timed out was replaced


def test_a_runaway_read_does_not_block_others_and_stops_when_its_client_leaves(served):
    collector, _root = served
    url = urllib.parse.urlsplit(collector.info["query_url"])
    runaway = socket.create_connection((url.hostname, url.port))
    sql = b"SELECT count() FROM numbers(1e13)"
    runaway.sendall(
        f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {collector.info['query_key']}\r\n"
        f"Content-Length: {len(sql)}\r\n\r\n".encode()
        + sql
    )
    time.sleep(0.3)  # let it start
    assert _ok(collector, "SELECT 7") == "7\n"  # another reader is not queued behind it
    runaway.close()
    deadline = time.monotonic() + 10
    while "read query cancelled: the client went away" not in collector.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "read query cancelled: the client went away" in collector.log()
    assert _ok(collector, "SELECT 8") == "8\n"


def test_shutdown_cancels_running_reads(tmp_path):
    collector = CollectorProcess(tmp_path / "data").start()  # default limit: 30 s
    try:
        answer: list[tuple[int, str]] = []
        runaway = "SELECT count() FROM numbers(1e14)"
        reader = threading.Thread(target=lambda: answer.append(_request(collector, runaway)))
        reader.start()
        time.sleep(0.5)
        assert collector.stop(timeout=20) == 0
        reader.join(20)
        assert answer and "cancelled" in answer[0][1].lower(), answer
    finally:
        collector.kill()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """An embedded store with the schema and no collector running."""
    data_dir = tmp_path_factory.mktemp("direct") / "data"
    command = [sys.executable, "-m", "tracehouse.collector", "migrate", "--data-dir", str(data_dir)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return data_dir


def test_direct_path_guard_and_empty_table(store_dir, tmp_path):
    out = tmp_path / "out.txt"
    for sql, fmt, phrase in [
        (f"SHOW TABLES INTO OUTFILE '{out}'", "tsv", b"OUTFILE"),
        ("SELECT * FROM system.processes", "tsv", b"not readable"),
        ("SELECT 1", "TSV; SELECT file('/etc/hostname')", b"output format"),
        ("USE system", "tsv", b"read-only"),
    ]:
        result = tracehouse_sql(store_dir, sql, fmt, check=False)
        assert result.returncode == 1 and phrase in result.stderr, (sql, result.stderr)
    assert not out.exists()
    empty = tracehouse_sql(store_dir, "SELECT SpanName FROM otel_traces", "table")
    assert empty.stdout == b"" and empty.stderr.strip() == b"0 rows"


def test_allowed_table_functions_on_the_direct_path(store_dir):
    """The same reads as through the endpoint, in one query, with `tracehouse sql` opening the store."""
    union = " UNION ALL ".join(
        f"SELECT '{name}' AS f, toString(({sql})) AS got" for name, (sql, _) in sorted(TABLE_FUNCTION_READS.items())
    )
    rows = tracehouse_sql(store_dir, f"SELECT f, got FROM ({union}) ORDER BY f", "TSVRaw").stdout.decode().splitlines()
    expected = {name: expected.rstrip("\n") for name, (_, expected) in TABLE_FUNCTION_READS.items()}
    assert dict(row.split("\t") for row in rows) == expected


def test_ctrl_c_stops_a_direct_query(store_dir):
    command = [sys.executable, "-m", "tracehouse.collector", "sql", "--data-dir", str(store_dir)]
    proc = subprocess.Popen(
        [*command, "SELECT count() FROM numbers(1e14)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TRACEHOUSE_QUERY_MAX_EXECUTION_SECONDS": "600"},
    )
    time.sleep(3)  # imports, store open, query under way
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines() == ["tracehouse: cancelled"]
    # The store lock was released: the next command opens the store.
    assert tracehouse_sql(store_dir, "SELECT 1", "tsv").stdout == b"1\n"
