"""Builds the Grafana dashboards in this folder; `python dashboards/build.py` rewrites the JSON files.

The JSON files are what Grafana loads (provisioned by deploy/, or imported by hand); the builders keep
what they share consistent: panel ids and grid positions, the datasource variables, the service /
feature / provider / model / user filters, units, and the trace links. Edit the builders, run this,
commit both; tests/test_dashboards.py fails when the JSON and the builders disagree.

Where things are:
- queries.py: the SQL the dashboards share (the model expression MODEL, the filters, the daily rollup
  source, one trace's spans, queries more than one panel runs);
- panels.py: data sources, variables, query targets, panel builders, trace links, Layout, dashboard();
- one module per dashboard, each with one function that returns the dashboard: overview, cost,
  quality (latency and quality), traces, trace_detail, prompts, feedback (feedback and review),
  batches, collector_health.

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
  same panel reads the raw spans instead (see queries.daily). Cost per call by model too: the rollup holds
  the priced calls and a quantile state of their cost (schema/0022). Other percentiles, users, prompts and
  single calls need the spans and read them over the exact time range.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _package() -> str:
    """The package the dashboard modules are imported from. Imported as tracehouse.dashboards.build,
    that is this file's own; run as `python dashboards/build.py`, or loaded from its path (as
    tests/test_dashboards.py does), this folder is loaded as the package `tracehouse_dashboards`,
    because the modules import each other relatively."""
    if __package__:
        return __package__
    name = "tracehouse_dashboards"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, HERE / "__init__.py", submodule_search_locations=[str(HERE)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return name


_PACKAGE = _package()


def _builder(module: str) -> Callable[[], dict[str, Any]]:
    """The function of the same name in this folder's `module`."""
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), module)


# JSON file -> the function that builds it.
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "llm-overview.json": _builder("overview"),
    "cost.json": _builder("cost"),
    "latency-quality.json": _builder("quality"),
    "traces.json": _builder("traces"),
    "trace-detail.json": _builder("trace_detail"),
    "prompts.json": _builder("prompts"),
    "feedback.json": _builder("feedback"),
    "batches.json": _builder("batches"),
    "collector-health.json": _builder("collector_health"),
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
