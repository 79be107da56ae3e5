"""Builds the Grafana dashboards in this folder; `python dashboards/build.py` rewrites the JSON files.

The JSON files are what Grafana loads (provisioned by deploy/, or imported by hand); this script keeps
what they share consistent: panel ids and grid positions, the datasource variables, the service /
feature / provider / model / user filters, units, and the trace links. Edit here, run it, commit both;
tests/test_dashboards.py fails when the JSON and this script disagree.

Conventions every query follows (tests/test_dashboards.py checks them):
- The ClickHouse data source plugin (grafana-clickhouse-datasource) through the `${datasource}` variable;
  the collector's own Prometheus metrics through `${prometheus}`.
- The time picker reaches every query through the plugin's macros ($__timeFilter, $__dateFilter,
  $__timeInterval, $__fromTime, ...); filters through `$__conditionalAll(col IN (${var:singlequote}), $var)`,
  so "All" costs nothing.
- Macro arguments are plain column names, and a macro without arguments ($__fromTime, $__interval_s)
  is followed by `)` before any `(`: every macro engine the plugin has shipped expands that the same way.
- Panels that add up calls, tokens and cost read the daily rollup `llm_daily` (a few rows per day, so a
  year is as fast as a day) over whole days. The rollup has no user column: when a user is selected the
  same panel reads the raw spans instead (see DAILY below). Percentiles, users, prompts and single calls
  need the spans and read them over the exact time range.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}
PLUGIN_VERSION = "4.8.2"
TAGS = ["tracehouse", "llm"]

FORMAT_TIME_SERIES, FORMAT_TABLE, FORMAT_TRACE = 0, 1, 3
QUERY_TYPES = {FORMAT_TIME_SERIES: "timeSeries", FORMAT_TABLE: "table", FORMAT_TRACE: "traces"}

# The model of a call: the one that answered, else the one requested (as llm_calls and llm_daily say).
MODEL = "if(LlmResponseModel != '', LlmResponseModel, LlmRequestModel)"

# Column each filter variable applies to, per source.
CALLS_COLUMNS = {
    "service": "service",
    "feature": "feature",
    "provider": "provider",
    "model": "model",
    "user": "user_id",
}
RAW_COLUMNS = {
    "service": "ServiceName",
    "feature": "Feature",
    "provider": "LlmProvider",
    "model": MODEL,
    "user": "UserId",
}
ROLLUP_COLUMNS = {"service": "service", "feature": "feature", "provider": "provider", "model": "model"}
FILTERS = ("service", "feature", "provider", "model", "user")


def sql(text: str) -> str:
    """Strip the indentation of the first line from every line that has it: lines spliced in from the
    shared filters carry their own (smaller) indentation and keep it."""
    lines = text.strip("\n").split("\n")
    base = len(lines[0]) - len(lines[0].lstrip(" "))
    return "\n".join(line[base:] if line.startswith(" " * base) else line for line in lines).rstrip()


def indent(text: str, spaces: int) -> str:
    return textwrap.indent(text, " " * spaces)


def cond(var: str, column: str) -> str:
    """A filter that disappears (1=1) when the variable is All or empty."""
    return f"$__conditionalAll({column} IN (${{{var}:singlequote}}), ${var})"


def where(columns: dict[str, str], only: tuple[str, ...] = FILTERS) -> str:
    """The `AND ...` lines for the filter variables this source has a column for."""
    return "".join(f"\n  AND {cond(var, columns[var])}" for var in only if var in columns)


CALLS_FILTERS = where(CALLS_COLUMNS)
RAW_FILTERS = where(RAW_COLUMNS)

# One row per (day, service, feature, provider, model) with the rollup's sums: from llm_daily over whole
# days, or, when a user is selected ($__conditionalAll(0, $user) is 0), from the spans of that user with
# the rollup's own definition of a call (CostSource != '': the spans the pricing stage priced or tried to).
ROLLUP_SUMS = (
    "calls",
    "errors",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "cost_usd",
    "input_cost_usd",
    "cache_read_cost_usd",
    "cache_write_cost_usd",
    "output_cost_usd",
    "reasoning_cost_usd",
    "audio_cost_usd",
)
RAW_SUMS = {
    "calls": "count()",
    "errors": "countIf(StatusCode = 'Error')",
    "unpriced_calls": "countIf(CostSource = 'unknown')",
    "input_tokens": "sum(ifNull(InputTokens, 0))",
    "output_tokens": "sum(ifNull(OutputTokens, 0))",
    "cache_read_tokens": "sum(ifNull(CacheReadTokens, 0))",
    "cache_write_tokens": "sum(ifNull(CacheWriteTokens, 0))",
    "reasoning_tokens": "sum(ifNull(ReasoningTokens, 0))",
    "input_audio_tokens": "sum(ifNull(InputAudioTokens, 0))",
    "cost_usd": "sum(ifNull(CostUsd, 0))",
    "input_cost_usd": "sum(ifNull(InputCostUsd, 0))",
    "cache_read_cost_usd": "sum(ifNull(CacheReadCostUsd, 0))",
    "cache_write_cost_usd": "sum(ifNull(CacheWriteCostUsd, 0))",
    "output_cost_usd": "sum(ifNull(OutputCostUsd, 0))",
    "reasoning_cost_usd": "sum(ifNull(ReasoningCostUsd, 0))",
    "audio_cost_usd": "sum(ifNull(AudioCostUsd, 0))",
}


def daily_source(sums: tuple[str, ...] = ROLLUP_SUMS) -> str:
    """The daily rows with only the sums a panel uses."""
    rollup = ",\n".join(f"  sum({name}) AS {name}" for name in sums)
    raw = ",\n".join(f"  {RAW_SUMS[name]} AS {name}" for name in sums)
    return (
        "-- llm_daily over whole days; the spans of the selected users when a user is selected\n"
        "SELECT day, service, feature, provider, model,\n"
        f"{rollup}\n"
        "FROM llm_daily\n"
        "WHERE $__dateFilter(day)"
        f"{where(ROLLUP_COLUMNS)}\n"
        "  AND $__conditionalAll(0, $user)\n"
        "GROUP BY day, service, feature, provider, model\n"
        "UNION ALL\n"
        "SELECT toDate(Timestamp) AS day, ServiceName AS service, Feature AS feature, LlmProvider AS provider,\n"
        f"  {MODEL} AS model,\n"
        f"{raw}\n"
        "FROM otel_traces\n"
        "WHERE toDate(Timestamp) >= toDate($__fromTime) AND toDate(Timestamp) <= toDate($__toTime)\n"
        "  AND CostSource != ''"
        f"{RAW_FILTERS}\n"
        "  AND NOT ($__conditionalAll(0, $user))\n"
        "GROUP BY day, service, feature, provider, model"
    )


def daily(select: str) -> str:
    """A query over the daily rows: `select` reads `FROM DAILY`, which becomes the rollup-or-spans
    subquery with the sums the select names."""
    head, _, tail = sql(select).partition("FROM DAILY")
    used = tuple(name for name in ROLLUP_SUMS if re.search(rf"\b{name}\b", head + tail))
    return f"{head}FROM (\n{indent(daily_source(used or ('calls',)), 2)}\n){tail}"


# --- variables --------------------------------------------------------------------------------------


def datasource_variable(name: str, plugin: str, label: str) -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": name,
        "label": label,
        "query": plugin,
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name: str, label: str, query: str, description: str) -> dict[str, Any]:
    query = sql(query)
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": CLICKHOUSE,
        "definition": query,
        "query": {"editorType": "sql", "queryType": "table", "format": FORMAT_TABLE, "rawSql": query},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "multi": True,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def textbox_variable(name: str, label: str, description: str) -> dict[str, Any]:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "description": description,
        "query": "",
        "current": {"selected": False, "text": "", "value": ""},
        "options": [{"selected": True, "text": "", "value": ""}],
        "hide": 0,
        "skipUrlSync": False,
    }


def rollup_values(column: str, only: tuple[str, ...]) -> str:
    return (
        f"SELECT DISTINCT {column} FROM llm_daily\n"
        f"WHERE $__dateFilter(day) AND {column} != ''{where(ROLLUP_COLUMNS, only)}\n"
        f"ORDER BY {column}"
    )


SERVICE = query_variable(
    "service", "Service", rollup_values("service", ()), "Services with LLM calls in the time range"
)
SERVICE_ANY = query_variable(
    "service",
    "Service",
    "SELECT DISTINCT ServiceName FROM otel_traces\n"
    "WHERE $__timeFilter(Timestamp) AND ServiceName != ''\n"
    "ORDER BY ServiceName",
    "Services with spans in the time range",
)
FEATURE = query_variable(
    "feature", "Feature", rollup_values("feature", ("service",)), "The tracehouse.feature tag of the calls"
)
PROVIDER = query_variable("provider", "Provider", rollup_values("provider", ("service", "feature")), "LLM provider")
MODEL_VARIABLE = query_variable(
    "model", "Model", rollup_values("model", ("service", "feature", "provider")), "Model that answered"
)
USER = query_variable(
    "user",
    "User",
    "SELECT user_id FROM llm_calls\n"
    f"WHERE $__timeFilter(ts) AND user_id != ''{where(CALLS_COLUMNS, ('service', 'feature', 'provider', 'model'))}\n"
    "GROUP BY user_id\nORDER BY count() DESC\nLIMIT 500",
    "End user of the calls (the 500 busiest in the time range)",
)
LLM_VARIABLES = [
    datasource_variable("datasource", "grafana-clickhouse-datasource", "ClickHouse"),
    SERVICE,
    FEATURE,
    PROVIDER,
    MODEL_VARIABLE,
    USER,
]

# --- panels -----------------------------------------------------------------------------------------


def target(query: str, fmt: int, ref: str = "A") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "format": fmt,
        "queryType": QUERY_TYPES[fmt],
        "pluginVersion": PLUGIN_VERSION,
        "rawSql": sql(query),
    }


def overrides(units: dict[str, str] | None = None, extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    found = [
        {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]}
        for name, unit in (units or {}).items()
    ]
    return found + (extra or [])


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    datasource = targets[0]["datasource"]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": targets,
        **options,
    }


def stat(title: str, description: str, query: str, unit: str, units: dict[str, str] | None = None) -> dict:
    return panel(
        "stat",
        title,
        description,
        [target(query, FORMAT_TABLE)],
        fieldConfig={
            "defaults": {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": _thresholds()},
            "overrides": overrides(units),
        },
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "auto",
            "orientation": "auto",
        },
    )


def _thresholds(red: float | None = None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red is not None:
        steps.append({"color": "red", "value": red})
    return {"mode": "absolute", "steps": steps}


def timeseries(
    title: str,
    description: str,
    query: str,
    unit: str,
    series_label: str | None = None,
    stacked: bool = False,
    bars: bool = False,
) -> dict:
    """`series_label`: the string column that names each series (Grafana turns it into a label)."""
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1 if bars else 2,
            "fillOpacity": 80 if bars else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        },
    }
    if series_label:
        defaults["displayName"] = "${__field.labels." + series_label + "}"
    return panel(
        "timeseries",
        title,
        description,
        [target(query, FORMAT_TIME_SERIES)],
        fieldConfig={"defaults": defaults, "overrides": []},
        options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    )


def table(
    title: str,
    description: str,
    query: str,
    units: dict[str, str] | None = None,
    links: dict[str, list[dict[str, Any]]] | None = None,
    sort_by: str | None = None,
) -> dict:
    extra = [
        {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "links", "value": column_links}]}
        for column, column_links in (links or {}).items()
    ]
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return panel(
        "table",
        title,
        description,
        [target(query, FORMAT_TABLE)],
        fieldConfig={
            "defaults": {"custom": {"align": "auto", "inspect": True, "cellOptions": {"type": "auto"}}},
            "overrides": overrides(units, extra),
        },
        options=options,
    )


def piechart(title: str, description: str, query: str) -> dict:
    return panel(
        "piechart",
        title,
        description,
        [target(query, FORMAT_TABLE)],
        fieldConfig={"defaults": {"unit": "short"}, "overrides": []},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
            "pieType": "donut",
            "displayLabels": ["name", "percent"],
            "legend": {"displayMode": "table", "placement": "right", "values": ["value", "percent"]},
        },
    )


def barchart(title: str, description: str, query: str, unit: str = "short") -> dict:
    return panel(
        "barchart",
        title,
        description,
        [target(query, FORMAT_TABLE)],
        fieldConfig={"defaults": {"unit": unit}, "overrides": []},
        options={"orientation": "horizontal", "showValue": "auto", "legend": {"showLegend": False}},
    )


def prometheus(title: str, description: str, exprs: list[tuple[str, str]], unit: str) -> dict:
    targets = [
        {
            "refId": chr(ord("A") + index),
            "datasource": PROMETHEUS,
            "editorMode": "code",
            "expr": expr,
            "legendFormat": legend,
            "range": True,
        }
        for index, (expr, legend) in enumerate(exprs)
    ]
    return panel(
        "timeseries",
        title,
        description,
        targets,
        fieldConfig={
            "defaults": {"unit": unit, "custom": {"lineWidth": 2, "fillOpacity": 10, "showPoints": "never"}},
            "overrides": [],
        },
        options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    )


# --- traces -----------------------------------------------------------------------------------------

TRACE_DETAIL_UID = "tracehouse-trace"


def trace_spans(trace_literal: str) -> str:
    """Every span of one trace in the columns Grafana's trace view reads (traceID, spanID, parentSpanID,
    serviceName, operationName, startTime and duration in ms, tags, serviceTags, ...), narrowed to the
    trace's time range with the otel_traces_trace_id_ts lookup, as the plugin's own trace view does.
    The normalized LLM fields join the span tags, so the view shows each call's model, tokens and cost."""
    return sql(
        f"""
        WITH
          {trace_literal} AS selected_trace,
          (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = selected_trace) AS trace_start,
          (SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = selected_trace) AS trace_end
        SELECT
          TraceId AS traceID,
          SpanId AS spanID,
          ParentSpanId AS parentSpanID,
          ServiceName AS serviceName,
          SpanName AS operationName,
          toUnixTimestamp64Nano(Timestamp) / 1000000 AS startTime,
          Duration / 1000000 AS duration,
          arrayConcat(
            arrayMap(kv -> map('key', kv.1, 'value', kv.2), arrayFilter(kv -> kv.2 != '', [
              ('llm.model', {MODEL}),
              ('llm.provider', toString(LlmProvider)),
              ('llm.input_tokens', ifNull(toString(InputTokens), '')),
              ('llm.output_tokens', ifNull(toString(OutputTokens), '')),
              ('llm.cached_tokens', ifNull(toString(CacheReadTokens), '')),
              ('llm.cost_usd', ifNull(toString(CostUsd), '')),
              ('llm.cost_source', toString(CostSource)),
              ('llm.finish_reason', toString(FinishReason)),
              ('llm.user', UserId),
              ('llm.feature', toString(Feature)),
              ('llm.prompt', toString(PromptTemplateName)),
              ('llm.prompt_version', toString(PromptVersion))
            ])),
            arrayMap(key -> map('key', toString(key), 'value', SpanAttributes[key]), mapKeys(SpanAttributes))
          ) AS tags,
          arrayMap(key -> map('key', toString(key), 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes))
            AS serviceTags,
          if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) AS statusCode,
          StatusMessage AS statusMessage,
          SpanKind AS kind,
          ScopeName AS instrumentationLibraryName,
          ScopeVersion AS instrumentationLibraryVersion,
          TraceState AS traceState
        FROM otel_traces
        WHERE TraceId = selected_trace AND Timestamp >= trace_start AND Timestamp <= trace_end
        ORDER BY Timestamp
        LIMIT 10000
        """
    )


