"""The guard's verdict cache (collector/query.py VerdictCache): Grafana repeats its queries, so an accepted
verdict is reused for the same query text, format and row limit, and never for anything else. Through a real
collector's read endpoint: the same text with other parameters, another format or another row limit is checked
on its own, a refusal stays a refusal however often it is sent. The cache's bounds on the class itself, and a
cache hit on a real chDB store (in a process of its own: chDB opens one store per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tracehouse.collector.query import VerdictCache, _Verdict

pytestmark = pytest.mark.timeout(120)


def _get(collector, sql: str, **params: str) -> tuple[int, str]:
    query = urllib.parse.urlencode({"query": sql, **params})
    request = urllib.request.Request(
        collector.info["query_url"] + "?" + query, headers={"X-ClickHouse-Key": collector.info["query_key"]}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_cached_verdict_never_lets_a_refused_query_through(start_collector):
    collector = start_collector(migrated=True)
    table = "SELECT count() FROM {t:Identifier}"
    for _ in range(3):  # accepted (and cached), then the same text bound to a table the guard refuses
        assert _get(collector, table, param_t="otel_traces") == (200, "0\n")
        status, body = _get(collector, table, param_t="system.processes")
        assert status == 400 and "system.processes is not readable" in body, body
        status, body = _get(collector, table, param_t="system.query_log")
        assert status == 400 and "not readable" in body, body

    # The same text in an accepted format, then in one outside the allow-list.
    assert _get(collector, "SELECT 1", default_format="TSV") == (200, "1\n")
    assert _get(collector, "SELECT 1", default_format="TSV") == (200, "1\n")
    status, body = _get(collector, "SELECT 1", default_format="Template")
    assert status == 400 and "unknown output format" in body, body

    # The same text with and without a row limit: each runs with its own.
    numbers = "SELECT number FROM numbers(10)"
    assert _get(collector, numbers)[1].split() == [str(n) for n in range(10)]
    assert _get(collector, numbers, limit="3")[1].split() == ["0", "1", "2"]
    assert _get(collector, numbers)[1].split() == [str(n) for n in range(10)]
    assert _get(collector, numbers, limit="3")[1].split() == ["0", "1", "2"]

    # A refusal is never remembered as anything else, and never becomes an acceptance by repetition.
    for sql in ("SELECT * FROM system.processes", "SELECT 1 SETTINGS readonly = 0", "SELECT file('/etc/passwd')"):
        for _ in range(3):
            status, body = _get(collector, sql)
            assert status == 400 and body.startswith("Code: "), (sql, body)
    assert "Traceback" not in collector.log()


def test_the_cache_is_bounded_least_recently_used_first():
    cache = VerdictCache(entries=4, max_query_chars=100)
    for n in range(4):
        cache.put(f"SELECT {n}", "TSV", None, _Verdict(f"SELECT {n}", "TSV"))
    assert cache.get("SELECT 0", "TSV", None) == _Verdict("SELECT 0", "TSV")  # now the most recently used
    cache.put("SELECT 4", "TSV", None, _Verdict("SELECT 4", "TSV"))
    assert len(cache) == 4
    assert cache.get("SELECT 1", "TSV", None) is None  # the least recently used went first
    assert cache.get("SELECT 0", "TSV", None) is not None and cache.get("SELECT 4", "TSV", None) is not None
    # Keyed by format and row limit too; a text over the size bound is never kept.
    assert cache.get("SELECT 0", "JSON", None) is None and cache.get("SELECT 0", "TSV", 5) is None
    long_sql = "SELECT 1" + " " * 100
    cache.put(long_sql, "TSV", None, _Verdict("SELECT 1", "TSV"))
    assert cache.get(long_sql, "TSV", None) is None and len(cache) == 4
    off = VerdictCache(entries=0)
    off.put("SELECT 1", "TSV", None, _Verdict("SELECT 1", "TSV"))
    assert len(off) == 0


def test_a_cache_hit_runs_the_checked_statement_under_its_own_tag(tmp_path):
    """On a real store: the second check of a query is the first one's statement with the new tag, a tag that
    could end its comment is never given a cached verdict, and what runs answers as before."""
    script = textwrap.dedent(
        f"""
        from tracehouse.collector import store
        from tracehouse.collector.query import QueryRefused, ReadOnlySql

        runner = ReadOnlySql(lambda: store.connect("chdb://{tmp_path / "store"}"))
        client = runner._acquire(5)
        sql = "SELECT number * 2 AS n FROM numbers(3)  -- twice"
        first, fmt = runner.prepare(client, sql, "TSV", "aaaa")
        assert len(runner.verdicts) == 1
        second, fmt2 = runner.prepare(client, sql, "TSV", "bbbb")
        assert (fmt, fmt2) == ("TSV", "TSV")
        assert second == first.replace("aaaa", "bbbb") and second.startswith("/* tracehouse-read bbbb */ SELECT")
        try:  # checked from scratch (a cached verdict would have been returned): two statements, refused
            runner.prepare(client, sql, "TSV", "x */ SELECT 2 /*")
            raise AssertionError("a tag that ends its comment was given a verdict")
        except QueryRefused:
            pass
        runner._release(client)
        assert runner.run(sql, "TSV").body == b"0\\n2\\n4\\n"
        assert runner.run(sql, "TSV").body == b"0\\n2\\n4\\n"
        runner.close()
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=90)
    assert result.returncode == 0 and result.stdout.strip() == b"ok", result.stderr.decode()
