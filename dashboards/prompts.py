"""Prompts (prompts.json): prompt templates and their versions compared by calls, errors, refusals,
latency, tokens and cost; the registry's versions of one prompt side by side (with user feedback), and
each version's first appearance as an annotation on the time series."""

from __future__ import annotations

from typing import Any

from .panels import (
    CLICKHOUSE,
    FORMAT_TABLE,
    LLM_VARIABLES,
    Layout,
    dashboard,
    query_variable,
    table,
    target,
    timeseries,
)
from .queries import CALLS_COLUMNS, CALLS_FILTERS, calls_per_interval, cond, where

PROMPT_LABEL = "concat(prompt_name, ' ', if(prompt_version = '', '(no version)', prompt_version)) AS prompt"
# The calls of a prompt template in the time range, with the LLM filters and the prompt variable.
PROMPT_CALLS = f"$__timeFilter(ts) AND prompt_name != ''{CALLS_FILTERS}\n  AND {cond('prompt', 'prompt_name')}"


def prompts() -> dict[str, Any]:
    g = Layout()
    g.add(
        table(
            "Prompt versions",
            "Calls, errors, refusals, latency, tokens and cost per prompt template and version",
            f"""
            SELECT prompt_name, prompt_version,
              count() AS calls,
              countIf(status = 'Error') AS errors,
              errors / calls AS error_rate,
              countIf(finish_reason = 'content_filter') / calls AS refusal_rate,
              quantile(0.5)(latency_ms_total) AS p50_ms,
              quantile(0.95)(latency_ms_total) AS p95_ms,
              avg(prompt_tokens) AS avg_prompt_tokens,
              avg(completion_tokens) AS avg_completion_tokens,
              toFloat64(avg(cost_usd)) AS avg_cost_usd,
              toFloat64(sum(cost_usd)) AS total_cost_usd,
              min(ts) AS first_seen,
              max(ts) AS last_seen
            FROM llm_calls
            WHERE {PROMPT_CALLS}
            GROUP BY prompt_name, prompt_version
            ORDER BY prompt_name, prompt_version
            """,
            units={
                "error_rate": "percentunit",
                "refusal_rate": "percentunit",
                "p50_ms": "ms",
                "p95_ms": "ms",
                "avg_cost_usd": "currencyUSD",
                "total_cost_usd": "currencyUSD",
            },
        ),
        24,
        9,
    )
    g.add(
        table(
            "Version comparison",
            "The registry's versions of the chosen prompt side by side (v1, v2, ... by first appearance, "
            "tracehouse prompts list): calls, cost per call, latency, error and refusal rates, mean user feedback",
            f"""
            SELECT prompt_name, prompt_version_number, prompt_version,
              count() AS calls,
              toFloat64(avg(cost_usd)) AS cost_per_call_usd,
              quantile(0.5)(latency_ms_total) AS p50_ms,
              quantile(0.95)(latency_ms_total) AS p95_ms,
              countIf(status = 'Error') / calls AS error_rate,
              countIf(finish_reason = 'content_filter') / calls AS refusal_rate,
              avg(user_feedback) AS mean_user_feedback,
              countIf(user_feedback IS NOT NULL) AS rated,
              min(ts) AS first_call
            FROM llm_calls_scored
            WHERE {PROMPT_CALLS}
            GROUP BY prompt_name, prompt_version_number, prompt_version
            ORDER BY prompt_name, prompt_version_number, prompt_version
            """,
            units={
                "cost_per_call_usd": "currencyUSD",
                "p50_ms": "ms",
                "p95_ms": "ms",
                "error_rate": "percentunit",
                "refusal_rate": "percentunit",
            },
        ),
        24,
        8,
    )
    # One series per prompt version: (title, description, value column, unit).
    by_version = (
        ("Calls by prompt version", "Calls per interval", "count() AS calls", "short"),
        (
            "Error rate by prompt version",
            "Share of failed calls per interval",
            "countIf(status = 'Error') / count() AS error_rate",
            "percentunit",
        ),
        (
            "p95 latency by prompt version",
            "95th percentile of call duration per interval",
            "quantile(0.95)(latency_ms_total) AS p95_ms",
            "ms",
        ),
        (
            "Cost per call by prompt version",
            "Average cost of a priced call per interval",
            "toFloat64(avg(cost_usd)) AS avg_cost_usd",
            "currencyUSD",
        ),
    )
    for title, description, value, unit in by_version:
        query = calls_per_interval(f"{PROMPT_LABEL}, {value}", "time, prompt", PROMPT_CALLS)
        g.add(timeseries(title, description, query, unit, series_label="prompt"), 12, 8)
    prompt = query_variable(
        "prompt",
        "Prompt",
        "SELECT DISTINCT prompt_name FROM llm_calls\n"
        f"WHERE $__timeFilter(ts) AND prompt_name != ''{where(CALLS_COLUMNS, ('service', 'feature'))}\n"
        "ORDER BY prompt_name",
        "Prompt template name",
    )
    built = dashboard(
        "tracehouse-prompts",
        "tracehouse / Prompts",
        "Compare prompt templates and their versions: calls, errors, refusals, latency, tokens and cost.",
        g,
        [*LLM_VARIABLES, prompt],
    )
    built["annotations"]["list"].append(FIRST_APPEARANCE)
    return built


# A version's first appearance (prompt_versions.first_seen: its sync or its first call, whichever came first)
# marked on every time series of the dashboard, for the chosen prompts.
FIRST_APPEARANCE: dict[str, Any] = {
    "name": "Prompt versions",
    "datasource": CLICKHOUSE,
    "enable": True,
    "hide": False,
    "iconColor": "rgba(255, 152, 48, 1)",
    "target": target(
        f"""
        SELECT first_seen AS time,
          concat(name, ' v', toString(version_number), ' (', version, ', ', source, ')') AS text,
          name AS tags
        FROM prompt_versions
        WHERE $__timeFilter(first_seen) AND {cond("prompt", "name")}
        ORDER BY time
        """,
        FORMAT_TABLE,
        "Annotations",
    ),
}
