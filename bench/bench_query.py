"""What a read costs through the collector's query endpoint, as Grafana asks, on 1M LLM calls over 30 days.

The store: `tracehouse migrate` on a fresh data dir, then 1M LLM calls (4 per trace, with a CHAIN root span per
trace: 1.25M spans) loaded straight into chDB with INSERT ... SELECT FROM numbers(), in time order and in
batches of 50k calls as the writer inserts them (so the daily rollup's materialized view runs on each batch),
then merged (OPTIMIZE ... FINAL: one part per day, as the past days of a store that ran for 30 days have):
8 models of 4 providers, 12 features, ~5,000 users (a few spend most), 3 services and tenants, skewed
latencies, 60% streamed calls with a time to first token, 2% errors and 3% unpriced calls. The content columns
stay empty: none of these questions reads them. The load and merge times are printed.

Then, on that store:
1. engine: in a process of its own (chDB opens a store in one process at a time), each question's final
   statement run on a clickhouse-connect chDB client, without the endpoint, and the guard (`ReadOnlySql.prepare`:
   formatQuerySingleLine, EXPLAIN AST and the check) alone, its verdict cache off and on;
2. endpoint: `tracehouse serve` on the store, and each request over one keep-alive connection:
   - `SELECT 1` with a plain HTTP client (http.client, TSV), shaped as clickhouse-go sends it (Native,
     client_protocol_version, Basic auth: the Grafana plugin), and with clickhouse-connect's `query`;
   - the Stage-7 questions, the dashboards' own SQL (dashboards/cost.py, dashboards/overview.py) expanded as the
     Grafana plugin expands it (collector/grafana_macros.py, every filter at All), shaped as clickhouse-go
     sends it: daily cost by feature, top users by spend and cost per call by model over 30 days, latency
     p50/p95/p99 over the last 24 h; each once with the same text every time, once with the range's ends moving
     on by a second from one request to the next, as a refreshing dashboard sends them (the guard's verdict
     cache keys on the text but for its integer literals, so both hit);
   - the endpoint alone (ReadOnlySql + QueryEndpoint, no receivers) with each lever off and on, and SELECT 1 on
     the three variants interleaved (the shared machine's noise falls on all alike);
3. with `--levers`, the panel of top users by spend as it was before the daily rollup by user (every span of the
   range), its answer checked equal to the panel's, and storage levers for both on scratch tables (column types).
   Top users by spend reads the daily rollup by user llm_user_daily (schema/0023) over whole days and the spans
   of the range's two partial days; cost per call by model reads llm_daily (its priced calls and p95 state,
   schema/0022) over whole days, as the other 30-day cost panels do: their figures are the engine's and the
   endpoint's.

Each figure is the median of `--requests` timed requests after 3 warm-up ones, per round; over `--rounds` rounds
the best median and the spread of the medians (max - min) are printed. Targets (issue 19): SELECT 1 <= 2 ms,
each Stage-7 question <= 20 ms, the percentiles over 24 h <= 10 ms.

    .venv/bin/python bench/bench_query.py [--calls 1000000] [--rounds 3] [--requests 20] [--levers] [--data-dir DIR]

With `--data-dir`, a store loaded there by an earlier run is reused (the load is skipped).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

CALLS_PER_TRACE = 4
BATCH_CALLS = 50_000
DAYS = 30
DRIVER_REVISION = 54460  # clickhouse-go's client_protocol_version (tests/test_grafana_protocol.py)
USER_AGENT = "grafana-datasource/4.8.2 clickhouse-go/2.40.3 (lv:go/1.24.4; os:linux)"
LOADED = "bench-query-loaded.json"

PROVIDERS = "['openai', 'openai', 'openai', 'anthropic', 'anthropic', 'google', 'google', 'mistral']"
MODELS = (
    "['gpt-4o', 'gpt-4o-mini', 'o3-mini', 'claude-sonnet-4', 'claude-3-5-haiku', 'gemini-2.0-flash',"
    " 'gemini-1.5-pro', 'mistral-large']"
)
# USD per million input / output tokens, per model (rough list prices; only their spread matters here).
INPUT_PRICES = "[2.5, 0.15, 1.1, 3.0, 0.8, 0.1, 1.25, 2.0]"
OUTPUT_PRICES = "[10.0, 0.6, 4.4, 15.0, 4.0, 0.4, 5.0, 6.0]"
FEATURES = (
    "['chat', 'search', 'summarize', 'classify', 'extract', 'translate', 'agent', 'code-review', 'support',"
    " 'rerank', 'draft-email', '']"
)

# One batch of calls: `number` counts calls from the oldest; `t` is the call's trace, `h` a per-call hash.
CALLS = f"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, SpanAttributes, Duration, StatusCode, StatusMessage, LlmSpanKind, LlmOperation,
    LlmProvider, LlmRequestModel, LlmResponseModel, CanonicalModel, InputTokens, OutputTokens, TotalTokens,
    CacheReadTokens, FinishReason, TimeToFirstToken, UserId, SessionId, TenantId, Feature, ErrorType, CostUsd,
    InputCostUsd, OutputCostUsd, CostSource, PriceModel, ContentSampled)
SELECT
    ts, trace_id, leftPad(lower(hex(number + 1)), 16, '0'), leftPad(lower(hex(1000000000 + t)), 16, '0'),
    concat('chat ', model), 'Client', service, map('service.name', service, 'telemetry.sdk.language', 'python'),
    'openinference.instrumentation.openai', map('llm.model_name', model, 'llm.provider', provider,
    'openinference.span.kind', 'LLM'), duration, if(failed, 'Error', 'Unset'), if(failed, 'rate limited', ''),
    'LLM', 'chat', provider, model, if(failed, '', concat(model, '-2025-01-01')), model, input, output,
    input + output, cached, if(failed, '', 'stop'), if(h % 10 < 6, toUInt64(duration * 0.15), NULL),
    concat('user-', toString(toUInt32(pow((cityHash64(t, 'user') % 10000) / 10000, 3) * 5000))),
    concat('session-', toString(intDiv(t, 5))), concat('tenant-', toString(t % 3)), feature,
    if(failed, 'RateLimitError', ''), if(unpriced, NULL, cost), if(unpriced, NULL, input_cost),
    if(unpriced, NULL, cost - input_cost), if(unpriced, 'unknown', 'catalogue'), if(unpriced, '', model), 'full'
FROM (
    SELECT number, intDiv(number, {CALLS_PER_TRACE}) AS t, cityHash64(number) AS h,
        toDateTime64({{start}}, 9) + toIntervalMillisecond(intDiv(t * {{span_ms}}, {{traces}}) + number % 4 * 700)
            AS ts,
        leftPad(lower(hex(t + 1)), 32, '0') AS trace_id,
        1 + cityHash64(t, 'model') % 8 AS m, {PROVIDERS}[m] AS provider, {MODELS}[m] AS model,
        {FEATURES}[1 + cityHash64(t, 'feature') % 12] AS feature,
        ['chat-api', 'search-api', 'batch-worker'][1 + t % 3] AS service,
        toUInt64(200 + h % 4000) AS input, toUInt64(20 + intDiv(h, 7) % 800) AS output,
        toUInt64(if(h % 3 = 0, intDiv(input, 2), 0)) AS cached,
        toUInt64((250 + pow((intDiv(h, 11) % 1000) / 1000, 4) * 30000) * 1e6) AS duration,
        h % 50 = 0 AS failed, m = 8 AND h % 3 = 0 AS unpriced,
        toDecimal128(input * {INPUT_PRICES}[m] / 1e6, 12) AS input_cost,
        toDecimal128(input * {INPUT_PRICES}[m] / 1e6 + output * {OUTPUT_PRICES}[m] / 1e6, 12) AS cost
    FROM numbers({{first}}, {{count}})
)
"""
ROOTS = f"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration,
    StatusCode, LlmSpanKind, UserId, TenantId, Feature)