def _keep_placeholders(encoded: str, placeholders: tuple[str, ...]) -> str:
    for placeholder in placeholders:
        encoded = encoded.replace(quote(placeholder, safe=""), placeholder)
    return encoded


def trace_links() -> list[dict[str, Any]]:
    """Data links for a trace_id column: the trace-detail dashboard, and the trace in Explore's trace
    view through the plugin (a trace query, format 3). Grafana fills ${__value.raw} with the cell."""
    query = {
        "refId": "A",
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "queryType": "traces",
        "format": FORMAT_TRACE,
        "pluginVersion": PLUGIN_VERSION,
        "rawSql": trace_spans("'${__value.raw}'"),
    }
    panes = {
        "trace": {"datasource": "${datasource}", "queries": [query], "range": {"from": "${__from}", "to": "${__to}"}}
    }
    encoded = _keep_placeholders(
        quote(json.dumps(panes, separators=(",", ":")), safe=""),
        ("${__value.raw}", "${datasource}", "${__from}", "${__to}"),
    )
    return [
        {
            "title": "Trace detail: prompts, responses, tokens and cost",
            "url": f"/d/{TRACE_DETAIL_UID}?var-trace_id=${{__value.raw}}"
            "&${datasource:queryparam}&${__url_time_range}",
        },
        {
            "title": "Trace view (Explore)",
            "url": "/explore?schemaVersion=1&orgId=1&panes=" + encoded,
            "targetBlank": True,
        },
    ]


