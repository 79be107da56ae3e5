"""Traces (traces.json): the recent traces with their duration, spans, tokens, cost and errors, each
linked to the trace detail and to the trace view."""

from __future__ import annotations

from typing import Any

from .panels import (
    CLICKHOUSE_VARIABLE,
    FEATURE,
    MODEL_VARIABLE,
    PROVIDER,
    SERVICE_ANY,
    USER,
    Layout,
    dashboard,
    table,
    textbox_variable,
    timeseries,
    trace_links,
)
from .queries import CALLS_COLUMNS, FILTERS, where


def traces() -> dict[str, Any]:
    g = Layout()
    g.add(
        timeseries(
            "Traces",
            "Traces started per interval (from the otel_traces_trace_id_ts lookup)",
            """
            SELECT $__timeInterval(trace_start) AS time, count() AS traces
            FROM (
              SELECT TraceId, min(Start) AS trace_start
              FROM otel_traces_trace_id_ts
              WHERE $__timeFilter(Start)
              GROUP BY TraceId
            )
            GROUP BY time
            ORDER BY time
            """,
            "short",
            bars=True,
        ),
        24,
        6,
    )
    # The traces view has a row per trace (its root's service, its first user and feature): provider and
    # model filter through the trace's calls instead, keeping the traces with at least one such call.
    in_range = "trace_id IN (SELECT TraceId FROM otel_traces_trace_id_ts WHERE $__timeFilter(Start))"
    by_trace = where(CALLS_COLUMNS, ("service", "feature", "user"))
    by_call = "".join(
        f"\n  AND $__conditionalAll(trace_id IN (SELECT trace_id FROM llm_calls WHERE $__timeFilter(ts)"
        f" AND {var} IN (${{{var}:singlequote}})), ${var})"
        for var in ("provider", "model")
    )
    search = (
        "\n  AND $__conditionalAll(positionCaseInsensitive(root_name, ${search:singlequote}) > 0"
        " OR trace_id = ${search:singlequote}, $search)"
    )
    # With every filter at All (the default), only the newest traces can be among the 200 shown: the lookup
    # names them (a trace starts at the least Start of its lookup rows; WITH TIES keeps those that start in the
    # same second as the 200th, whose order the spans' nanoseconds decide), and the traces view then reads
    # their spans alone instead of every trace of the range: 10M spans, 6 h: 230 -> 110 ms
    # (bench/bench_panels.py). A filter may drop some of them, so with one set it reads the whole range.
    newest = (
        "\n  AND (trace_id IN (SELECT TraceId FROM otel_traces_trace_id_ts"
        " WHERE TraceId IN (SELECT TraceId FROM otel_traces_trace_id_ts WHERE $__timeFilter(Start))"
        " GROUP BY TraceId ORDER BY min(Start) DESC LIMIT 200 WITH TIES)"
        "\n    OR NOT (" + " AND ".join(f"$__conditionalAll(0, ${var})" for var in (*FILTERS, "search")) + "))"
    )
    g.add(
        table(
            "Recent traces",
            "The 200 most recent traces. Search matches the root span name or a trace id. "
            "Click a trace id for its prompts, responses, tokens and cost, or for the trace view.",
            f"""
            SELECT start, trace_id, root_name, service, duration_ms, span_count, llm_call_count, total_tokens,
              toFloat64(cost_usd) AS cost_usd, unpriced_calls, has_error, user_id, feature
            FROM traces
            WHERE {in_range}{by_trace}{by_call}{search}{newest}
            ORDER BY start DESC
            LIMIT 200
            """,
            units={"duration_ms": "ms", "cost_usd": "currencyUSD"},
            links={"trace_id": trace_links()},
        ),
        24,
        16,
    )
    variables = [
        CLICKHOUSE_VARIABLE,
        SERVICE_ANY,
        FEATURE,
        PROVIDER,
        MODEL_VARIABLE,
        USER,
        textbox_variable("search", "Search", "Part of a root span name, or a whole trace id"),
    ]
    return dashboard(
        "tracehouse-traces",
        "tracehouse / Traces",
        "Recent traces with their duration, spans, tokens, cost and errors; links to each trace.",
        g,
        variables,
        time_from="now-6h",
    )