SELECT toDateTime64({{start}}, 9) + toIntervalMillisecond(intDiv(number * {{span_ms}}, {{traces}})),
    leftPad(lower(hex(number + 1)), 32, '0'), leftPad(lower(hex(1000000000 + number)), 16, '0'), '', 'answer',
    'Server', ['chat-api', 'search-api', 'batch-worker'][1 + number % 3], 3500000000, 'Unset', 'CHAIN',
    concat('user-', toString(toUInt32(pow((cityHash64(number, 'user') % 10000) / 10000, 3) * 5000))),
    concat('tenant-', toString(number % 3)), {FEATURES}[1 + cityHash64(number, 'feature') % 12]
FROM numbers({{first}}, {{count}})
"""


def _store_url(data_dir: Path) -> str:
    from tracehouse.collector.config import Config

    return Config(data_dir=data_dir).store_url


def load(data_dir: Path, calls: int) -> None:
    """Fill the migrated store in `data_dir` (run in a process of its own) and record what was loaded."""
    from tracehouse.collector import store

    client = store.connect(_store_url(data_dir))
    traces = calls // CALLS_PER_TRACE
    span_ms = DAYS * 86400 * 1000
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=DAYS)
    start_literal = f"'{start:%Y-%m-%d %H:%M:%S}'"
    started = time.perf_counter()
    for first in range(0, calls, BATCH_CALLS):
        count = min(BATCH_CALLS, calls - first)
        client.command(CALLS.format(start=start_literal, span_ms=span_ms, traces=traces, first=first, count=count))
        first_trace, last_trace = first // CALLS_PER_TRACE, (first + count) // CALLS_PER_TRACE
        client.command(
            ROOTS.format(
                start=start_literal, span_ms=span_ms, traces=traces, first=first_trace, count=last_trace - first_trace
            )
        )
    seconds = time.perf_counter() - started
    # A store that has run for 30 days has its past days merged: merge every partition now, so the figures do
    # not depend on how far the background merges got (they go on in whichever process opens the store).
    client.command("OPTIMIZE TABLE otel_traces FINAL")
    client.command("OPTIMIZE TABLE llm_daily FINAL")
    client.command("OPTIMIZE TABLE llm_user_daily FINAL")
    merged = time.perf_counter() - started - seconds
    spans = client.query("SELECT count() FROM otel_traces").result_rows[0][0]
    parts = client.query("SELECT count() FROM system.parts WHERE active AND table = 'otel_traces'").result_rows
    client.close()
    info = {
        "calls": calls,
        "spans": spans,
        "seconds": round(seconds, 1),
        "merged": round(merged, 1),
        "parts": parts[0][0],
    }
    (data_dir / LOADED).write_text(json.dumps(info))


# --- the questions, as the dashboards ask them -----------------------------------------------------------------


def questions(now: datetime | None = None) -> dict[str, str]:
    """The Stage-7 questions: each panel's SQL from the dashboards, expanded as the Grafana plugin does for
    a time range that ends `now`."""
    from tracehouse.collector.report import expand_for_report
    from tracehouse.dashboards.cost import cost
    from tracehouse.dashboards.overview import overview

    def panel_sql(board: dict, title: str) -> str:
        (found,) = [p for p in board["panels"] if p.get("title") == title]
        return found["targets"][0]["rawSql"]

    now = now or datetime.now(UTC).replace(microsecond=0)
    month, day = (now - timedelta(days=DAYS), now), (now - timedelta(hours=24), now)
    cost_board, overview_board = cost(), overview()
    asked = {
        "daily cost by feature, 30 d": (panel_sql(cost_board, "Daily cost by feature"), month, 3600),
        "top users by spend, 30 d": (panel_sql(cost_board, "Top users by spend"), month, 3600),
        "cost per call by model, 30 d": (panel_sql(cost_board, "Cost per call by model"), month, 3600),
        "latency p50/p95/p99, 24 h": (panel_sql(overview_board, "Latency p50 / p95 / p99"), day, 60),
    }
    return {
        name: expand_for_report(text, start, end, interval) for name, (text, (start, end), interval) in asked.items()
    }


# --- timing --------------------------------------------------------------------------------------------------


def _median_ms(call: Callable[[], object], requests: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _rounds(call: Callable[[], object], rounds: int, requests: int) -> list[float]:
    return [_median_ms(call, requests) for _ in range(rounds)]


def _line(name: str, medians: list[float], target: float | None = None) -> str:
    best, spread = min(medians), max(medians) - min(medians)
    goal = f"  (target <= {target:g} ms)" if target is not None else ""
    return f"  {name:<52} {best:8.3f} ms  spread {spread:7.3f} ms{goal}"


def engine(data_dir: Path, rounds: int, requests: int) -> None:
    """The questions on the store itself, without the endpoint: the query alone, the guard's check, and the
    guard with its verdict cached (for the same text, and for the texts of a moving time range)."""
    from tracehouse.collector import store
    from tracehouse.collector.query import QueryLimits, ReadOnlySql, VerdictCache

    url = _store_url(data_dir)
    uncached = ReadOnlySql(lambda: store.connect(url), QueryLimits(), VerdictCache(entries=0))
    cached = ReadOnlySql(lambda: store.connect(url), QueryLimits())
    client = uncached._acquire(5)  # one of the guard's own clients: readonly=1 and the limits
    print("engine (in process, no HTTP), median per request:")
    now = datetime.now(UTC).replace(microsecond=0)
    moving = [questions(now + timedelta(seconds=n)) for n in range(rounds * (requests + 3) + 1)]
    for name, sql in {"SELECT 1": "SELECT 1", **questions(now)}.items():
        final, _fmt = uncached.prepare(client, sql, "Native", "bench")
        print(_line(f"{name}: query alone", _rounds(lambda f=final: client.raw_query(f, fmt=None), rounds, requests)))
        for label, runner in (("guard", uncached), ("guard, verdict cached", cached)):
            check = _rounds(lambda s=sql, r=runner: r.prepare(client, s, "Native", "bench"), rounds, requests)
            print(_line(f"{name}: {label}", check))
        if name != "SELECT 1":  # the same verdict for the texts of a range moving on by a second each time
            texts = iter(asked[name] for asked in moving)
            check = _rounds(lambda t=texts: cached.prepare(client, next(t), "Native", "bench"), rounds, requests)
            print(_line(f"{name}: guard, verdict cached, range moving", check))
    uncached._release(client)
    uncached.close()
    cached.close()


# Storage levers, measured on scratch copies of the columns the cost panels read (a database of the bench's own,
# dropped after): the same ORDER BY and partitions as otel_traces (schema/0001), with one type changed. Not a
# schema change; what pays is described for schema/ in the report.
LEVER_TABLE = """
CREATE TABLE bench_levers.{name} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    UserId {user} CODEC(ZSTD(1)),
    LlmProvider LowCardinality(String) CODEC(ZSTD(1)),
    LlmRequestModel LowCardinality(String) CODEC(ZSTD(1)),
    LlmResponseModel LowCardinality(String) CODEC(ZSTD(1)),
    CanonicalModel LowCardinality(String) CODEC(ZSTD(1)),
    LlmModel String ALIAS if(CanonicalModel != '', toString(CanonicalModel),
        if(LlmResponseModel != '', LlmResponseModel, LlmRequestModel)),
    InputTokens Nullable(UInt64) CODEC(ZSTD(1)),
    OutputTokens Nullable(UInt64) CODEC(ZSTD(1)),
    CostUsd {cost} CODEC(ZSTD(1)),
    CostSource LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
