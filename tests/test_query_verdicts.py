"""The guard's verdict cache (collector/query.py VerdictCache): Grafana repeats its queries, so an accepted
verdict is reused for the same query shape (the text but for its integer literals), format and row limit, and
never for anything else. Through a real collector's read endpoint: the same text with other parameters,
another format or another row limit is checked on its own, a refusal stays a refusal however often it is
sent. The cache's bounds on the class itself, and a
cache hit on a real chDB store (in a process of its own: chDB opens one store per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tracehouse.collector.query import Probe, VerdictCache, numbers_shape, sentinel_probe

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

    # Texts that differ in integer literals only share a verdict and each runs with its own literals; any
    # other difference is checked on its own.
    for n in (3, 5, 2):
        assert _get(collector, f"SELECT number FROM numbers({n}) WHERE number < {n + 10}")[1].split() == [
            str(i) for i in range(n)
        ]
    status, body = _get(collector, "SELECT number FROM numbers(3) WHERE number < 13 INTO OUTFILE 'out.txt'")
    assert status == 400 and "OUTFILE" in body, body
    status, body = _get(collector, "SELECT number FROM system.processes WHERE number < 13")
    assert status == 400 and "not readable" in body, body

    # A refusal is never remembered as anything else, and never becomes an acceptance by repetition.
    for sql in ("SELECT * FROM system.processes", "SELECT 1 SETTINGS readonly = 0", "SELECT file('/etc/passwd')"):
        for _ in range(3):
            status, body = _get(collector, sql)
            assert status == 400 and body.startswith("Code: "), (sql, body)
    assert "Traceback" not in collector.log()


def _probe(sql: str, wrap: str = "{}") -> Probe | None:
    """The probe of a query the formatter prints back as it is (in `wrap`, the row limit's statement)."""
    probe = sentinel_probe(sql)
    return None if probe is None else Probe(probe[1], wrap.format(probe[0]))


def test_the_cache_is_bounded_least_recently_used_first():
    cache = VerdictCache(entries=4, max_query_chars=100)
    for n in range(4):
        cache.put(f"SELECT {n}", "TSV", None, f"SELECT {n}", "TSV", _probe(f"SELECT {n}"))
    assert cache.get("SELECT x", "TSV", None) is None
    assert cache.get("SELECT 0", "TSV", None) == ("SELECT 0", "TSV")  # one shape: all four are one verdict
    assert len(cache) == 1
    for name in ("a", "b", "c", "d"):  # four shapes
        cache.put(f"SELECT {name}", "TSV", None, f"SELECT {name}", "TSV")
    assert len(cache) == 4 and cache.get("SELECT 7", "TSV", None) is None  # the least recently used went first
    assert cache.get("SELECT a", "TSV", None) == ("SELECT a", "TSV")
    cache.put("SELECT e", "TSV", None, "SELECT e", "TSV")
    assert cache.get("SELECT a", "TSV", None) is not None and cache.get("SELECT b", "TSV", None) is None
    # Keyed by format and row limit too; a text over the size bound is never kept.
    assert cache.get("SELECT a", "JSON", None) is None and cache.get("SELECT a", "TSV", 5) is None
    long_sql = "SELECT 1" + " " * 100
    cache.put(long_sql, "TSV", None, "SELECT 1", "TSV")
    assert cache.get(long_sql, "TSV", None) is None and len(cache) == 4
    off = VerdictCache(entries=0)
    off.put("SELECT 1", "TSV", None, "SELECT 1", "TSV")
    assert len(off) == 0


def test_a_verdict_is_shared_only_by_texts_that_differ_in_integer_literals():
    cache = VerdictCache()
    query = "SELECT x FROM t WHERE ts >= toDateTime(17) LIMIT 5"
    wrap = "SELECT * FROM ({}) LIMIT 9"
    cache.put(query, "TSV", 9, wrap.format(query), "TSV", _probe(query, wrap))
    assert cache.get("SELECT x FROM t WHERE ts >= toDateTime(18) LIMIT 6", "TSV", 9) == (
        "SELECT * FROM (SELECT x FROM t WHERE ts >= toDateTime(18) LIMIT 6) LIMIT 9",
        "TSV",
    )
    for other in (
        "SELECT y FROM t WHERE ts >= toDateTime(18) LIMIT 6",  # another name
        "SELECT x FROM t WHERE ts >= toDateTime(18.5) LIMIT 6",  # a float
        "SELECT x FROM t WHERE ts >= toDateTime(018) LIMIT 6",  # a leading zero
        "SELECT x FROM t WHERE ts >= toDateTime(12345678901234567890) LIMIT 6",  # beyond 18 digits
        "SELECT x FROM t WHERE ts >= toDateTime(-18) LIMIT 6",
    ):
        assert cache.get(other, "TSV", 9) is None, other
    assert numbers_shape("SELECT é1, x1, 1.5, t.1, 0x10, 1e3, 007, 'a 1', `b 2`, \"c 3\" -- 4\n, 5") == (
        ("SELECT é1, x1, 1.5, t.1, 0x10, 1e3, 007, 'a 1', `b 2`, \"c 3\" -- 4\n, ", ""),
        ("5",),
    )
    for unread in ("SELECT 1 /* 2 */", "SELECT 'open 1", "SELECT $$ 1 $$", "SELECT 1 # 2", "SELECT 1\0"):
        assert numbers_shape(unread) is None, unread
    # A checked statement whose literals are not the text's, in order, is kept for the exact text only.
    cache.put("SELECT 1 + 2", "TSV", None, "SELECT 3", "TSV", _probe("SELECT 1 + 2"))
    assert cache.get("SELECT 1 + 2", "TSV", None) == ("SELECT 3", "TSV")
    assert cache.get("SELECT 1 + 3", "TSV", None) is None
    # Equal literals that the formatter moved (LIMIT 3 OFFSET 3 prints as LIMIT 3, 3): the probe's sentinels
    # come back swapped, so only the exact text is kept; so is a verdict without a probe.
    swapped = sentinel_probe("SELECT n FROM t LIMIT 3 OFFSET 3")
    assert swapped is not None
    first, second = swapped[1]
    cache.put(
        "SELECT n FROM t LIMIT 3 OFFSET 3",
        "TSV",
        None,
        "SELECT n FROM t LIMIT 3, 3",
        "TSV",
        Probe(swapped[1], f"SELECT n FROM t LIMIT {second}, {first}"),
    )
    assert cache.get("SELECT n FROM t LIMIT 2 OFFSET 40", "TSV", None) is None
    assert cache.get("SELECT n FROM t LIMIT 3 OFFSET 3", "TSV", None) == ("SELECT n FROM t LIMIT 3, 3", "TSV")
    cache.put("SELECT 7 AS n", "TSV", None, "SELECT 7 AS n", "TSV")
    assert cache.get("SELECT 8 AS n", "TSV", None) is None


def test_a_verdict_never_answers_another_query_whose_literals_the_formatter_moves(start_collector):
    """Found by an attacker's try: queries whose literals formatQuerySingleLine moves or hides, each sent first
    with equal literals (as if the cache keyed on values alone), then with others: each answers its own rows."""
    collector = start_collector(migrated=True)

    def rows(sql: str, **params: str) -> list[str]:
        status, body = _get(collector, sql, **params)
        assert status == 200, body
        return body.split()

    for _ in range(2):
        assert rows("SELECT number FROM numbers(100) LIMIT 3 OFFSET 3") == ["3", "4", "5"]
        assert rows("SELECT number FROM numbers(100) LIMIT 2 OFFSET 40") == ["40", "41"]
        assert rows("FROM numbers(3) SELECT 3") == ["3", "3", "3"]
        assert rows("FROM numbers(1) SELECT 42") == ["42"]
        typed = "SELECT number FROM numbers(50) WHERE toString(number::Decimal({})) != ''"
        assert rows(typed.format(9), limit="9") == [str(n) for n in range(9)]
        assert rows(typed.format(30), limit="9") == [str(n) for n in range(9)]
    # the moving Grafana time range still shares one verdict (the lever stays on)
    for n in (3, 5, 2):
        assert rows(f"SELECT number FROM numbers({n}) WHERE number < {n + 10}") == [str(i) for i in range(n)]


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
        # Texts that differ in integer literals only (Grafana's time range moving on): the cached verdict
        # gives the very statement the check would have built for the new text, for every panel here.
        from datetime import datetime, timedelta, UTC
        from tracehouse.collector.query import VerdictCache
        from tracehouse.collector.report import expand_for_report
        from tracehouse.dashboards import cost, overview, quality

        fresh = ReadOnlySql(lambda: store.connect("chdb://{tmp_path / "store"}"), verdicts=VerdictCache(entries=0))
        checker = fresh._acquire(5)
        panels = [
            target["rawSql"]
            for board in (cost.cost(), overview.overview(), quality.quality())
            for panel in board["panels"]
            for target in panel.get("targets", [])
            if "rawSql" in target
        ]
        assert len(panels) > 20
        end = datetime(2026, 12, 4, 12, 0, 7, tzinfo=UTC)
        for n, panel in enumerate(panels):
            row_limit = 1000 if n % 2 else None
            first = expand_for_report(panel, end - timedelta(days=30), end, 3600)
            later = expand_for_report(panel, end - timedelta(days=30, seconds=-61), end + timedelta(seconds=61), 3600)
            runner.prepare(client, first, "Native", "t1", row_limit)
            hits = len(runner.verdicts)
            cached = runner.prepare(client, later, "Native", "t2", row_limit)
            assert cached == fresh.prepare(checker, later, "Native", "t2", row_limit), panel
            assert len(runner.verdicts) == hits  # no new verdict: the first one's was used
        fresh._release(checker)
        fresh.close()
        runner._release(client)
        assert runner.run(sql, "TSV").body == b"0\\n2\\n4\\n"
        assert runner.run(sql, "TSV").body == b"0\\n2\\n4\\n"
        runner.close()
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=90)
    assert result.returncode == 0 and result.stdout.strip() == b"ok", result.stderr.decode()