# --- layout -----------------------------------------------------------------------------------------


class Layout:
    """Places panels left to right in rows of 24 columns; `row` starts a titled section."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._next_id(),
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            }
        )
        self.y += 1

    def add(self, item: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        self.panels.append({"id": self._next_id(), "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}, **item})
        self.x += w
        self.row_height = max(self.row_height, h)


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[dict[str, Any]],
    time_from: str = "now-7d",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "title": "tracehouse",
                "tags": ["tracehouse"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": layout.panels,
    }


# --- LLM overview -----------------------------------------------------------------------------------


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
        stat(
            "Cost",
            "Spend in USD; unpriced calls are not in it (see the Cost dashboard)",
            daily("SELECT toFloat64(sum(cost_usd)) AS cost_usd FROM DAILY"),
            "currencyUSD",
        ),
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
            daily("SELECT sum(unpriced_calls) AS unpriced_calls FROM DAILY"),
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
            f"""
            SELECT
              quantile(0.5)(latency_ms_total) AS p50_ms,
              quantile(0.95)(latency_ms_total) AS p95_ms,
              quantile(0.99)(latency_ms_total) AS p99_ms
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
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
            SELECT
              quantile(0.5)(latency_ms_first_token) AS ttft_p50_ms,
              quantile(0.95)(latency_ms_first_token) AS ttft_p95_ms
            FROM llm_calls
            WHERE $__timeFilter(ts) AND latency_ms_first_token IS NOT NULL{CALLS_FILTERS}
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
            f"""
            SELECT $__timeInterval(ts) AS time, model, count() AS calls
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY time, model
            ORDER BY time
            """,
            "short",
            series_label="model",
            stacked=True,
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Cost by feature per day",
            "Daily spend in USD by tracehouse.feature (from the daily rollup)",
            daily(
                """
                SELECT toDateTime(day) AS time, if(feature = '', '(no feature)', feature) AS feature_name,
                  toFloat64(sum(cost_usd)) AS cost_usd
                FROM DAILY
                GROUP BY time, feature_name
                ORDER BY time
                """
            ),
            "currencyUSD",
            series_label="feature_name",
            stacked=True,
            bars=True,
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
            f"""
            SELECT $__timeInterval(ts) AS time, countIf(status = 'Error') / count() AS error_rate
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY time
            ORDER BY time
            """,
            "percentunit",
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "p95 latency by model",
            "95th percentile of call duration per interval, in milliseconds",
            f"""
            SELECT $__timeInterval(ts) AS time, model, quantile(0.95)(latency_ms_total) AS p95_ms
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY time, model
            ORDER BY time
            """,
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


