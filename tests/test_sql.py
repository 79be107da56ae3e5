"""`tracehouse sql` with and without a running collector, across restarts, and its read-only guard."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows, tracehouse_sql, wait_drained
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def _send(collector: CollectorProcess, n: int, service: str = "restart-svc") -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)))
    tracer = provider.get_tracer("t")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i % 3}"):
            pass
    provider.shutdown()


def _count(data_dir) -> int:
    return int(sql_rows(data_dir, "SELECT count() AS n FROM otel_traces")[0]["n"])


def test_spans_survive_restart_and_sql_works_with_and_without_collector(tmp_path):
    data_dir = tmp_path / "data"
    first = CollectorProcess(data_dir).start()
    try:
        _send(first, 250)
        assert _count(data_dir) == 250  # through the running collector's query endpoint
        assert first.stop() == 0
        assert not (data_dir / "collector.json").exists()
        assert _count(data_dir) == 250  # no collector: the CLI opens the embedded store itself

        second = CollectorProcess(data_dir).start()
        assert _count(data_dir) == 250
        _send(second, 50)
        assert _count(data_dir) == 300
        by_name = sql_rows(
            data_dir, "SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName ORDER BY SpanName"
        )
        # 250 spans then 50, each named op-(i % 3): 84+17, 83+17, 83+16
        assert [(r["SpanName"], int(r["n"])) for r in by_name] == [("op-0", 101), ("op-1", 100), ("op-2", 99)]
        assert second.stop() == 0
    finally:
        first.kill()


def test_sql_output_formats(collector):
    _send(collector, 3, service="fmt-svc")
    query = "SELECT ServiceName, count() AS n FROM otel_traces GROUP BY ServiceName"
    table = tracehouse_sql(collector.data_dir, query, "table").stdout.decode()
    assert "ServiceName" in table and "fmt-svc" in table and "┌" in table
    # csv and tsv are ClickHouse's CSV and TSV, without a header row, as in a FORMAT clause; the
    # ...WithNames formats add one.
    assert tracehouse_sql(collector.data_dir, query, "csv").stdout.decode().splitlines() == ['"fmt-svc",3']
    assert tracehouse_sql(collector.data_dir, query, "tsv").stdout.decode().splitlines() == ["fmt-svc\t3"]
    assert tracehouse_sql(collector.data_dir, query, "CSVWithNames").stdout.decode().splitlines() == [
        '"ServiceName","n"',
        '"fmt-svc",3',
    ]
    assert tracehouse_sql(collector.data_dir, query, "TSVWithNames").stdout.decode().splitlines() == [
        "ServiceName\tn",
        "fmt-svc\t3",
    ]
    for clause, fmt in [("CSV", "table"), ("TSV", "csv"), ("csv", "tsv")]:
        own = tracehouse_sql(collector.data_dir, f"{query} FORMAT {clause}", fmt).stdout.decode().splitlines()
        assert own == (['"fmt-svc",3'] if clause.lower() == "csv" else ["fmt-svc\t3"]), clause
    doc = json.loads(tracehouse_sql(collector.data_dir, query, "json").stdout)
    assert doc["data"] == [{"ServiceName": "fmt-svc", "n": 3}]
    own_format = tracehouse_sql(collector.data_dir, query + " FORMAT JSONEachRow", "table").stdout
    assert json.loads(own_format) == {"ServiceName": "fmt-svc", "n": 3}


REFUSED = [
    ("SELECT * FROM file('/etc/passwd')", "file"),
    ("SELECT file('/etc/passwd')", "file"),
    ("DESCRIBE TABLE file('/etc/passwd')", "file"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', CSV)", "url"),
    ("SELECT * FROM executable('cat /etc/passwd', TSV, 'x String')", "executable"),
    ("SELECT * FROM remote('127.0.0.1:9000', system.one)", "remote"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/k.csv')", "s3"),
    ("INSERT INTO otel_traces (SpanName) VALUES ('x')", "read-only"),
    ("DROP TABLE otel_traces", "read-only"),
    ("SELECT 1; DROP TABLE otel_traces", "Multi-statements"),
    ("SYSTEM SHUTDOWN", "read-only"),
    ("SELECT 1 SETTINGS readonly = 0", "readonly"),
]


def _assert_refusals(data_dir, tmp_path) -> None:
    outfile = tmp_path / "leak.txt"
    for query, phrase in [*REFUSED, (f"SELECT 1 INTO OUTFILE '{outfile}'", "OUTFILE")]:
        result = tracehouse_sql(data_dir, query, check=False)
        assert result.returncode != 0, query
        assert phrase.lower() in result.stderr.decode().lower(), (query, result.stderr)
        assert b"root:" not in result.stdout
    assert not outfile.exists()
    assert _count(data_dir) == 2  # the table and its rows are intact


def test_read_only_guard_through_the_running_collector(collector, tmp_path):
    _send(collector, 2)
    _assert_refusals(collector.data_dir, tmp_path)


def test_read_only_guard_without_collector(collector, tmp_path):
    _send(collector, 2)
    collector.stop()
    _assert_refusals(collector.data_dir, tmp_path)


def test_query_endpoint_requires_the_key(collector):
    url = collector.info["query_url"]
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=b"SELECT 1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403
    keyed = urllib.request.Request(
        url, data=b"SELECT 41 + 1", headers={"X-ClickHouse-Key": collector.info["query_key"]}
    )
    with urllib.request.urlopen(keyed, timeout=10) as response:
        assert response.read() == b"42\n"


def test_sql_without_a_store_says_so(tmp_path):
    result = tracehouse_sql(tmp_path / "nowhere", "SELECT 1", check=False)
    assert result.returncode == 1
    assert b"no store" in result.stderr


def test_the_ready_banner_suggests_a_sql_command_that_works(tmp_path):
    """After `make run` the venv's bin is not on PATH: the banner's command must run from a plain shell,
    and be the plain `tracehouse` when PATH finds this installation's."""
    venv_bin = Path(sys.executable).parent
    without_venv = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != venv_bin)
    for i, (path, program) in enumerate([(without_venv, str(venv_bin / "tracehouse")), (str(venv_bin), "tracehouse")]):
        collector = CollectorProcess(tmp_path / f"data-{i}", env={"PATH": path}).start()
        try:
            _send(collector, 2, service="banner-svc")
            lines = [line for line in collector.log().splitlines() if line.startswith("  SQL ")]
            assert len(lines) == 1, collector.log()
            command = lines[0].removeprefix("  SQL").strip()
            assert shlex.split(command)[:2] == [program, "sql"], command
            wait_drained(collector.data_dir)
            shell = subprocess.run(
                command, shell=True, capture_output=True, timeout=120, env={**os.environ, "PATH": path}
            )
            assert shell.returncode == 0, (command, shell.stderr)
            assert re.search(rb"\b2\b", shell.stdout), shell.stdout
        finally:
            collector.kill()
