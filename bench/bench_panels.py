"""Every dashboard panel through the collector's read endpoint, as Grafana asks, on N LLM spans over 30 days.

Issue 19's target: every panel of every dashboard in dashboards/ <= 200 ms over 10M spans (and the latency
percentiles over 24 h <= 10 ms). Panels are the dashboards' own SQL as dashboards/*.py build it, expanded as the
Grafana plugin expands it (collector/grafana_macros.py): every filter variable at All (its options from its own
query, run first, in order, as Grafana does on load: those variable queries are timed too, as `$name`), the
trace id textbox at the newest trace, other textboxes empty, the dashboard's default time range ending at the
newest span of the store (so a reused store gives the same answer later), and the interval Grafana would pick
for a 1000-point-wide panel (range / 1000, rounded as Grafana's kbn.roundInterval). Only ClickHouse targets:
the collector-health Prometheus panels are not the store's. The annotation queries (prompts) are run too.

The store: bench/bench_query.py's loader (imported and run as its `--step load` child, not copied): `tracehouse
migrate`, then N spans as LLM calls (4 per trace with a CHAIN root span: calls = spans * 4 / 5) over 30 days,
inserted with INSERT ... SELECT FROM numbers() in 50k-call batches (the daily rollup's view runs on each), then
OPTIMIZE ... FINAL. Then (this bench's own step) what users and reviewers said: a `user` score (thumbs up or down,
by span) on 2% of the calls, a whole-trace `user` score on 1% of the traces, a review (approved, flagged, rejected
or pending) on 0.5% of the calls, inserted into scores and reviews from the stored calls' ids. The content columns
stay empty and the batch spans are absent (the batches panels find no batch).

Each request goes over one keep-alive connection to `tracehouse serve` on the store, shaped as clickhouse-go
sends it (Native, client_protocol_version, Basic auth). Per panel: one warm-up request, then `--rounds` rounds of
`--requests` requests (one request a round when the warm-up took over 2 s); printed: the best round median, the
spread of the medians, the rows returned (the same SQL once more as TSV) and SLOW when over 200 ms.

    flock /tmp/tracehouse-bench.lock .venv/bin/python bench/bench_panels.py [--spans 10000000]
        [--data-dir /tmp/bench-panels-10m] [--rounds 3] [--requests 5] [--dashboard cost] [--panel Latency]
        [--time-from now-24h]

With `--data-dir`, a store loaded there by an earlier run with the same --spans is reused (the load is skipped).
Load time on this 2-core machine (shared with other work; each run prints its own): 1M spans (800k calls) 12 s
load + 8 s OPTIMIZE FINAL; 10M spans (8M calls) 68 s load + 22 s OPTIMIZE FINAL, ~1.5 s for the scores and reviews;
~440 MB on disk (content columns empty). A whole run over the 10M store (every dashboard, 3 rounds of 3
requests) then takes ~4 min.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_query  # noqa: E402 - the loader, the endpoint client and the server start of the query bench

SLOW_MS = 200.0
POINTS = 1000  # a panel's maxDataPoints: Grafana's default is the panel's width in pixels
# Grafana's kbn.roundInterval: (below this many ms, the interval is this many ms).
ROUND_INTERVAL = (
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10_000),
    (17500, 15_000),
    (25000, 20_000),
    (45000, 30_000),
    (90000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (1_050_000, 600_000),
    (2_100_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
)
UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


@dataclass(frozen=True)
class Query:
    dashboard: str
    title: str
    sql: str


def grafana_interval_ms(start: datetime, end: datetime) -> int:
    raw = (end - start).total_seconds() * 1000 / POINTS
    for below, interval in ROUND_INTERVAL:
        if raw < below:
            return interval
    return 604_800_000


def default_range(board: dict, now: datetime, time_from: str | None = None) -> tuple[datetime, datetime]:
    """The dashboard's default time range (`now-7d` to `now`), or from `time_from`, ending at `now`."""
    text = time_from or board["time"]["from"]
    assert board["time"]["to"] == "now" and text.startswith("now-"), board["time"]
    amount, unit = int(text[4:-1]), text[-1]
    return now - timedelta(seconds=amount * UNITS[unit]), now


def clickhouse_targets(panel: dict) -> list[tuple[str, str]]:
    targets = [t for t in panel.get("targets", []) if "rawSql" in t]
    if len(targets) == 1:
        return [(panel["title"], targets[0]["rawSql"])]
    return [(f"{panel['title']} [{t['refId']}]", t["rawSql"]) for t in targets]


