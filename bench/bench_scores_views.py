"""What the score joins cost: llm_calls_scored and traces_scored against llm_calls and traces, on 1M LLM calls.

A chDB store gets 1M synthetic LLM calls (4 per trace, 250k traces, 3 tenants, 10 features, 30 days) plus a
CHAIN root span per trace, and ~100k scores: user thumbs on calls, user ratings of whole traces, evaluator
scores on calls, and scores of spans that never arrive. Each query runs against the scored views and
against the plain ones (NULL where it reads a score), median of a few runs:

- `SELECT count(), avg(user_feedback) FROM llm_calls_scored` (and `count()` alone);
- a typical per-feature query over the last 7 days (calls, cost, p95 latency, mean user feedback);
- the same over `traces`.

    .venv/bin/python bench/bench_scores_views.py [--calls 1000000] [--scores 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tracehouse.collector import store

CALLS_PER_TRACE = 4
RUNS = 5

SPANS = """
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration,
    StatusCode, LlmSpanKind, LlmProvider, LlmRequestModel, TenantId, Feature, InputTokens, OutputTokens, CostUsd,
    CostSource)
SELECT
    now64(9) - toIntervalSecond(intDiv(number, {per_trace}) % (30 * 86400)),
    leftPad(lower(hex(intDiv(number, {per_trace}) + 1)), 32, '0'),
    leftPad(lower(hex(number + 1)), 16, '0'),
    leftPad(lower(hex(1000000000 + intDiv(number, {per_trace}))), 16, '0'),
    'chat gpt-4o-mini', 'Client', 'bench-app', 200000000 + number % 3000000000,
    if(number % 50 = 0, 'Error', 'Unset'), 'LLM', 'openai', 'gpt-4o-mini',
    concat('tenant-', toString(intDiv(number, {per_trace}) % 3)),
    concat('feature-', toString(intDiv(number, {per_trace}) % 10)),
    500 + number % 1000, 50 + number % 300, toDecimal128((500 + number % 1000) * 0.00000015, 12), 'catalogue'
FROM numbers({calls})
"""
ROOTS = """
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration,
    StatusCode, LlmSpanKind, TenantId, Feature)
SELECT
    now64(9) - toIntervalSecond(number % (30 * 86400)),
    leftPad(lower(hex(number + 1)), 32, '0'),
    leftPad(lower(hex(1000000000 + number)), 16, '0'),
    '', 'answer', 'Internal', 'bench-app', 3000000000, 'Unset', 'CHAIN',
    concat('tenant-', toString(number % 3)), concat('feature-', toString(number % 10))
FROM numbers({traces})
"""
# `call` picks a call (spread over all of them), `trace` its trace; the tenant is the trace's.
SCORES = """
INSERT INTO scores (Timestamp, TenantId, TraceId, SpanId, ScoreId, Name, Value, ValueType, Source)
SELECT
    now64(9) - toIntervalSecond(number % 86400),
    concat('tenant-', toString(intDiv(call, {per_trace}) % 3)),
    leftPad(lower(hex(intDiv(call, {per_trace}) + 1)), 32, '0'),
    {span},
    lower(hex(MD5(concat('{kind}', toString(number))))),
    '{name}', {value}, '{value_type}', '{source}'