"""
LEVER_COLUMNS = (
    "Timestamp, ServiceName, SpanName, UserId, LlmProvider, LlmRequestModel, LlmResponseModel, CanonicalModel,"
    " InputTokens, OutputTokens, CostUsd, CostSource"
)
LEVERS = {
    "same types (control)": ("String", "Nullable(Decimal(38, 12))"),
    "UserId LowCardinality(String)": ("LowCardinality(String)", "Nullable(Decimal(38, 12))"),
    "CostUsd Nullable(Decimal(18, 12))": ("String", "Nullable(Decimal(18, 12))"),
    "both": ("LowCardinality(String)", "Nullable(Decimal(18, 12))"),
}


# Top users by spend before the daily rollup by user (schema/0023): every span of the range.
SPANS_ONLY_TOP_USERS = """
SELECT UserId AS user_id, count() AS calls, toFloat64(sum(ifNull(CostUsd, 0))) AS cost_usd,
    sum(ifNull(InputTokens, 0)) AS input_tokens, sum(ifNull(OutputTokens, 0)) AS output_tokens,
    countIf(CostSource = 'unknown') AS unpriced_calls
FROM otel_traces
WHERE Timestamp >= {f} AND Timestamp <= {t} AND CostSource != '' AND UserId != ''
GROUP BY user_id ORDER BY cost_usd DESC, user_id LIMIT 20
"""


def _close(rows: list[tuple], other: list[tuple]) -> bool:
    """Equal rows but for float sums' last digits (a Float64 sum in another order)."""
    if len(rows) != len(other):
        return False
    for row, theirs in zip(rows, other, strict=True):
        for mine, their in zip(row, theirs, strict=True):
            if isinstance(mine, float) and abs(mine - their) > 1e-9 * max(abs(their), 1):
                return False
            if not isinstance(mine, float) and mine != their:
                return False
    return True