def dashboard_queries(
    board: dict, point: bench_query.Endpoint, now: datetime, trace_id: str, time_from: str | None = None
) -> list[Query]:
    """The variable queries (in order, each expanded with the ones before it), then every panel's and annotation's
    SQL, expanded as Grafana sends them with every variable at All."""
    from tracehouse.collector import grafana_macros as gm

    start, end = default_range(board, now, time_from)
    ctx = gm.QueryContext(start, end, interval_ms=grafana_interval_ms(start, end))
    name = board["uid"].removeprefix("tracehouse-")
    found: dict[str, gm.Variable] = {}
    asked: list[Query] = []
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            sql = gm.expand(variable["query"]["rawSql"], found, ctx)
            asked.append(Query(name, f"${variable['name']}", sql))
            options = [line.split("\t")[0] for line in point.plain(sql).decode().splitlines()]
            found[variable["name"]] = gm.Variable(variable["name"], [gm.ALL], options)
        elif variable["type"] == "textbox":
            found[variable["name"]] = gm.Variable(variable["name"], trace_id if variable["name"] == "trace_id" else "")
    panels = [p for outer in board["panels"] for p in (outer, *outer.get("panels", []))]
    for panel in panels:
        for title, raw in clickhouse_targets(panel):
            asked.append(Query(name, title, gm.expand(raw, found, ctx)))
    for annotation in board.get("annotations", {}).get("list", []):
        raw = annotation.get("target", {}).get("rawSql")
        if raw:
            asked.append(Query(name, f"annotation: {annotation['name']}", gm.expand(raw, found, ctx)))
    return asked


def timed(call, rounds: int, requests: int) -> list[float]:
    started = time.perf_counter()
    call()
    if time.perf_counter() - started > 2:
        requests = 1
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        medians.append(statistics.median(times) * 1000)
    return medians


def run_panels(data_dir: Path, args: argparse.Namespace) -> None:
    from tracehouse.dashboards.build import DASHBOARDS

    log = (data_dir.parent / "bench-panels-collector.log").open("ab")
    info_file = data_dir / "collector.json"
    info_file.unlink(missing_ok=True)
    command = [sys.executable, *bench_query.SERVERS["tracehouse serve"], "--data-dir", str(data_dir)]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        point = bench_query.Endpoint(bench_query._wait_for(proc, info_file))
        for _ in range(20):  # a started server's first requests open its clients and read the catalogue
            point.plugin("SELECT 1")
        newest = point.plain("SELECT toUnixTimestamp(max(Timestamp)) FROM otel_traces").decode().strip()
        now = datetime.fromtimestamp(int(newest) + 1, UTC)
        trace_id = point.plain("SELECT TraceId FROM otel_traces ORDER BY Timestamp DESC LIMIT 1").decode().strip()
        print(f"time ranges end at the newest span, {now:%Y-%m-%d %H:%M:%S} UTC; trace_id {trace_id}")
        print(f"  {'dashboard':<17} {'panel':<46} {'median':>9} {'spread':>8} {'rows':>7}")
        slow = []
        for file_name, build in DASHBOARDS.items():
            board = build()
            if args.dashboard and args.dashboard not in (file_name, board["uid"].removeprefix("tracehouse-")):
                continue
            for query in dashboard_queries(board, point, now, trace_id, args.time_from):
                if args.panel and args.panel.lower() not in query.title.lower():
                    continue
                if args.show_sql:
                    print(query.sql)
                medians = timed(lambda s=query.sql: point.plugin(s), args.rounds, args.requests)
                rows = len(point.plain(query.sql).splitlines())
                best, spread = min(medians), max(medians) - min(medians)
                flag = "  SLOW" if best > SLOW_MS else ""
                print(f"  {query.dashboard:<17} {query.title[:46]:<46} {best:7.1f} ms {spread:6.1f} {rows:7d}{flag}")
                if flag:
                    slow.append(f"{query.dashboard}: {query.title}")
        print(f"{len(slow)} over {SLOW_MS:g} ms" + (": " + "; ".join(slow) if slow else ""))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# What users and reviewers said about some of the loaded calls (their ids, tenants and times from otel_traces).