FROM (SELECT number, (number * 7919 + {offset}) % {calls} AS call FROM numbers({count}))
"""
CALL_SPAN = "leftPad(lower(hex(call + 1)), 16, '0')"
# name, source, share of the scores, span, value, value type
KINDS = (
    ("thumbs", "user", 0.6, CALL_SPAN, "toFloat64(number % 3 != 0)", "bool"),
    ("rating", "user", 0.2, "''", "toFloat64(1 + number % 5)", "number"),
    ("faithfulness", "eval", 0.15, CALL_SPAN, "(number % 100) / 100", "number"),
    # spans that never land: kept, joined by nothing
    ("thumbs", "user", 0.05, "leftPad(lower(hex(5000000000 + number)), 16, '0')", "1", "bool"),
)

QUERIES = {
    "llm_calls count()": "SELECT count() FROM {llm_calls}",
    "llm_calls count(), avg(user_feedback)": "SELECT count(), avg(user_feedback) FROM {llm_calls}",
    "llm_calls per feature, 7 days": (
        "SELECT feature, count() AS calls, sum(cost_usd) AS cost, quantile(0.95)(latency_ms_total) AS p95,"
        " avg(user_feedback) AS feedback, countIf(user_feedback IS NOT NULL) / count() AS feedback_rate"
        " FROM {llm_calls} WHERE ts > now() - INTERVAL 7 DAY GROUP BY feature ORDER BY feature"
    ),
    "llm_calls per feature, 7 days, no score column": (
        "SELECT feature, count() AS calls, sum(cost_usd) AS cost, quantile(0.95)(latency_ms_total) AS p95"
        " FROM {llm_calls} WHERE ts > now() - INTERVAL 7 DAY GROUP BY feature ORDER BY feature"
    ),
    "traces count(), avg(user_feedback)": "SELECT count(), avg(user_feedback) FROM {traces}",
    "traces per feature, 7 days": (
        "SELECT feature, count(), avg(cost_usd), avg(user_feedback) FROM {traces}"
        " WHERE start > now() - INTERVAL 7 DAY GROUP BY feature ORDER BY feature"
    ),
}


def timed(client, sql: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        client.query(sql)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--scores", type=int, default=100_000)
    args = parser.parse_args()
    traces = args.calls // CALLS_PER_TRACE
    with tempfile.TemporaryDirectory(prefix="bench-scores-") as tmp:
        client = store.connect(f"chdb://{Path(tmp) / 'store'}")
        store.migrate(client)
        started = time.perf_counter()
        client.command(SPANS.format(per_trace=CALLS_PER_TRACE, calls=args.calls))
        client.command(ROOTS.format(traces=traces))
        for offset, (name, source, share, span, value, value_type) in enumerate(KINDS):
            sql = SCORES.format(
                per_trace=CALLS_PER_TRACE,
                calls=args.calls,
                count=int(args.scores * share),
                offset=offset * 104729,
                kind=f"{name}-{source}-{offset}",
                name=name,
                source=source,
                span=span,
                value=value,
                value_type=value_type,
            )
            client.command(sql)
        client.command("OPTIMIZE TABLE otel_traces FINAL")
        client.command("OPTIMIZE TABLE scores FINAL")
        loaded = time.perf_counter() - started
        spans = client.query("SELECT count() FROM otel_traces").result_rows[0][0]
        scores = client.query("SELECT count() FROM scores").result_rows[0][0]
        calls, feedback = client.query("SELECT count(), avg(user_feedback) FROM llm_calls_scored").result_rows[0]
        rated = "SELECT countIf(user_feedback IS NOT NULL) FROM llm_calls_scored"
        with_feedback = client.query(rated).result_rows[0][0]
        print(f"store: {spans} spans ({calls} LLM calls, {traces} traces), {scores} scores; loaded in {loaded:.1f}s")
        print(f"calls with user_feedback: {with_feedback} (mean {feedback:.3f})")
        print(f"{'query':<50} {'with scores':>12} {'without':>10} {'ratio':>7}")
        for label, template in QUERIES.items():
            with_joins = timed(client, template.format(llm_calls="llm_calls_scored", traces="traces_scored"))
            # The plain views, with NULL where the query reads a score: what a query pays without the join.
            plain = template.replace("user_feedback", "NULL") if "user_feedback" in template else template
            without = timed(client, plain.format(llm_calls="llm_calls", traces="traces"))
            print(f"{label:<50} {with_joins * 1000:>10.0f}ms {without * 1000:>8.0f}ms {with_joins / without:>6.2f}x")
        client.close()


if __name__ == "__main__":
    main()
