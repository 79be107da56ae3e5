"""LLM overview (llm-overview.json): calls, cost, tokens, errors, latency and users at a glance."""

from __future__ import annotations

from typing import Any

from .cost import daily_cost_by_feature
from .panels import LLM_VARIABLES, Layout, dashboard, stat, timeseries
from .queries import (
    CALLS_FILTERS,
    RAW_CALLS_IN_RANGE,
    TOTAL_COST,
    UNPRICED_CALLS,
    calls_per_interval,
    daily,
)


def overview() -> dict[str, Any]:
    g = Layout()
    g.row("Totals (daily rollup, whole days)")
    g.add(
        stat(
            "Calls",
            "LLM calls (every priced or unpriced model call)",
            daily("SELECT sum(calls) AS calls FROM DAILY"),
            "short",
        ),
        4,
        4,
    )
    g.add(
        stat("Cost", "Spend in USD; unpriced calls are not in it (see the Cost dashboard)", TOTAL_COST, "currencyUSD"),
        4,
        4,
    )
    g.add(
        stat(
            "Tokens",
            "Input tokens (cached ones included) and output tokens (reasoning included)",
            daily("SELECT sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens FROM DAILY"),
            "short",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Error rate",
            "Share of calls whose span ended with status Error",
            daily("SELECT sum(errors) / greatest(sum(calls), 1) AS error_rate FROM DAILY"),
            "percentunit",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Unpriced calls",
            "Calls of models without a price: their cost is unknown (NULL), never counted as 0",
            UNPRICED_CALLS,
            "short",
        ),
        3,
        4,
    )
    g.add(
        stat(
            "Active users",
            "Distinct users with at least one LLM call in the time range",
            f"""
            SELECT uniqExact(user_id) AS active_users
            FROM llm_calls
            WHERE $__timeFilter(ts) AND user_id != ''{CALLS_FILTERS}
            """,
            "short",
        ),
        4,
        4,
    )
    g.row("Latency (spans, exact time range)")
    g.add(
        stat(
            "Latency p50 / p95 / p99",
            "Duration of the LLM call spans, in milliseconds",
            # One quantile state for the three (the same sampler as quantile(level) each), over the spans of
            # the calls (llm_calls' latency_ms_total is Duration / 1e6): issue 19's <= 10 ms over 24 h.
            f"""
            WITH quantiles(0.5, 0.95, 0.99)(Duration / 1e6) AS q
            SELECT q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms
            FROM otel_traces
            WHERE {RAW_CALLS_IN_RANGE}
            """,
            "ms",
        ),
        12,
        4,
    )
    g.add(
        stat(
            "Time to first token p50 / p95",
            "Streaming calls only: time from the request to the first token",
            f"""
            WITH quantiles(0.5, 0.95)(TimeToFirstToken / 1e6) AS q
            SELECT q[1] AS ttft_p50_ms, q[2] AS ttft_p95_ms
            FROM otel_traces
            WHERE TimeToFirstToken IS NOT NULL AND {RAW_CALLS_IN_RANGE}
            """,
            "ms",
        ),
        12,
        4,
    )
    g.row("Over time")
    g.add(
        timeseries(
            "Calls by model",
            "LLM calls per interval, one series per model",
            calls_per_interval("model, count() AS calls", group_by="time, model"),
            "short",
            series_label="model",
            stacked=True,
        ),
        12,
        8,
    )
    g.add(
        daily_cost_by_feature(
            "Cost by feature per day", "Daily spend in USD by tracehouse.feature (from the daily rollup)"
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Tokens by model per day",
            "Input plus output tokens per day by model (from the daily rollup)",
            daily(
                """
                SELECT toDateTime(day) AS time, model, sum(input_tokens + output_tokens) AS tokens
                FROM DAILY
                GROUP BY time, model
                ORDER BY time
                """
            ),
            "short",
            series_label="model",
            stacked=True,
            bars=True,
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "Error rate over time",
            "Share of LLM calls that failed, per interval",
            calls_per_interval("countIf(status = 'Error') / count() AS error_rate"),
            "percentunit",
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "p95 latency by model",
            "95th percentile of call duration per interval, in milliseconds",
            calls_per_interval("model, quantile(0.95)(latency_ms_total) AS p95_ms", group_by="time, model"),
            "ms",
            series_label="model",
        ),
        8,
        8,
    )
    return dashboard(
        "tracehouse-overview",
        "tracehouse / LLM overview",
        "Calls, cost, tokens, errors, latency and users of the LLM calls tracehouse collected.",
        g,
        LLM_VARIABLES,
    )