def _range_ends(sql: str) -> tuple[str, str]:
    """The `toDateTime(<from>)` and `toDateTime(<to>)` of an expanded $__timeFilter(Timestamp)."""
    import re

    found = re.search(r"Timestamp >= (toDateTime\(\d+\)) AND Timestamp <= (toDateTime\(\d+\))", sql)
    assert found, sql
    return found.group(1), found.group(2)


def levers(data_dir: Path, rounds: int, requests: int) -> None:
    """Top users by spend as it was before the rollup by user (its answer checked equal to the panel's), then the
    span questions on scratch tables that differ from otel_traces in one column type each."""
    from tracehouse.collector import store

    client = store.connect(_store_url(data_dir))
    name = "top users by spend, 30 d"
    panel = questions()[name]
    f, to = _range_ends(panel)
    before = SPANS_ONLY_TOP_USERS.format(f=f, t=to)
    asked = {f"{name} (panel)": panel, f"{name} (spans only, before schema/0023)": before}
    same, old = client.query(panel).result_rows, client.query(before).result_rows
    assert _close(same, old), (same[:3], old[:3])  # the rollup answers as the spans do
    print("storage levers (engine, in process), median per request:")
    timed = _rounds(lambda: client.raw_query(before, fmt=None), rounds, requests)
    print(_line(f"{name}: spans only (before schema/0023), otel_traces", timed))
    client.command("DROP DATABASE IF EXISTS bench_levers")
    client.command("CREATE DATABASE bench_levers")
    try:
        for n, (lever, (user, cost)) in enumerate(LEVERS.items()):
            client.command(LEVER_TABLE.format(name=f"t{n}", user=user, cost=cost))
            client.command(f"INSERT INTO bench_levers.t{n} SELECT {LEVER_COLUMNS} FROM otel_traces")
            for question, sql in asked.items():
                moved = sql.replace("FROM otel_traces", f"FROM bench_levers.t{n}")
                timed = _rounds(lambda s=moved: client.raw_query(s, fmt=None), rounds, requests)
                print(_line(f"{question}: {lever}", timed))
    finally:
        client.command("DROP DATABASE IF EXISTS bench_levers")
        client.close()