# --- Cost -------------------------------------------------------------------------------------------

# What cached input saved per rollup row: the uncached input price of that row (input cost over uncached
# input tokens) applied to the cached tokens, less what the cached tokens cost.
CACHE_SAVINGS = (
    "if(input_tokens > cache_read_tokens + cache_write_tokens + input_audio_tokens AND cache_read_tokens > 0,\n"
    "    toFloat64(input_cost_usd) * cache_read_tokens"
    " / (input_tokens - cache_read_tokens - cache_write_tokens - input_audio_tokens)\n"
    "      - toFloat64(cache_read_cost_usd),\n"
    "    0)"
)


def cost() -> dict[str, Any]:
    g = Layout()
    g.row("Spend (daily rollup, whole days)")
    g.add(
        stat(
            "Total cost",
            "Spend in USD of the priced calls",
            daily("SELECT toFloat64(sum(cost_usd)) AS cost_usd FROM DAILY"),
            "currencyUSD",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Average cost per call",
            "Spend over the priced calls (unpriced calls excluded)",
            daily(
                "SELECT toFloat64(sum(cost_usd)) / greatest(sum(calls) - sum(unpriced_calls), 1) AS avg_cost_usd\n"
                "FROM DAILY"
            ),
            "currencyUSD",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Cache hit ratio",
            "Share of input tokens read from the provider's prompt cache",
            daily("SELECT sum(cache_read_tokens) / greatest(sum(input_tokens), 1) AS cache_hit_ratio FROM DAILY"),
            "percentunit",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Cache savings",
            "What the cached input tokens would have cost at the uncached input price, less what they cost",
            daily(f"SELECT sum({CACHE_SAVINGS}) AS cache_savings_usd FROM DAILY"),
            "currencyUSD",
        ),
        5,
        4,
    )
    g.add(
        stat(
            "Unpriced calls",
            "Calls of models with no price in the catalogue or the price file (cost unknown, not 0)",
            daily("SELECT sum(unpriced_calls) AS unpriced_calls FROM DAILY"),
            "short",
        ),
        4,
        4,
    )
    g.add(
        timeseries(
            "Daily cost by feature",
            "Spend in USD per day by tracehouse.feature",
            daily(
                """
                SELECT toDateTime(day) AS time, if(feature = '', '(no feature)', feature) AS feature_name,
                  toFloat64(sum(cost_usd)) AS cost_usd
                FROM DAILY
                GROUP BY time, feature_name
                ORDER BY time
                """
            ),
            "currencyUSD",
            series_label="feature_name",
            stacked=True,
            bars=True,
        ),
        12,
        9,
    )
    g.add(
        timeseries(
            "Cost by provider and model",
            "Spend in USD per day, one series per provider / model",
            daily(
                """
                SELECT toDateTime(day) AS time, concat(provider, ' / ', model) AS provider_model,
                  toFloat64(sum(cost_usd)) AS cost_usd
                FROM DAILY
                GROUP BY time, provider_model
                ORDER BY time
                """
            ),
            "currencyUSD",
            series_label="provider_model",
            stacked=True,
        ),
        12,
        9,
    )
    g.add(
        timeseries(
            "Cost by token kind",
            "Spend per day split into uncached input, cache reads, cache writes, output and reasoning",
            daily(
                """
                SELECT toDateTime(day) AS time,
                  toFloat64(sum(input_cost_usd)) AS input,
                  toFloat64(sum(cache_read_cost_usd)) AS cache_read,
                  toFloat64(sum(cache_write_cost_usd)) AS cache_write,
                  toFloat64(sum(output_cost_usd)) AS output,
                  toFloat64(sum(reasoning_cost_usd)) AS reasoning,
                  toFloat64(sum(audio_cost_usd)) AS audio
                FROM DAILY
                GROUP BY time
                ORDER BY time
                """
            ),
            "currencyUSD",
            stacked=True,
            bars=True,
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Cache hit ratio by model",
            "Share of input tokens served from the prompt cache per day, by model",
            daily(
                """
                SELECT toDateTime(day) AS time, model,
                  sum(cache_read_tokens) / greatest(sum(input_tokens), 1) AS cache_hit_ratio
                FROM DAILY
                GROUP BY time, model
                ORDER BY time
                """
            ),
            "percentunit",
            series_label="model",
        ),
        12,
        8,
    )
    g.row("Who and what (spans, exact time range)")
    g.add(
        table(
            "Top users by spend",
            "The 20 users with the highest spend; calls include unpriced ones",
            f"""
            SELECT
              UserId AS user_id,
              count() AS calls,
              toFloat64(sum(ifNull(CostUsd, 0))) AS cost_usd,
              sum(ifNull(InputTokens, 0)) AS input_tokens,
              sum(ifNull(OutputTokens, 0)) AS output_tokens,
              countIf(CostSource = 'unknown') AS unpriced_calls
            FROM otel_traces
            WHERE $__timeFilter(Timestamp) AND CostSource != '' AND UserId != ''{RAW_FILTERS}
            GROUP BY user_id
            ORDER BY cost_usd DESC, user_id
            LIMIT 20
            """,
            units={"cost_usd": "currencyUSD"},
        ),
        12,
        9,
    )
    g.add(
        table(
            "Cost per call by model",
            "Average and 95th percentile cost of one priced call, by provider and model",
            f"""
            SELECT provider, model, count() AS priced_calls, avg(cost) AS avg_cost_usd,
              quantile(0.95)(cost) AS p95_cost_usd, sum(cost) AS cost_usd
            FROM (
              SELECT LlmProvider AS provider, {MODEL} AS model, toFloat64(CostUsd) AS cost
              FROM otel_traces
              WHERE $__timeFilter(Timestamp) AND CostUsd IS NOT NULL{indent(RAW_FILTERS, 2).lstrip(" ")}
            )
            GROUP BY provider, model
            ORDER BY cost_usd DESC
            """,
            units={"avg_cost_usd": "currencyUSD", "p95_cost_usd": "currencyUSD", "cost_usd": "currencyUSD"},
        ),
        12,
        9,
    )
    g.add(
        table(
            "Unpriced models",
            "Models seen without a price: add them to the price file (`tracehouse prices`), then reprice",
            daily(
                """
                SELECT provider, model, sum(unpriced_calls) AS unpriced, sum(calls) AS calls_total,
                  min(day) AS first_day, max(day) AS last_day
                FROM DAILY
                GROUP BY provider, model
                HAVING unpriced > 0
                ORDER BY unpriced DESC
                """
            ),
        ),
        12,
        7,
    )
    g.add(
        timeseries(
            "Unpriced calls per day",
            "Calls whose cost is unknown, per day by model",
            daily(
                """
                SELECT toDateTime(day) AS time, model, sum(unpriced_calls) AS unpriced
                FROM DAILY
                GROUP BY time, model
                HAVING unpriced > 0
                ORDER BY time
                """
            ),
            "short",
            series_label="model",
            bars=True,
        ),
        12,
        7,
    )
    return dashboard(
        "tracehouse-cost",
        "tracehouse / Cost",
        "Where the LLM money goes: by feature, user, provider and model; prompt caching; unpriced models.",
        g,
        LLM_VARIABLES,
        time_from="now-30d",
    )


