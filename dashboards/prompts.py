"""Prompts (prompts.json): prompt templates and their versions compared by calls, errors, refusals,
latency, tokens and cost."""

from __future__ import annotations

from typing import Any

from .panels import LLM_VARIABLES, Layout, dashboard, query_variable, table, timeseries
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
    return dashboard(
        "tracehouse-prompts",
        "tracehouse / Prompts",
        "Compare prompt templates and their versions: calls, errors, refusals, latency, tokens and cost.",
        g,
        [*LLM_VARIABLES, prompt],
    )