USER_SCORES = """
INSERT INTO scores (Timestamp, TenantId, TraceId, SpanId, ScoreId, Name, Value, ValueType, Source, Author)
SELECT Timestamp + toIntervalSecond(30), TenantId, TraceId, SpanId, concat('s-', SpanId), 'user',
    cityHash64(SpanId, 'score') % 3 > 0, 'bool', 'user', UserId
FROM otel_traces WHERE LlmSpanKind = 'LLM' AND cityHash64(SpanId) % 50 = 0
"""
TRACE_SCORES = """
INSERT INTO scores (Timestamp, TenantId, TraceId, SpanId, ScoreId, Name, Value, ValueType, Source, Author)
SELECT Timestamp + toIntervalSecond(60), TenantId, TraceId, '', concat('t-', TraceId), 'user',
    cityHash64(TraceId, 'score') % 4 > 0, 'bool', 'user', UserId
FROM otel_traces WHERE ParentSpanId = '' AND cityHash64(TraceId) % 100 = 0
"""
REVIEWS = """
INSERT INTO reviews (Timestamp, TenantId, TraceId, SpanId, ReviewId, State, Reason, Reviewer)
SELECT Timestamp + toIntervalHour(1), TenantId, TraceId, SpanId, concat('r-', SpanId),
    ['approved', 'approved', 'flagged', 'rejected', 'pending'][1 + cityHash64(SpanId, 'review') % 5],
    'bench', 'reviewer-1'
FROM otel_traces WHERE LlmSpanKind = 'LLM' AND cityHash64(SpanId) % 200 = 7
"""
FEEDBACK = "bench-panels-feedback.json"


def add_feedback(data_dir: Path) -> None:
    """Scores and reviews for some of the loaded calls (run in a process of its own: chDB's one-process rule)."""
    from tracehouse.collector import store

    client = store.connect(bench_query._store_url(data_dir))
    started = time.perf_counter()
    for statement in (USER_SCORES, TRACE_SCORES, REVIEWS):
        client.command(statement)
    client.command("OPTIMIZE TABLE scores FINAL")
    client.command("OPTIMIZE TABLE reviews FINAL")
    scores = client.query("SELECT count() FROM scores").result_rows[0][0]
    reviews = client.query("SELECT count() FROM reviews").result_rows[0][0]
    client.close()
    info = {"scores": scores, "reviews": reviews, "seconds": round(time.perf_counter() - started, 1)}
    (data_dir / FEEDBACK).write_text(json.dumps(info))


def ensure_store(data_dir: Path, calls: int) -> dict:
    """bench_query's store of `calls` calls in `data_dir`, loaded (by bench_query.py's own load step) unless one
    of that size is there."""
    loaded = data_dir / bench_query.LOADED
    if not loaded.exists() or json.loads(loaded.read_text())["calls"] != calls:
        started = time.perf_counter()
        command = [sys.executable, "-m", "tracehouse.collector", "migrate", "--data-dir", str(data_dir)]
        subprocess.run(command, check=True, capture_output=True)
        print(f"store: migrated in {time.perf_counter() - started:.1f} s", end="; ")
        load = [sys.executable, bench_query.__file__, "--step", "load", "--data-dir", str(data_dir)]
        subprocess.run([*load, "--calls", str(calls)], check=True)
        (data_dir / FEEDBACK).unlink(missing_ok=True)
    if not (data_dir / FEEDBACK).exists():
        subprocess.run([sys.executable, __file__, "--step", "feedback", "--data-dir", str(data_dir)], check=True)
    return json.loads(loaded.read_text()) | {"feedback": json.loads((data_dir / FEEDBACK).read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000, help="LLM call spans plus their root spans")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, help="keep the store here (and reuse one loaded before)")
    parser.add_argument("--dashboard", help="only this dashboard (its file name or its uid without tracehouse-)")
    parser.add_argument("--panel", help="only panels whose title contains this")
    parser.add_argument("--time-from", help="every dashboard's range from this (now-24h) instead of its default")
    parser.add_argument("--show-sql", action="store_true", help="print each expanded query")
    parser.add_argument("--step", choices=("feedback",), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "feedback":
        return add_feedback(args.data_dir)
    per_trace = bench_query.CALLS_PER_TRACE
    calls = args.spans * per_trace // (per_trace + 1) // per_trace * per_trace
    with tempfile.TemporaryDirectory(prefix="bench-panels-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        info = ensure_store(data_dir, calls)
        print(
            f"{info['calls']:,} LLM calls ({info['spans']:,} spans) over {bench_query.DAYS} days loaded in"
            f" {info['seconds']} s, OPTIMIZE ... FINAL {info['merged']} s ({info['parts']} parts);"
            f" cpus {os.cpu_count()}, machine shared"
        )
        said = info["feedback"]
        print(f"{said['scores']:,} scores and {said['reviews']:,} reviews added in {said['seconds']} s")
        run_panels(data_dir, args)


if __name__ == "__main__":
    main()
