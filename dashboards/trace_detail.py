"""Trace detail (trace-detail.json): one trace, its spans in the plugin's trace view, and each LLM
call's prompt, response, tokens and cost. The trace tables of the other dashboards link here."""

from __future__ import annotations

from typing import Any

from .panels import (
    CLICKHOUSE_VARIABLE,
    FORMAT_TRACE,
    TRACE_DETAIL_UID,
    Layout,
    dashboard,
    panel,
    stat,
    table,
    target,
    textbox_variable,
)
from .queries import trace_spans, trace_window

SELECTED_TRACE = "${trace_id:singlequote}"


def trace_detail() -> dict[str, Any]:
    g = Layout()
    g.add(
        stat(
            "Trace",
            "Duration, spans, LLM calls, tokens and cost of this trace",
            f"""
            SELECT duration_ms, span_count, llm_call_count, total_tokens, toFloat64(cost_usd) AS cost_usd,
              toUInt8(has_error) AS errors
            FROM traces
            WHERE trace_id = {SELECTED_TRACE}
            """,
            "short",
            units={"duration_ms": "ms", "cost_usd": "currencyUSD"},
        ),
        24,
        4,
    )
    g.add(
        panel(
            "traces",
            "Spans",
            "The trace view of the plugin: every span with its attributes; LLM spans carry llm.* tags",
            [target(trace_spans(SELECTED_TRACE), FORMAT_TRACE)],
            fieldConfig={"defaults": {}, "overrides": []},
            options={},
        ),
        24,
        12,
    )
    g.add(
        table(
            "LLM calls: prompt, response, tokens and cost",
            "Each LLM call of the trace in order. Click a cell to inspect the full prompt or response "
            "(content may be redacted or not sampled).",
            f"""
            {trace_window(SELECTED_TRACE)}
            SELECT ts, span_name, provider, model, prompt_name, prompt_version,
              prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
              toFloat64(cost_usd) AS cost_usd, cost_source, latency_ms_total, latency_ms_first_token,
              finish_reason, error, system_prompt, messages AS prompt, response, tool_calls
            FROM llm_calls
            WHERE trace_id = selected_trace AND ts >= trace_start AND ts <= trace_end
            ORDER BY ts
            """,
            units={"cost_usd": "currencyUSD", "latency_ms_total": "ms", "latency_ms_first_token": "ms"},
            json_columns=("prompt", "response", "tool_calls"),
        ),
        24,
        14,
    )
    variables = [
        CLICKHOUSE_VARIABLE,
        textbox_variable("trace_id", "Trace id", "32 hex digits; the trace tables link here"),
    ]
    return dashboard(
        TRACE_DETAIL_UID,
        "tracehouse / Trace detail",
        "One trace: its spans in the trace view, and each LLM call's prompt, response, tokens and cost.",
        g,
        variables,
        time_from="now-24h",
    )
