"""The small language the dashboards are written in: data sources, variables, query targets, panels
(stat, timeseries, table, piechart, barchart, prometheus), the trace links, `Layout` for ids and grid
positions, and `dashboard()` for the frame every dashboard shares. The SQL they share is in queries.py.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from .queries import CALLS_COLUMNS, rollup_values, sql, trace_spans, where

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}
PLUGIN_VERSION = "4.8.2"
TAGS = ["tracehouse", "llm"]

FORMAT_TIME_SERIES, FORMAT_TABLE, FORMAT_TRACE = 0, 1, 3
QUERY_TYPES = {FORMAT_TIME_SERIES: "timeSeries", FORMAT_TABLE: "table", FORMAT_TRACE: "traces"}

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
    """A multi-value variable with All, its options from a ClickHouse query (refreshed on time change)."""
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


CLICKHOUSE_VARIABLE = datasource_variable("datasource", "grafana-clickhouse-datasource", "ClickHouse")
PROMETHEUS_VARIABLE = datasource_variable("prometheus", "prometheus", "Prometheus")

# The filters cascade: each one's options are narrowed by the filters before it.
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
LLM_VARIABLES = [CLICKHOUSE_VARIABLE, SERVICE, FEATURE, PROVIDER, MODEL_VARIABLE, USER]

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
    json_columns: tuple[str, ...] = (),
) -> dict:
    """`links`: data links per column; `json_columns`: columns shown in the JSON cell view."""
    extra = [
        {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "links", "value": column_links}]}
        for column, column_links in (links or {}).items()
    ] + [
        {
            "matcher": {"id": "byName", "options": column},
            "properties": [{"id": "custom.cellOptions", "value": {"type": "json-view"}}],
        }
        for column in json_columns
    ]
    return panel(
        "table",
        title,
        description,
        [target(query, FORMAT_TABLE)],
        fieldConfig={
            "defaults": {"custom": {"align": "auto", "inspect": True, "cellOptions": {"type": "auto"}}},
            "overrides": overrides(units, extra),
        },
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
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
    """A time series of the collector's own metrics: one (PromQL expression, legend) per line."""
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


# --- trace links ------------------------------------------------------------------------------------

TRACE_DETAIL_UID = "tracehouse-trace"


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