# --- Latency and quality ----------------------------------------------------------------------------

CALL_COLUMNS = f"""
SELECT ts, trace_id, id AS span_id, service, feature, provider, model, user_id,
  latency_ms_total, latency_ms_first_token, prompt_tokens, completion_tokens,
  toFloat64(cost_usd) AS cost_usd, finish_reason, error
FROM llm_calls
WHERE $__timeFilter(ts){CALLS_FILTERS}"""


def quality() -> dict[str, Any]:
    g = Layout()
    g.row("Now")
    g.add(
        stat(
            "Error rate",
            "Share of LLM calls whose span ended with status Error",
            f"""
            SELECT countIf(status = 'Error') / greatest(count(), 1) AS error_rate
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            """,
            "percentunit",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Refusal rate",
            "Share of calls the model or its provider refused (finish reason content_filter)",
            f"""
            SELECT countIf(finish_reason = 'content_filter') / greatest(count(), 1) AS refusal_rate
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            """,
            "percentunit",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Latency p95",
            "95th percentile of call duration",
            f"""
            SELECT quantile(0.95)(latency_ms_total) AS p95_ms
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            """,
            "ms",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Time to first token p95",
            "95th percentile of the time to the first streamed token",
            f"""
            SELECT quantile(0.95)(latency_ms_first_token) AS ttft_p95_ms
            FROM llm_calls
            WHERE $__timeFilter(ts) AND latency_ms_first_token IS NOT NULL{CALLS_FILTERS}
            """,
            "ms",
        ),
        6,
        4,
    )
    g.row("Latency")
    percentiles = (
        "\n  count() AS calls,"
        "\n  quantile(0.5)(latency_ms_total) AS p50_ms,"
        "\n  quantile(0.95)(latency_ms_total) AS p95_ms,"
        "\n  quantile(0.99)(latency_ms_total) AS p99_ms,"
        "\n  quantile(0.5)(latency_ms_first_token) AS ttft_p50_ms"
    )
    ms_units = {name: "ms" for name in ("p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms")}
    g.add(
        table(
            "Latency by feature",
            "Percentiles of call duration and time to first token, by feature",
            f"""
            SELECT if(feature = '', '(no feature)', feature) AS feature_name,{percentiles}
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY feature_name
            ORDER BY p95_ms DESC
            """,
            units=ms_units,
        ),
        12,
        8,
    )
    g.add(
        table(
            "Latency by model",
            "Percentiles of call duration and time to first token, by provider and model",
            f"""
            SELECT provider, model,{percentiles}
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY provider, model
            ORDER BY p95_ms DESC
            """,
            units=ms_units,
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "p95 latency by feature",
            "95th percentile of call duration per interval, by feature",
            f"""
            SELECT $__timeInterval(ts) AS time, if(feature = '', '(no feature)', feature) AS feature_name,
              quantile(0.95)(latency_ms_total) AS p95_ms
            FROM llm_calls
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY time, feature_name
            ORDER BY time
            """,
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
            SELECT if(error_type != '', error_type, 'error') AS error_kind, count() AS errors
            FROM llm_calls
            WHERE $__timeFilter(ts) AND (status = 'Error' OR error_type != ''){CALLS_FILTERS}
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
            f"""
            SELECT $__timeInterval(ts) AS time, if(error_type != '', error_type, 'error') AS error_kind,
              count() AS errors
            FROM llm_calls
            WHERE $__timeFilter(ts) AND (status = 'Error' OR error_type != ''){CALLS_FILTERS}
            GROUP BY time, error_kind
            ORDER BY time
            """,
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
            WHERE $__timeFilter(ts){CALLS_FILTERS}
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
            WHERE $__timeFilter(ts){CALLS_FILTERS}
            GROUP BY time
            ORDER BY time
            """,
            "percentunit",
        ),
        24,
        7,
    )
    g.row("Outliers (click a trace id)")
    call_units = {"latency_ms_total": "ms", "latency_ms_first_token": "ms", "cost_usd": "currencyUSD"}
    g.add(
        table(
            "Slowest calls",
            "The 20 slowest calls; the trace id links to the trace detail and to the trace view",
            CALL_COLUMNS + "\nORDER BY latency_ms_total DESC\nLIMIT 20",
            units=call_units,
            links={"trace_id": trace_links()},
        ),
        24,
        9,
    )
    g.add(
        table(
            "Most expensive calls",
            "The 20 most expensive calls; the trace id links to the trace detail and to the trace view",
            CALL_COLUMNS + "\nORDER BY cost_usd DESC NULLS LAST\nLIMIT 20",
            units=call_units,
            links={"trace_id": trace_links()},
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


# --- Traces -----------------------------------------------------------------------------------------


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
    g.add(
        table(
            "Recent traces",
            "The 200 most recent traces. Search matches the root span name or a trace id. "
            "Click a trace id for its prompts, responses, tokens and cost, or for the trace view.",
            f"""
            SELECT start, trace_id, root_name, service, duration_ms, span_count, llm_call_count, total_tokens,
              toFloat64(cost_usd) AS cost_usd, unpriced_calls, has_error, user_id, feature
            FROM traces
            WHERE {in_range}{by_trace}{by_call}{search}
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
        datasource_variable("datasource", "grafana-clickhouse-datasource", "ClickHouse"),
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


def trace_detail() -> dict[str, Any]:
    g = Layout()
    g.add(
        stat(
            "Trace",
            "Duration, spans, LLM calls, tokens and cost of this trace",
            """
            SELECT duration_ms, span_count, llm_call_count, total_tokens, toFloat64(cost_usd) AS cost_usd,
              toUInt8(has_error) AS errors
            FROM traces
            WHERE trace_id = ${trace_id:singlequote}
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
            [target(trace_spans("${trace_id:singlequote}"), FORMAT_TRACE)],
            fieldConfig={"defaults": {}, "overrides": []},
            options={},
        ),
        24,
        12,
    )
    json_view = {"id": "custom.cellOptions", "value": {"type": "json-view"}}
    g.add(
        table(
            "LLM calls: prompt, response, tokens and cost",
            "Each LLM call of the trace in order. Click a cell to inspect the full prompt or response "
            "(content may be redacted or not sampled).",
            """
            WITH
              ${trace_id:singlequote} AS selected_trace,
              (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = selected_trace) AS trace_start,
              (SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = selected_trace) AS trace_end
            SELECT ts, span_name, provider, model, prompt_name, prompt_version,
              prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
              toFloat64(cost_usd) AS cost_usd, cost_source, latency_ms_total, latency_ms_first_token,
              finish_reason, error, system_prompt, messages AS prompt, response, tool_calls
            FROM llm_calls
            WHERE trace_id = selected_trace AND ts >= trace_start AND ts <= trace_end
            ORDER BY ts
            """,
            units={"cost_usd": "currencyUSD", "latency_ms_total": "ms", "latency_ms_first_token": "ms"},
        ),
        24,
        14,
    )
    calls = g.panels[-1]
    calls["fieldConfig"]["overrides"] += [
        {"matcher": {"id": "byName", "options": name}, "properties": [json_view]}
        for name in ("prompt", "response", "tool_calls")
    ]
    variables = [
        datasource_variable("datasource", "grafana-clickhouse-datasource", "ClickHouse"),
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


# --- Prompts ----------------------------------------------------------------------------------------

PROMPT_LABEL = "concat(prompt_name, ' ', if(prompt_version = '', '(no version)', prompt_version)) AS prompt"
PROMPT_FILTERS = CALLS_FILTERS + "\n  AND " + cond("prompt", "prompt_name")


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
            WHERE $__timeFilter(ts) AND prompt_name != ''{PROMPT_FILTERS}
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

    def by_version(title: str, description: str, value: str, unit: str) -> dict[str, Any]:
        return timeseries(
            title,
            description,
            f"""
            SELECT $__timeInterval(ts) AS time, {PROMPT_LABEL}, {value}
            FROM llm_calls
            WHERE $__timeFilter(ts) AND prompt_name != ''{PROMPT_FILTERS}
            GROUP BY time, prompt
            ORDER BY time
            """,
            unit,
            series_label="prompt",
        )

    g.add(by_version("Calls by prompt version", "Calls per interval", "count() AS calls", "short"), 12, 8)
    g.add(
        by_version(
            "Error rate by prompt version",
            "Share of failed calls per interval",
            "countIf(status = 'Error') / count() AS error_rate",
            "percentunit",
        ),
        12,
        8,
    )
    g.add(
        by_version(
            "p95 latency by prompt version",
            "95th percentile of call duration per interval",
            "quantile(0.95)(latency_ms_total) AS p95_ms",
            "ms",
        ),
        12,
        8,
    )
    g.add(
        by_version(
            "Cost per call by prompt version",
            "Average cost of a priced call per interval",
            "toFloat64(avg(cost_usd)) AS avg_cost_usd",
            "currencyUSD",
        ),
        12,
        8,
    )
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


# --- Collector health -------------------------------------------------------------------------------

RATE = "$__rate_interval"


def collector() -> dict[str, Any]:
    g = Layout()
    service = where(RAW_COLUMNS, ("service",))
    g.row("Stored spans (ClickHouse)")
    g.add(
        timeseries(
            "Ingest rate by service",
            "Spans stored per second, by the time the span started",
            f"""
            SELECT $__timeInterval(Timestamp) AS time, ServiceName AS service, count() / ($__interval_s) AS spans_per_s
            FROM otel_traces
            WHERE $__timeFilter(Timestamp){service}
            GROUP BY time, service
            ORDER BY time
            """,
            "short",
            series_label="service",
            stacked=True,
        ),
        12,
        8,
    )
    g.add(
        table(
            "Freshness by service",
            "Seconds from the newest stored span's end to now. A growing number means spans arrive late, "
            "wait in the spool, or stopped (compare with the spool age below).",
            f"""
            SELECT ServiceName AS service, count() AS spans,
              max(Timestamp) AS newest_span,
              dateDiff('millisecond', max(Timestamp + toIntervalNanosecond(Duration)), now64(3)) / 1000 AS lag_s
            FROM otel_traces
            WHERE $__timeFilter(Timestamp){service}
            GROUP BY service
            ORDER BY lag_s DESC
            """,
            units={"lag_s": "s"},
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Span end to insert lag",
            "Seconds from a span's end to its row reaching ClickHouse (InsertedAt): receive, spool and insert "
            "delay together; p50 and p95 per interval.",
            f"""
            SELECT $__timeInterval(Timestamp) AS time,
              quantile(0.5)(lag_ms) / 1000 AS p50_s,
              quantile(0.95)(lag_ms) / 1000 AS p95_s
            FROM (
              SELECT Timestamp, ServiceName,
                greatest(dateDiff('millisecond', Timestamp + toIntervalNanosecond(Duration), InsertedAt), 0) AS lag_ms
              FROM otel_traces
              WHERE $__timeFilter(Timestamp){service}
            )
            GROUP BY time
            ORDER BY time
            """,
            "s",
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Pricing of LLM calls",
            "Model calls per interval by where their price came from; 'unknown' are unpriced calls",
            f"""
            SELECT $__timeInterval(Timestamp) AS time, CostSource AS cost_source, count() AS calls
            FROM otel_traces
            WHERE $__timeFilter(Timestamp) AND CostSource != ''{service}
            GROUP BY time, cost_source
            ORDER BY time
            """,
            "short",
            series_label="cost_source",
            stacked=True,
            bars=True,
        ),
        8,
        8,
    )
    g.add(
        barchart(
            "Redactions by kind",
            "Values the redaction stage replaced, by detector or rule (only counts are stored)",
            f"""
            SELECT kind, sum(n) AS redactions
            FROM otel_traces
            ARRAY JOIN mapKeys(RedactionCounts) AS kind, mapValues(RedactionCounts) AS n
            WHERE $__timeFilter(Timestamp){service}
            GROUP BY kind
            ORDER BY redactions DESC
            """,
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "Redactions over time",
            "Values redacted per interval",
            f"""
            SELECT $__timeInterval(Timestamp) AS time, sum(arraySum(mapValues(RedactionCounts))) AS redactions
            FROM otel_traces
            WHERE $__timeFilter(Timestamp){service}
            GROUP BY time
            ORDER BY time
            """,
            "short",
            bars=True,
        ),
        8,
        8,
    )
    g.row("Collector process (Prometheus)")
    g.add(
        prometheus(
            "Spans received, accepted and rejected",
            "Spans per second through the receivers; rejected by reason (invalid, unavailable)",
            [
                (f"sum(rate(tracehouse_spans_received_total[{RATE}]))", "received"),
                (f"sum(rate(tracehouse_spans_accepted_total[{RATE}]))", "accepted"),
                (f"sum by (reason) (rate(tracehouse_spans_rejected_total[{RATE}]))", "rejected {{reason}}"),
            ],
            "short",
        ),
        12,
        8,
    )
    g.add(
        prometheus(
            "Export requests by outcome",
            "OTLP export requests per second by transport and outcome",
            [(f"sum by (transport, outcome) (rate(tracehouse_requests_total[{RATE}]))", "{{transport}} {{outcome}}")],
            "reqps",
        ),
        12,
        8,
    )
    g.add(
        prometheus(
            "Spool backlog",
            "Bytes acknowledged but not yet in ClickHouse",
            [("sum(tracehouse_spool_bytes)", "spool bytes")],
            "bytes",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Receive-to-insert lag",
            "Age of the oldest spooled record not yet in ClickHouse: how far inserts lag behind receipt",
            [("max(tracehouse_spool_oldest_age_seconds)", "oldest unsent")],
            "s",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Insert latency",
            "Time one ClickHouse insert took",
            [
                (
                    f"histogram_quantile(0.5, sum by (le) (rate(tracehouse_insert_latency_seconds_bucket[{RATE}])))",
                    "p50",
                ),
                (
                    f"histogram_quantile(0.95, sum by (le) (rate(tracehouse_insert_latency_seconds_bucket[{RATE}])))",
                    "p95",
                ),
            ],
            "s",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Rows inserted",
            "Rows written to ClickHouse per second",
            [(f"sum(rate(tracehouse_insert_rows_total[{RATE}]))", "rows")],
            "short",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Insert failures and dead letters",
            "Failed inserts by kind (retried), and batches ClickHouse refused (kept in deadletter/)",
            [
                (f"sum by (kind) (increase(tracehouse_insert_failures_total[{RATE}]))", "failed {{kind}}"),
                (f"sum(increase(tracehouse_dead_lettered_batches_total[{RATE}]))", "dead-lettered"),
            ],
            "short",
        ),
        8,
        8,
    )
    g.add(
        prometheus(
            "Store up",
            "1 when the collector's last ClickHouse operation succeeded",
            [("min(tracehouse_store_up)", "store up")],
            "short",
        ),
        8,
        8,
    )
    variables = [
        datasource_variable("datasource", "grafana-clickhouse-datasource", "ClickHouse"),
        datasource_variable("prometheus", "prometheus", "Prometheus"),
        SERVICE_ANY,
    ]
    return dashboard(
        "tracehouse-collector",
        "tracehouse / Collector health",
        "Is the pipeline healthy: ingest rate, freshness, rejected spans, spool, inserts, redactions, pricing.",
        g,
        variables,
        time_from="now-6h",
    )


DASHBOARDS = {
    "llm-overview.json": overview,
    "cost.json": cost,
    "latency-quality.json": quality,
    "traces.json": traces,
    "trace-detail.json": trace_detail,
    "prompts.json": prompts,
    "collector-health.json": collector,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    for name in DASHBOARDS:
        (out / name).write_text(render(name))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
