"""Latency and quality (latency-quality.json): what is slow, what fails, what the models refuse, and the
calls to look at first."""

from __future__ import annotations

from typing import Any

from .panels import LLM_VARIABLES, Layout, barchart, dashboard, piechart, stat, table, timeseries, trace_links
from .queries import (
    CALLS_IN_RANGE,
    ERROR_KIND,
    FAILED_CALLS,
    FEATURE_NAME,
    STREAMED_CALLS,
    calls_per_interval,
    over_calls,
)


def _latency_by(title: str, description: str, labels: str, group_by: str) -> dict[str, Any]:
    """A table of call duration and time-to-first-token percentiles, one row per `group_by`."""
    return table(
        title,
        description,
        f"""
        SELECT {labels},
          count() AS calls,
          quantile(0.5)(latency_ms_total) AS p50_ms,
          quantile(0.95)(latency_ms_total) AS p95_ms,
          quantile(0.99)(latency_ms_total) AS p99_ms,
          quantile(0.5)(latency_ms_first_token) AS ttft_p50_ms
        FROM llm_calls
        WHERE {CALLS_IN_RANGE}
        GROUP BY {group_by}
        ORDER BY p95_ms DESC
        """,
        units={name: "ms" for name in ("p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms")},
    )


def _outliers(title: str, description: str, order_by: str) -> dict[str, Any]:
    """The first 20 calls by `order_by`, each linked to its trace."""
    return table(
        title,
        description,
        f"""
        SELECT ts, trace_id, id AS span_id, service, feature, provider, model, user_id,
          latency_ms_total, latency_ms_first_token, prompt_tokens, completion_tokens,
          toFloat64(cost_usd) AS cost_usd, finish_reason, error
        FROM llm_calls
        WHERE {CALLS_IN_RANGE}
        ORDER BY {order_by}
        LIMIT 20
        """,
        units={"latency_ms_total": "ms", "latency_ms_first_token": "ms", "cost_usd": "currencyUSD"},
        links={"trace_id": trace_links()},
    )


def quality() -> dict[str, Any]:
    g = Layout()
    g.row("Now")
    g.add(
        stat(
            "Error rate",
            "Share of LLM calls whose span ended with status Error",
            over_calls("countIf(status = 'Error') / greatest(count(), 1) AS error_rate"),
            "percentunit",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Refusal rate",
            "Share of calls the model or its provider refused (finish reason content_filter)",
            over_calls("countIf(finish_reason = 'content_filter') / greatest(count(), 1) AS refusal_rate"),
            "percentunit",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Latency p95",
            "95th percentile of call duration",
            over_calls("quantile(0.95)(latency_ms_total) AS p95_ms"),
            "ms",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Time to first token p95",
            "95th percentile of the time to the first streamed token",
            over_calls("quantile(0.95)(latency_ms_first_token) AS ttft_p95_ms", STREAMED_CALLS),
            "ms",
        ),
        6,
        4,
    )
    g.row("Latency")
    g.add(
        _latency_by(
            "Latency by feature",
            "Percentiles of call duration and time to first token, by feature",
            FEATURE_NAME,
            "feature_name",
        ),
        12,
        8,
    )
    g.add(
        _latency_by(
            "Latency by model",
            "Percentiles of call duration and time to first token, by provider and model",
            "provider, model",
            "provider, model",
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "p95 latency by feature",
            "95th percentile of call duration per interval, by feature",
            calls_per_interval(f"{FEATURE_NAME},\n  quantile(0.95)(latency_ms_total) AS p95_ms", "time, feature_name"),
            "ms",
            series_label="feature_name",
        ),
        24,
        8,
    )
    g.row("Errors and refusals")
    g.add(
        barchart(
            "Errors by type",
            "Failed calls by error type (the exception type, error.type, or 'error' when only the status says so)",
            f"""
            SELECT {ERROR_KIND}, count() AS errors
            FROM llm_calls
            WHERE {FAILED_CALLS}
            GROUP BY error_kind
            ORDER BY errors DESC
            LIMIT 20
            """,
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "Errors over time by type",
            "Failed calls per interval by error type",
            calls_per_interval(f"{ERROR_KIND},\n  count() AS errors", "time, error_kind", FAILED_CALLS),
            "short",
            series_label="error_kind",
            stacked=True,
            bars=True,
        ),
        8,
        8,
    )
    g.add(
        piechart(
            "Finish reasons",
            "Why calls ended: stop, length (max tokens), tool_call, content_filter (refusal), error",
            f"""
            SELECT if(finish_reason = '', '(none)', finish_reason) AS reason, count() AS calls
            FROM llm_calls
            WHERE {CALLS_IN_RANGE}
            GROUP BY reason
            ORDER BY calls DESC
            """,
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "Refusal rate over time",
            "Share of calls per interval that ended with finish reason content_filter",
            f"""
            SELECT $__timeInterval(ts) AS time,
              countIf(finish_reason = 'content_filter') / count() AS refusal_rate
            FROM llm_calls
            WHERE {CALLS_IN_RANGE}
            GROUP BY time
            ORDER BY time
            """,
            "percentunit",
        ),
        24,
        7,
    )
    g.row("Outliers (click a trace id)")
    g.add(
        _outliers(
            "Slowest calls",
            "The 20 slowest calls; the trace id links to the trace detail and to the trace view",
            "latency_ms_total DESC",
        ),
        24,
        9,
    )
    g.add(
        _outliers(
            "Most expensive calls",
            "The 20 most expensive calls; the trace id links to the trace detail and to the trace view",
            "cost_usd DESC NULLS LAST",
        ),
        24,
        9,
    )
    return dashboard(
        "tracehouse-quality",
        "tracehouse / Latency and quality",
        "What is slow, what fails, what the models refuse, and the calls to look at first.",
        g,
        LLM_VARIABLES,
        time_from="now-24h",
    )
