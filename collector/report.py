"""`tracehouse report`: the dashboards' main panels as one self-contained HTML file, for users without a
Grafana (the embedded store) and for passing a week's numbers on.

    tracehouse report [--since 7d] [--out report.html]

One definition of each query: a panel of the report runs the SQL of a Grafana panel, looked up by
dashboard and title in the dashboard builders (tracehouse.dashboards), or a query of dashboards/queries.py;
the Grafana macros are expanded by the same expansion the dashboard tests use (collector/grafana_macros.py),
every filter at All; the SQL runs through `read_query` (the running collector's read-only endpoint, else the
store under its lock), so the read-only guard and the query limits apply.

The file opens with no network: Chart.js is inlined from report_assets/ (its version and licence are noted
there), and a Content-Security-Policy lets only the report's own two scripts run and nothing load. Values
from the store (redacted at ingest already) are HTML-escaped in the tables and embedded as JSON whose `<`,
`>` and `&` are \\u escapes, so no value can end the script element that carries it.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import html
import importlib
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tracehouse.collector.config import add_flags
from tracehouse.collector.prices_cli import parse_when

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

CHART_JS = "chart.umd.min.js"
CHART_JS_VERSION = "4.6.1"
CHART_JS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"
DEFAULT_SINCE = "7d"
DEFAULT_OUT = "report.html"
PROMPT_CHARS = 4000  # of each prompt, the report shows this much
SUMMARY_CHARS = 90  # the one-line preview of a prompt
MAX_POINTS = 120  # a time series gets the smallest interval that keeps it within this many points
INTERVALS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400)

# --- the time range ---------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


@dataclass(frozen=True)
class Since:
    """`--since`: a span of time back from now (30m, 24h, 7d, 2w), or a UTC date or date-time."""

    text: str
    back: timedelta | None = None
    at: datetime | None = None

    def start(self, now: datetime) -> datetime:
        if self.back is not None:
            return now - self.back
        assert self.at is not None
        return self.at


def parse_since(text: str) -> Since:
    """The value of `--since` (argparse's `type`, so a bad value is a usage error naming it)."""
    match = _DURATION.match(text.strip())
    if match:
        count = int(match.group(1))
        if count == 0:
            raise argparse.ArgumentTypeError(f"--since {text}: an empty time range")
        return Since(text, back=timedelta(seconds=count * _UNIT_SECONDS[match.group(2)]))
    try:
        return Since(text, at=parse_when(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time span or a date: {text!r} (use 30m, 24h, 7d, 2w, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)"
        ) from None


def interval_for(start: datetime, end: datetime) -> int:
    """The interval of the time series, in seconds, as Grafana picks one for a panel's width."""
    span = (end - start).total_seconds()
    return next((s for s in INTERVALS_S if span / s <= MAX_POINTS), INTERVALS_S[-1])


# --- where each panel's SQL comes from --------------------------------------------------------------


@functools.cache
def _dashboard(name: str) -> dict[str, Any]:
    """A dashboard as its builder makes it (the same dict the JSON files are written from)."""
    return getattr(importlib.import_module(f"tracehouse.dashboards.{name}"), name)()


def dashboard_panel(dashboard: str, title: str) -> dict[str, Any]:
    """The panel titled `title` of a dashboard (`overview`, `cost`, `quality`, ...)."""
    panels = _dashboard(dashboard)["panels"]
    for panel in [*panels, *(inner for p in panels for inner in p.get("panels", []))]:
        if panel.get("title") == title:
            return panel
    raise LookupError(f"the {dashboard} dashboard has no panel {title!r}")


@dataclass(frozen=True)
class Source:
    """One query of a report panel, and how its rows become chart points: `x` are the columns that label
    a point (joined with ' / '), `values` the value columns (a dataset each) or, with `series`, the one
    value column of the datasets `series` names."""

    sql: str
    origin: str  # where the query is defined, shown under the panel
    description: str = ""
    x: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    series: str | None = None


def from_panel(dashboard: str, title: str, **how: Any) -> Source:
    """A Grafana panel's query (its first target), with its description."""
    panel = dashboard_panel(dashboard, title)
    origin = f"{_dashboard(dashboard)['title']} dashboard, panel “{title}”"
    return Source(panel["targets"][0]["rawSql"], origin, panel.get("description", ""), **how)


def from_queries(name: str, sql: str, description: str, **how: Any) -> Source:
    return Source(sql, f"dashboards/queries.py {name}", description, **how)


@dataclass(frozen=True)
class Column:
    """A table column: the result column, its header, how to show it (text, usd, ms, ratio, count, time)."""

    name: str
    header: str
    unit: str = "text"


@dataclass(frozen=True)
class Tile:
    title: str
    source: Source
    column: str
    unit: str


@dataclass(frozen=True)
class Chart:
    """A chart (bar, hbar, line, doughnut) over its sources' rows; `x_kind` day or time sorts the labels
    (day fills in the days without rows); `table`, if any, shows the first source's rows too."""

    key: str
    title: str
    kind: str
    unit: str
    sources: tuple[Source, ...]
    x_kind: str = "label"
    stacked: bool = False
    table: tuple[Column, ...] = ()
    wide: bool = False  # the whole width of the page, not half


@dataclass(frozen=True)
class CallsTable:
    """Single calls with their prompts (the prompts come from a second query, by span id)."""

    key: str
    title: str
    source: Source
    columns: tuple[Column, ...]


Section = tuple[str, tuple[Tile | Chart | CallsTable, ...]]

# The prompt column comes after the first PROMPT_AFTER columns.
OUTLIER_COLUMNS = (
    Column("ts", "time", "time"),
    Column("model", "model"),
    Column("user_id", "user"),
    Column("latency_ms_total", "latency", "ms"),
    Column("latency_ms_first_token", "first token", "ms"),
    Column("prompt_tokens", "input tokens", "count"),
    Column("completion_tokens", "output tokens", "count"),
    Column("cost_usd", "cost", "usd"),
    Column("finish_reason", "finish"),
    Column("error", "error"),
    Column("service", "service"),
    Column("feature", "feature"),
    Column("trace_id", "trace id"),
)
PROMPT_AFTER = 3


def sections() -> list[Section]:
    """What the report shows, in order: the dashboards' panels it is made of."""
    from tracehouse.dashboards.queries import TOP_FEATURES_BY_SPEND

    return [
        (
            "Summary",
            (
                Tile("Calls", from_panel("overview", "Calls"), "calls", "count"),
                Tile("Cost", from_panel("overview", "Cost"), "cost_usd", "usd"),
                Tile("Unpriced calls", from_panel("overview", "Unpriced calls"), "unpriced_calls", "count"),
                Tile("Error rate", from_panel("quality", "Error rate"), "error_rate", "ratio"),
                Tile("Refusal rate", from_panel("quality", "Refusal rate"), "refusal_rate", "ratio"),
                Tile("Latency p95", from_panel("quality", "Latency p95"), "p95_ms", "ms"),
                Tile("Time to first token p95", from_panel("quality", "Time to first token p95"), "ttft_p95_ms", "ms"),
            ),
        ),
        (
            "Cost",
            (
                Chart(
                    "cost-by-day-and-feature",
                    "Cost by day and feature",
                    "bar",
                    "usd",
                    (
                        from_panel(
                            "cost", "Daily cost by feature", x=("time",), values=("cost_usd",), series="feature_name"
                        ),
                    ),
                    x_kind="day",
                    stacked=True,
                    wide=True,
                ),
                Chart(
                    "top-features",
                    "Top features by spend",
                    "hbar",
                    "usd",
                    (
                        from_queries(
                            "TOP_FEATURES_BY_SPEND",
                            TOP_FEATURES_BY_SPEND,
                            "The 20 features with the highest spend (daily rollup, whole days); calls include"
                            " unpriced ones",
                            x=("feature_name",),
                            values=("cost_usd",),
                        ),
                    ),
                    table=(
                        Column("feature_name", "feature"),
                        Column("calls", "calls", "count"),
                        Column("cost_usd", "cost", "usd"),
                        Column("unpriced_calls", "unpriced calls", "count"),
                    ),
                ),
                Chart(
                    "top-users",
                    "Top users by spend",
                    "hbar",
                    "usd",
                    (from_panel("cost", "Top users by spend", x=("user_id",), values=("cost_usd",)),),
                    table=(
                        Column("user_id", "user"),
                        Column("calls", "calls", "count"),
                        Column("cost_usd", "cost", "usd"),
                        Column("input_tokens", "input tokens", "count"),
                        Column("output_tokens", "output tokens", "count"),
                        Column("unpriced_calls", "unpriced calls", "count"),
                    ),
                ),
            ),
        ),
        (
            "Latency",
            (
                Chart(
                    "latency-by-model",
                    "Latency percentiles and time to first token by model",
                    "bar",
                    "ms",
                    (
                        from_panel(
                            "quality",
                            "Latency by model",
                            x=("provider", "model"),
                            values=("p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms"),
                        ),
                    ),
                    table=(
                        Column("provider", "provider"),
                        Column("model", "model"),
                        Column("calls", "calls", "count"),
                        Column("p50_ms", "p50", "ms"),
                        Column("p95_ms", "p95", "ms"),
                        Column("p99_ms", "p99", "ms"),
                        Column("ttft_p50_ms", "first token p50", "ms"),
                    ),
                    wide=True,
                ),
            ),
        ),
        (
            "Errors and refusals",
            (
                Chart(
                    "error-and-refusal-rates",
                    "Error and refusal rates over time",
                    "line",
                    "ratio",
                    (
                        from_panel("overview", "Error rate over time", x=("time",), values=("error_rate",)),
                        from_panel("quality", "Refusal rate over time", x=("time",), values=("refusal_rate",)),
                    ),
                    x_kind="time",
                    wide=True,
                ),
                Chart(
                    "errors-by-type",
                    "Errors by type",
                    "hbar",
                    "count",
                    (from_panel("quality", "Errors by type", x=("error_kind",), values=("errors",)),),
                ),
                Chart(
                    "finish-reasons",
                    "Finish reasons",
                    "doughnut",
                    "count",
                    (from_panel("quality", "Finish reasons", x=("reason",), values=("calls",)),),
                ),
            ),
        ),
        (
            "Calls to look at",
            (
                CallsTable("slowest-calls", "Slowest calls", from_panel("quality", "Slowest calls"), OUTLIER_COLUMNS),
                CallsTable(
                    "most-expensive-calls",
                    "Most expensive calls",
                    from_panel("quality", "Most expensive calls"),
                    OUTLIER_COLUMNS,
                ),
            ),
        ),
    ]


# --- running the queries ----------------------------------------------------------------------------

Rows = list[dict[str, Any]]
Runner = Callable[[str], Rows]


class ReportFailed(Exception):
    """A query of the report did not run; the message names the panel and the reason."""


def expand_for_report(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    """The SQL Grafana would send for this panel over [start, end] with every filter at All."""
    from tracehouse.collector.grafana_macros import ALL, QueryContext, Variable, expand
    from tracehouse.dashboards.queries import FILTERS

    variables = {name: Variable(name, [ALL]) for name in FILTERS}
    return expand(sql, variables, QueryContext(start, end, interval_ms=interval_s * 1000))


def rows_of(body: bytes) -> Rows:
    """Rows of a ClickHouse JSON result, 64-bit integers (quoted by ClickHouse) back as ints."""
    result = json.loads(body)
    integers = {
        column["name"]
        for column in result["meta"]
        if re.fullmatch(r"(Nullable\()?U?Int(64|128|256)\)?", column["type"])
    }
    return [
        {k: int(v) if k in integers and isinstance(v, str) else v for k, v in row.items()} for row in result["data"]
    ]


def store_runner(config: Config) -> Runner:
    """Run a query on the store the way `tracehouse sql` does (endpoint or store, read-only)."""
    from tracehouse.collector.query import read_query

    def run(sql: str) -> Rows:
        return rows_of(read_query(config, sql, "JSON").body)

    return run


# --- the data of the report -------------------------------------------------------------------------


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _label(row: dict[str, Any], columns: Sequence[str], x_kind: str) -> str:
    if x_kind == "day":
        return str(row[columns[0]])[:10]
    if x_kind == "time":
        return str(row[columns[0]])[:16]
    return " / ".join(str(row.get(c) if row.get(c) not in (None, "") else "(none)") for c in columns)


VALUE_LABELS = {
    "cost_usd": "cost (USD)",
    "p50_ms": "p50",
    "p95_ms": "p95",
    "p99_ms": "p99",
    "ttft_p50_ms": "time to first token p50",
    "error_rate": "error rate",
    "refusal_rate": "refusal rate",
    "errors": "errors",
    "calls": "calls",
}


GAP = "…"  # the label of a stretch of intervals without calls: the line breaks there


def _with_gaps(labels: list[str], interval_s: int) -> list[str]:
    """Time labels with a GAP between two that are more than an interval apart, so a line does not
    join points across a stretch with no calls (a rate there is not a value between the two)."""
    found: list[str] = []
    previous: datetime | None = None
    for label in labels:
        try:
            moment = datetime.strptime(label, "%Y-%m-%d %H:%M")
        except ValueError:
            moment = None
        if previous is not None and moment is not None and (moment - previous).total_seconds() > interval_s:
            found.append(GAP)
        found.append(label)
        previous = moment
    return found


def chart_data(
    chart: Chart, results: Sequence[Rows], start: datetime, end: datetime, interval_s: int
) -> dict[str, Any]:
    """Labels and datasets for Chart.js: every source's points on one shared axis."""
    labels: list[str] = []
    if chart.x_kind == "day":
        day: date = start.date()
        while day <= end.date():
            labels.append(day.isoformat())
            day += timedelta(days=1)
    for source, rows in zip(chart.sources, results, strict=True):
        for row in rows:
            label = _label(row, source.x, chart.x_kind)
            if label not in labels:
                labels.append(label)
    if chart.x_kind in ("day", "time"):
        labels.sort()
    if chart.x_kind == "time":
        labels = _with_gaps(labels, interval_s)
    fill = 0 if chart.stacked else None
    datasets: list[dict[str, Any]] = []
    for source, rows in zip(chart.sources, results, strict=True):
        if source.series:
            points: dict[str, dict[str, Any]] = {}
            for row in rows:
                name = str(row[source.series]) or "(none)"
                points.setdefault(name, {})[_label(row, source.x, chart.x_kind)] = _number(row[source.values[0]])
            # The biggest series first, so colours and the stacking order do not depend on row order.
            ranked = sorted(points.items(), key=lambda item: (-sum(v or 0 for v in item[1].values()), item[0]))
            datasets += [{"label": n, "data": [p.get(x, fill) for x in labels]} for n, p in ranked]
        else:
            for column in source.values:
                by_label = {_label(row, source.x, chart.x_kind): _number(row[column]) for row in rows}
                datasets.append(
                    {"label": VALUE_LABELS.get(column, column), "data": [by_label.get(x, fill) for x in labels]}
                )
    has_data = any(v is not None for d in datasets for v in d["data"]) and bool(labels)
    return {
        "key": chart.key,
        "kind": chart.kind,
        "unit": chart.unit,
        "stacked": chart.stacked,
        "labels": labels if has_data else [],
        "datasets": datasets if has_data else [],
    }


def _quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def prompt_text(system_prompt: str, messages: str) -> str:
    """A call's prompt as text: the system prompt, then each input message as `role: content`."""
    parts = [f"system: {system_prompt}"] if system_prompt else []
    try:
        decoded = json.loads(messages) if messages else []
    except ValueError:
        decoded = messages
    if isinstance(decoded, list):
        for message in decoded:
            if isinstance(message, dict):
                parts.append(f"{message.get('role', '?')}: {_content_text(message.get('content', message))}")
            else:
                parts.append(str(message))
    elif decoded:
        parts.append(str(decoded))
    return "\n".join(parts)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_content_text(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "content"):
            if isinstance(content.get(key), str | list):
                return _content_text(content[key])
    return json.dumps(content, ensure_ascii=False)


@dataclass
class Built:
    """The report's data: every panel's rows, before it becomes HTML."""

    start: datetime
    end: datetime
    interval_s: int
    sections: list[tuple[str, list[tuple[Tile | Chart | CallsTable, Any]]]]


def build(run: Runner, start: datetime, end: datetime) -> Built:
    """Run every panel's queries over [start, end]."""
    from tracehouse.collector.grafana_macros import ExpansionError
    from tracehouse.collector.query import NoStore, QueryFailed
    from tracehouse.dashboards.queries import calls_prompts

    interval_s = interval_for(start, end)

    def rows(source: Source, title: str) -> Rows:
        try:
            return run(expand_for_report(source.sql, start, end, interval_s))
        except NoStore as exc:
            raise ReportFailed(str(exc)) from None
        except (QueryFailed, ExpansionError) as exc:
            raise ReportFailed(f"panel “{title}”: {exc}") from None

    built: list[tuple[str, list[tuple[Tile | Chart | CallsTable, Any]]]] = []
    for heading, items in sections():
        done: list[tuple[Tile | Chart | CallsTable, Any]] = []
        for item in items:
            if isinstance(item, Tile):
                found = rows(item.source, item.title)
                done.append((item, _number(found[0].get(item.column)) if found else None))
            elif isinstance(item, Chart):
                results = [rows(source, item.title) for source in item.sources]
                done.append((item, (chart_data(item, results, start, end, interval_s), results[0])))
            else:
                calls = rows(item.source, item.title)
                ids = [str(c["span_id"]) for c in calls if re.fullmatch(r"[0-9A-Fa-f]+", str(c.get("span_id", "")))]
                prompts: dict[str, str] = {}
                if ids:
                    for found in rows(Source(calls_prompts(", ".join(map(_quote, ids))), ""), item.title):
                        prompts[found["id"]] = prompt_text(
                            found.get("system_prompt") or "", found.get("messages") or ""
                        )
                done.append((item, [{**c, "prompt": prompts.get(str(c.get("span_id")), "")} for c in calls]))
        built.append((heading, done))
    return Built(start, end, interval_s, built)


# --- HTML -------------------------------------------------------------------------------------------


def chart_js() -> str:
    """The vendored Chart.js, without its source-map comment (nothing may be fetched)."""
    text = resources.files("tracehouse.collector").joinpath("report_assets", CHART_JS).read_text(encoding="utf-8")
    text = re.sub(r"\s*//# sourceMappingURL=\S+\s*$", "\n", text)
    if "</script" in text.lower() or "<!--" in text:
        raise ReportFailed(f"report_assets/{CHART_JS} cannot be inlined: it contains </script or <!--")
    return text


def json_for_script(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">: `<`, `>`, `&` and the line separators
    escaped, so `</script>` or `<!--` in a value cannot end or change the element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def format_value(value: Any, unit: str) -> str:
    """A cell or tile value as the dashboards show it."""
    if unit in ("text", "time"):
        if value is None or value == "":
            return "–"
        return str(value)[:19] if unit == "time" else str(value)
    number = _number(value)
    if number is None:
        return "–"
    if unit == "usd":
        return f"${number:,.2f}" if abs(number) >= 1 else f"${number:.6f}".rstrip("0").rstrip(".") if number else "$0"
    if unit == "ms":
        return f"{number:,.0f} ms"
    if unit == "ratio":
        return f"{number * 100:.1f}%"
    return f"{number:,.0f}" if float(number).is_integer() else f"{number:,.3f}"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _cell(shown: str, text: bool) -> str:
    """A table cell; text that may be cut off at the column's width keeps its whole value as a tooltip."""
    if text:
        return f'<td class="txt" title="{_e(shown)}">{_e(shown)}</td>'
    return f'<td class="num">{_e(shown)}</td>'


def _table(columns: Sequence[Column], rows: Rows, with_prompt: bool = False) -> str:
    headers = [f"<th>{_e(c.header)}</th>" for c in columns]
    if with_prompt:
        headers.insert(PROMPT_AFTER, "<th>prompt</th>")
    head = "".join(headers)
    body = []
    for row in rows:
        cells = [_cell(format_value(row.get(c.name), c.unit), c.unit in ("text", "time")) for c in columns]
        if with_prompt:
            prompt = str(row.get("prompt") or "")
            shown = prompt[:PROMPT_CHARS] + ("…" if len(prompt) > PROMPT_CHARS else "")
            summary = " ".join(prompt.split())[:SUMMARY_CHARS] or "(no prompt stored)"
            cells.insert(
                PROMPT_AFTER,
                f'<td class="prompt"><details><summary>{_e(summary)}</summary><pre>{_e(shown)}</pre></details></td>',
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        return '<p class="empty">No rows in this range.</p>'
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _origin(sources: Sequence[Source]) -> str:
    described = "; ".join(s.description for s in sources if s.description)
    where = "; ".join(s.origin for s in sources)
    text = f"{described}. " if described else ""
    return f'<p class="origin">{_e(text)}Query: {_e(where)}.</p>'


def _tiles_origin(sources: Sequence[Source]) -> str:
    """The panels the tiles come from, by dashboard (each tile's description is its tooltip)."""
    by_dashboard: dict[str, list[str]] = {}
    for source in sources:
        dashboard, _, panel = source.origin.partition(" dashboard, panel ")
        by_dashboard.setdefault(dashboard, []).append(panel)
    where = "; ".join(
        f"{dashboard} dashboard, panels {', '.join(panels)}" for dashboard, panels in by_dashboard.items()
    )
    return f'<p class="origin">Queries: {_e(where)}.</p>'


APP_JS = """(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var palette = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16",
    "#f97316", "#6366f1", "#14b8a6", "#a855f7"];
  function format(unit, v) {
    if (v === null || v === undefined || isNaN(v)) return "\\u2013";
    if (unit === "usd") return "$" + (Math.abs(v) >= 1 ? v.toFixed(2) : Number(v.toPrecision(3)).toString());
    if (unit === "ms") return Math.round(v).toLocaleString("en-US") + " ms";
    if (unit === "ratio") return (v * 100).toFixed(1) + "%";
    return Number(v).toLocaleString("en-US");
  }
  window.tracehouseCharts = {};
  data.charts.forEach(function (spec) {
    var canvas = document.getElementById("chart-" + spec.key);
    if (!canvas || spec.labels.length === 0) return;
    var horizontal = spec.kind === "hbar";
    var type = horizontal ? "bar" : spec.kind;
    var datasets = spec.datasets.map(function (d, i) {
      var color = palette[i % palette.length];
      var out = {label: d.label, data: d.data, borderColor: color, backgroundColor: color};
      if (type === "doughnut") {
        out.backgroundColor = d.data.map(function (_, j) { return palette[j % palette.length]; });
        out.borderColor = "#fff";
      }
      if (type === "line") { out.spanGaps = false; out.pointRadius = 3; }
      return out;
    });
    var options = {
      animation: false, responsive: true, maintainAspectRatio: false, indexAxis: horizontal ? "y" : "x",
      plugins: {
        legend: {display: type === "doughnut" || datasets.length > 1, position: type === "doughnut" ? "right" : "top"},
        tooltip: {callbacks: {label: function (ctx) {
          var v = type === "doughnut" ? ctx.parsed : (horizontal ? ctx.parsed.x : ctx.parsed.y);
          return (type === "doughnut" ? ctx.label : ctx.dataset.label) + ": " + format(spec.unit, v);
        }}}
      }
    };
    if (type !== "doughnut") {
      var value = {stacked: spec.stacked, beginAtZero: true,
        ticks: {callback: function (v) { return format(spec.unit, v); }}};
      var category = {stacked: spec.stacked, ticks: {callback: function (v) {
        var label = String(this.getLabelForValue(v));
        return label.length > 28 ? label.slice(0, 27) + "\u2026" : label;
      }}};
      options.scales = horizontal ? {x: value, y: category} : {x: category, y: value};
    }
    var config = {type: type, data: {labels: spec.labels, datasets: datasets}, options: options};
    window.tracehouseCharts[spec.key] = new Chart(canvas, config);
  });
})();
"""

STYLE = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #f3f4f6; }
header { padding: 18px 28px; background: #111827; color: #f9fafb; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: #d1d5db; }
main { padding: 8px 28px 40px; }
h2 { margin: 26px 0 10px; font-size: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 14px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h3 { margin: 0 0 8px; font-size: 14px; }
.tile .value { font-size: 22px; font-weight: 600; }
.tile .title { color: var(--muted); font-size: 12px; }
.chart { position: relative; height: 280px; }
.origin { margin: 8px 0 0; color: var(--muted); font-size: 12px; }
.empty { color: var(--muted); font-style: italic; }
.scroll { overflow-x: auto; margin-top: 10px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.txt { white-space: nowrap; max-width: 240px; overflow: hidden; text-overflow: ellipsis; }
td.prompt { min-width: 240px; max-width: 360px; }
td.prompt summary { cursor: pointer; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
td.prompt pre { white-space: pre-wrap; word-break: break-word; margin: 6px 0 0; max-height: 320px; overflow: auto;
  background: #f9fafb; border: 1px solid var(--line); border-radius: 4px; padding: 6px; }
footer { padding: 0 28px 28px; color: var(--muted); font-size: 12px; }
"""


def render_html(built: Built, version: str) -> str:
    """The self-contained HTML document."""
    charts: list[dict[str, Any]] = []
    parts: list[str] = []
    for heading, items in built.sections:
        parts.append(f"<section><h2>{_e(heading)}</h2>")
        tiles = [(item, value) for item, value in items if isinstance(item, Tile)]
        if tiles:
            parts.append('<div class="tiles">')
            for tile, value in tiles:
                parts.append(
                    f'<div class="card tile" title="{_e(tile.source.description)}">'
                    f'<div class="value">{_e(format_value(value, tile.unit))}</div>'
                    f'<div class="title">{_e(tile.title)}</div></div>'
                )
            parts.append("</div>")
            parts.append(_tiles_origin([t.source for t, _ in tiles]))
        others = [(item, value) for item, value in items if not isinstance(item, Tile)]
        if others:
            parts.append('<div class="grid">')
        for item, value in others:
            if isinstance(item, Chart):
                data, rows = value
                charts.append(data)
                wide = " wide" if item.wide else ""
                body = (
                    f'<div class="chart"><canvas id="chart-{_e(item.key)}" role="img" aria-label="{_e(item.title)}">'
                    "</canvas></div>"
                    if data["labels"]
                    else '<p class="empty">No data in this range.</p>'
                )
                table = _table(item.table, rows) if item.table and rows else ""
                parts.append(
                    f'<div class="card{wide}" id="panel-{_e(item.key)}"><h3>{_e(item.title)}</h3>{body}{table}'
                    f"{_origin(item.sources)}</div>"
                )
            elif isinstance(item, CallsTable):
                parts.append(
                    f'<div class="card wide" id="panel-{_e(item.key)}"><h3>{_e(item.title)}</h3>'
                    f"{_table(item.columns, value, with_prompt=True)}{_origin([item.source])}</div>"
                )
        if others:
            parts.append("</div>")
        parts.append("</section>")
    library = chart_js()
    data_json = json_for_script({"charts": charts})
    policy = (
        f"default-src 'none'; script-src {_csp_hash(library)} {_csp_hash(APP_JS)}; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    span = f"{built.start:%Y-%m-%d %H:%M} – {built.end:%Y-%m-%d %H:%M} UTC"
    interval = f"{built.interval_s // 3600} h" if built.interval_s >= 3600 else f"{built.interval_s // 60} min"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>tracehouse report {_e(span)}</title>\n"
        f"<style>{STYLE}</style>\n"
        "</head><body>\n"
        f"<header><h1>tracehouse report</h1><p>{_e(span)} · time series per {_e(interval)} · "
        "totals over whole days from the daily rollup</p></header>\n"
        f"<main>{''.join(parts)}</main>\n"
        f"<footer>Made by tracehouse {_e(version)} at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC from the SQL of its "
        f"Grafana dashboards. Charts: Chart.js {CHART_JS_VERSION} (MIT licence).</footer>\n"
        f'<script type="application/json" id="report-data">{data_json}</script>\n'
        f"<script>{library}</script>\n"
        f"<script>{APP_JS}</script>\n"
        "</body></html>\n"
    )


# --- the command ------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `report` on the `tracehouse` parser. `--since` is parsed by parse_since (a time span or a
    date); it keeps the name `window` so it is not taken for the date-only `--since` of `prices`."""
    report = subparsers.add_parser("report", help="write the main dashboard panels as one self-contained HTML file")
    report.add_argument(
        "--since",
        dest="window",
        type=parse_since,
        default=parse_since(DEFAULT_SINCE),
        metavar="SPAN_OR_DATE",
        help=f"start of the time range: a span back from now (30m, 24h, 7d, 2w) or a UTC date or date-time"
        f" (default {DEFAULT_SINCE})",
    )
    report.add_argument("--out", "-o", default=DEFAULT_OUT, help=f"the HTML file to write (default {DEFAULT_OUT})")
    add_flags(report, "report")
    return report


def run(
    args: argparse.Namespace, config: Config, version: str, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """`tracehouse report`: run the panels' queries, write the file, say where it is. `version` is the
    installed tracehouse's, for the footer."""
    from tracehouse.collector.query import QueryCancelled

    out = out or sys.stdout
    err = err or sys.stderr
    end = datetime.now(UTC).replace(microsecond=0)
    start = args.window.start(end)
    if start >= end:
        print(f"tracehouse: --since {args.window.text} is not in the past", file=err)
        return 2
    try:
        built = build(store_runner(config), start, end)
    except ReportFailed as exc:
        print(f"tracehouse: report: {exc}", file=err)
        return 1
    except (QueryCancelled, KeyboardInterrupt):
        print("tracehouse: cancelled", file=err, flush=True)
        return 130
    path = Path(args.out)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render_html(built, version), encoding="utf-8")
    partial.replace(path)
    calls = next((value for _, items in built.sections for item, value in items if isinstance(item, Tile)), None)
    print(f"wrote {path} ({format_value(calls, 'count')} calls since {start:%Y-%m-%d %H:%M} UTC)", file=out)
    return 0