class Endpoint:
    """One keep-alive connection to the collector's query endpoint."""

    def __init__(self, info: dict) -> None:
        url = urllib.parse.urlsplit(info["query_url"])
        self.host, self.port, self.key = url.hostname or "127.0.0.1", url.port or 80, info["query_key"]
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        basic = base64.b64encode(f"default:{self.key}".encode()).decode()
        self.plugin_headers = {"Authorization": f"Basic {basic}", "User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
        params = {"client_protocol_version": str(DRIVER_REVISION), "default_format": "Native"}
        self.plugin_path = "/?" + urllib.parse.urlencode(sorted(params.items()))

    def _post(self, path: str, sql: str, headers: dict[str, str]) -> bytes:
        self.conn.request("POST", path, body=sql.encode(), headers=headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {body[:500]!r}")
        return body

    def plain(self, sql: str) -> bytes:
        return self._post("/?default_format=TSV", sql, {"X-ClickHouse-Key": self.key})

    def fresh(self) -> bytes:
        """SELECT 1 on a connection of its own, as urllib (`tracehouse sql`) sends it."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("POST", "/?default_format=TSV", body=b"SELECT 1", headers={"X-ClickHouse-Key": self.key})
            return conn.getresponse().read()
        finally:
            conn.close()

    def plugin(self, sql: str) -> bytes:
        return self._post(self.plugin_path, sql, self.plugin_headers)


def serve(data_dir: Path, verdict_entries: int, inline_shape: bool) -> None:
    """The read endpoint alone (ReadOnlySql + QueryEndpoint as collector/service.py builds them) on the store,
    with the guard's verdict cache at `verdict_entries` (0: off) and small answers shaped on the event loop or
    not (each lever on and off), until SIGTERM; collector.json-style info in the data dir."""
    import asyncio

    from tracehouse.collector import query, store
    from tracehouse.collector.query import QueryEndpoint, QueryLimits, ReadOnlySql, VerdictCache

    url = _store_url(data_dir)

    async def run() -> None:
        runner = ReadOnlySql(lambda: store.connect(url), QueryLimits(), VerdictCache(entries=verdict_entries))
        inline = query.INLINE_SHAPE_BYTES if inline_shape else -1  # -1: all on a worker thread, as before the lever
        point = QueryEndpoint(runner, "127.0.0.1", 0, inline_shape_bytes=inline)
        await point.start()
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        info = {"pid": os.getpid(), "query_url": point.url, "query_key": point.key}
        (data_dir / "bench-endpoint.json").write_text(json.dumps(info))
        await stopped.wait()
        await point.stop()

    asyncio.run(run())


SERVE = [__file__, "--step", "serve"]
SERVERS = {
    "endpoint alone: no lever (as before)": [*SERVE, "--verdict-cache", "0", "--shape-on-thread"],
    "endpoint alone: verdict cache": [*SERVE, "--shape-on-thread"],
    "endpoint alone: verdict cache + inline shaping": SERVE,
    "tracehouse serve": ["-m", "tracehouse.collector", "serve", "--grpc-port", "0", "--http-port", "0"],
}


def endpoint(data_dir: Path, server: str, rounds: int, requests: int) -> None:
    import clickhouse_connect

    log = (data_dir.parent / "bench-query-collector.log").open("ab")
    info_file = data_dir / ("collector.json" if server == "tracehouse serve" else "bench-endpoint.json")
    info_file.unlink(missing_ok=True)
    command = [sys.executable, *SERVERS[server], "--data-dir", str(data_dir)]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        info = _wait_for(proc, info_file)
        point = Endpoint(info)
        parts = point.plain("SELECT count() FROM system.parts WHERE active AND table = 'otel_traces'").decode().strip()
        print(f"endpoint: {server} ({parts} active parts of otel_traces), median per request:")
        for _ in range(50):  # a started server's first requests open its clients and read the catalogue
            point.plugin("SELECT 1")
        print(
            _line(
                "SELECT 1, plain keep-alive HTTP (TSV)", _rounds(lambda: point.plain("SELECT 1"), rounds, requests), 2
            )
        )
        print(_line("SELECT 1, a new connection per request (TSV)", _rounds(point.fresh, rounds, requests)))
        plugin_select_1 = _rounds(lambda: point.plugin("SELECT 1"), rounds, requests)
        print(_line("SELECT 1, as clickhouse-go (Grafana) sends it", plugin_select_1, 2))
        url = urllib.parse.urlsplit(info["query_url"])
        connect = clickhouse_connect.get_client(
            host=url.hostname, port=url.port, username="default", password=info["query_key"]
        )
        print(
            _line(
                "SELECT 1, clickhouse-connect query()", _rounds(lambda: connect.query("SELECT 1"), rounds, requests), 2
            )
        )
        connect.close()
        now = datetime.now(UTC).replace(microsecond=0)
        # As a dashboard refreshes: the range's ends move on by a second from one request to the next.
        moving = [questions(now + timedelta(seconds=n)) for n in range(rounds * (requests + 3) + 1)]
        for name, sql in questions(now).items():
            target = 10 if name.startswith("latency") else 20
            print(_line(name, _rounds(lambda s=sql: point.plugin(s), rounds, requests), target))
            texts = iter(asked[name] for asked in moving)
            print(_line(f"{name}, range moving", _rounds(lambda t=texts: point.plugin(next(t)), rounds, requests)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def interleaved(data_dir: Path, rounds: int, requests: int) -> None:
    """SELECT 1 on the three endpoint-alone variants at once, each on an empty store of its own, their
    requests interleaved so that the shared machine's noise falls on all three alike."""
    servers = [name for name in SERVERS if name.startswith("endpoint alone")]
    procs, points = [], []
    log = (data_dir.parent / "bench-query-collector.log").open("ab")
    try:
        for n, server in enumerate(servers):
            store_dir = data_dir.parent / f"bench-query-empty-{n}"
            store_dir.mkdir(parents=True, exist_ok=True)
            (store_dir / "bench-endpoint.json").unlink(missing_ok=True)
            command = [sys.executable, *SERVERS[server], "--data-dir", str(store_dir)]
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
            points.append(Endpoint(_wait_for(procs[-1], store_dir / "bench-endpoint.json")))
        for point in points:
            for _ in range(50):
                point.plugin("SELECT 1")
        print("SELECT 1 as clickhouse-go sends it, the endpoint variants interleaved, median per request:")
        medians: list[list[float]] = [[] for _ in servers]
        for _ in range(rounds):
            times: list[list[float]] = [[] for _ in servers]
            for _ in range(requests * 5):
                for n, point in enumerate(points):
                    started = time.perf_counter()
                    point.plugin("SELECT 1")
                    times[n].append(time.perf_counter() - started)
            for n in range(len(servers)):
                medians[n].append(statistics.median(times[n]) * 1000)
        for n, server in enumerate(servers):
            print(_line(server.removeprefix("endpoint alone: "), medians[n], 2))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def _wait_for(proc: subprocess.Popen, info_file: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the collector exited with {proc.returncode}")
        try:
            info = json.loads(info_file.read_text())
            if info.get("pid") == proc.pid:
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError("the collector did not start")


def _in_own_process(*args: str) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, help="keep the store here (and reuse one loaded before)")
    parser.add_argument("--only", choices=("engine", "endpoint"), help="run one half")
    parser.add_argument("--levers", action="store_true", help="also measure storage levers on scratch tables")
    parser.add_argument("--servers", default=",".join(SERVERS), help="the endpoints to measure, comma-separated")
    # A child process's job: load the store, the engine figures, one endpoint alone.
    parser.add_argument("--step", choices=("load", "engine", "levers", "serve"), help=argparse.SUPPRESS)
    parser.add_argument("--verdict-cache", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--shape-on-thread", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "serve":
        return serve(args.data_dir, args.verdict_cache, not args.shape_on_thread)
    if args.step == "load":
        return load(args.data_dir, args.calls)
    if args.step == "engine":
        return engine(args.data_dir, args.rounds, args.requests)
    if args.step == "levers":
        return levers(args.data_dir, args.rounds, args.requests)
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        loaded = data_dir / LOADED
        if not loaded.exists() or json.loads(loaded.read_text())["calls"] != args.calls:
            started = time.perf_counter()
            command = [sys.executable, "-m", "tracehouse.collector", "migrate", "--data-dir", str(data_dir)]
            subprocess.run(command, check=True, capture_output=True)
            migrated = time.perf_counter() - started
            _in_own_process("--step", "load", "--data-dir", str(data_dir), "--calls", str(args.calls))
            print(f"store: migrated in {migrated:.1f} s", end="; ")
        info = json.loads(loaded.read_text())
        print(
            f"{info['calls']:,} LLM calls ({info['spans']:,} spans) over {DAYS} days loaded in {info['seconds']} s"
            f" (INSERT ... SELECT FROM numbers(), {BATCH_CALLS:,}-call batches), OPTIMIZE ... FINAL {info['merged']} s"
            f" ({info['parts']} parts); cpus {os.cpu_count()}, machine shared"
        )
        common = ["--data-dir", str(data_dir), "--rounds", str(args.rounds), "--requests", str(args.requests)]
        if args.only != "endpoint":
            _in_own_process("--step", "engine", *common)
            if args.levers:
                _in_own_process("--step", "levers", *common)
        if args.only != "engine":
            interleaved(data_dir, args.rounds, args.requests)
            for server in args.servers.split(","):
                endpoint(data_dir, server, args.rounds, args.requests)


if __name__ == "__main__":
    main()
