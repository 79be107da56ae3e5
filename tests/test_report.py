"""`tracehouse report`: the dashboards' main panels as one self-contained HTML file.

Spans go through the real collector (OTLP/HTTP exporter, the known traffic of test_dashboards_data.py plus
one slow call whose prompt tries to break out of the page's script), `tracehouse report` runs as a user
runs it, with the collector up (its query endpoint) and after it stopped (the store itself), and the file
is opened in Debian's Chromium, headless and offline, driven by playwright: it renders, every chart has
data points and paints its canvas, nothing logs an error, nothing is fetched, nothing the store holds runs
as script. The screenshot in the README (docs/report.png) is this test's: UPDATE_REPORT_SCREENSHOT=1
rewrites it.

Hand computations (genai-prices 0.2.3, see test_dashboards.py): yesterday chat 9 x 0.00045 = 0.00405,
summarize 10 x 0.021 = 0.21; today chat 0.002904 plus the extra call (100 in, 50 out: 0.000045),
summarize 9 x 0.021 = 0.189.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from collector_process import wait_drained
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_dashboards_data import EMAIL, load

from tracehouse.collector import grafana_macros as the_expansion
from tracehouse.collector import report

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "report.png"
CHROMIUM = "/usr/bin/chromium"
# What Chromium needs on this machine (no network, root, no GPU): /work/.library/env/machines/python.md.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BREAKOUT = "</script><script>alert(1)</script>"
EXTRA_PROMPT = f"Why is this slow? {BREAKOUT} <img src=x onerror=alert(2)> & done"
# The extra call's user: it is a label of the top-users chart, so it travels in the page's JSON too.
EXTRA_USER = f"u-dave{BREAKOUT}"
MS = 1_000_000
# The tests on the store share a fixture that, near midnight, waits for the next day (test_dashboards_data.load).
STORE_TIMEOUT = pytest.mark.timeout(900)


# --- without a store ----------------------------------------------------------------------------------


def _items() -> list:
    return [item for _, items in report.sections() for item in items]


def _sources() -> list[report.Source]:
    found = []
    for item in _items():
        found.extend(item.sources if isinstance(item, report.Chart) else [item.source])
    return found


def test_every_panel_runs_the_sql_grafana_runs():
    """One definition of each query: a report panel's SQL is the dashboard JSON's rawSql, to the byte."""
    shipped = {}
    for path in (ROOT / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                shipped[(dashboard["title"], panel["title"])] = target.get("rawSql")
    from_dashboards = [s for s in _sources() if "dashboard, panel" in s.origin]
    assert len(from_dashboards) >= 12
    for source in from_dashboards:
        dashboard, _, title = source.origin.partition(" dashboard, panel ")
        assert shipped[(dashboard, title.strip("“”"))] == source.sql, source.origin
    from tracehouse.dashboards import queries

    others = [s for s in _sources() if s not in from_dashboards]
    assert [s.sql for s in others] == [queries.TOP_FEATURES_BY_SPEND]


def test_the_macros_are_expanded_by_the_one_expansion_the_dashboard_tests_use():
    import grafana_macros  # tests/grafana_macros.py, what test_dashboards.py expands with

    assert grafana_macros.expand is the_expansion.expand
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC)
    expanded = report.expand_for_report(
        "SELECT 1 WHERE $__timeFilter(ts) AND $__conditionalAll(x IN ($user), $user)", start, end, 3600
    )
    window = f"ts >= toDateTime({int(start.timestamp())}) AND ts <= toDateTime({int(end.timestamp())})"
    assert expanded == f"SELECT 1 WHERE {window} AND 1=1"
    for source in _sources():  # every panel expands with every filter at All, nothing left over
        assert "$" not in report.expand_for_report(source.sql, start, end, 3600).replace("'$", "")


def test_since_takes_a_span_or_a_date_and_names_a_bad_value():
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert report.parse_since("7d").start(now) == now - timedelta(days=7)
    assert report.parse_since("30m").start(now) == now - timedelta(minutes=30)
    assert report.parse_since("2w").start(now) == now - timedelta(days=14)
    assert report.parse_since("2026-03-01").start(now) == datetime(2026, 3, 1, tzinfo=UTC)
    for bad in ("7 days", "0d", "yesterday", "-1d"):
        with pytest.raises(Exception, match="--since|not a time span"):
            report.parse_since(bad)
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "report", "--since", "soon"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "not a time span or a date: 'soon'" in result.stderr


def test_the_interval_keeps_a_series_within_its_points():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert report.interval_for(start, start + timedelta(days=7)) == 3 * 3600
    assert report.interval_for(start, start + timedelta(hours=1)) == 60
    assert report.interval_for(start, start + timedelta(days=365)) == 86_400


def test_values_in_the_json_cannot_end_the_script_element():
    data = {"label": BREAKOUT, "other": "<!-- x -->", "amp": "a & b", "sep": "\u2028\u2029"}
    text = report.json_for_script(data)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == data
    with pytest.raises(ValueError):
        report.json_for_script({"x": float("nan")})  # never the invalid JSON NaN


def test_the_vendored_chart_js_is_the_release_named():
    asset = ROOT / "collector" / "report_assets" / report.CHART_JS
    assert hashlib.sha256(asset.read_bytes()).hexdigest() == report.CHART_JS_SHA256
    assert asset.read_text()[:60].count(f"Chart.js v{report.CHART_JS_VERSION}") == 1
    notes = (ROOT / "collector" / "report_assets" / "README.md").read_text()
    assert report.CHART_JS_VERSION in notes and report.CHART_JS_SHA256 in notes
    assert "MIT License" in (ROOT / "collector" / "report_assets" / "chart.js-LICENSE.md").read_text()
    inlined = report.chart_js()
    assert "sourceMappingURL" not in inlined and "</script" not in inlined.lower()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"tracehouse.collector.report_assets" = ["*"]' in pyproject  # shipped in the wheel and the sdist


def test_prompt_text_reads_the_stored_messages():
    messages = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"text": "yo"}]}])
    assert report.prompt_text("be brief", messages) == "system: be brief\nuser: hi\nassistant: yo"
    assert report.prompt_text("", "not json") == "not json"
    assert report.prompt_text("", "") == ""


def test_format_value_as_the_dashboards_units():
    assert report.format_value(0.00045, "usd") == "$0.00045"
    assert report.format_value(12.5, "usd") == "$12.50"
    assert report.format_value(0.25, "ratio") == "25.0%"
    assert report.format_value(1234.4, "ms") == "1,234 ms"
    assert report.format_value(None, "ms") == "–"
    assert report.format_value(65, "count") == "65"


# --- on a store filled through the collector ----------------------------------------------------------


def _send_the_breakout_call(collector, now: int) -> None:
    """One call, the slowest of all, whose prompt tries to leave the page's script and markup."""
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, timeout=30)))
    tracer = provider.get_tracer("tracehouse-tests")
    start = (now - 20) * 1_000_000_000
    root = tracer.start_span("chat request", start_time=start, attributes={"tracehouse.feature": "chat"})
    child = tracer.start_span(
        "ChatCompletion",
        context=trace.set_span_in_context(root),
        start_time=start + MS,
        attributes={
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": EXTRA_PROMPT,
            "llm.token_count.prompt": 100,
            "llm.token_count.completion": 50,
            "llm.finish_reason": "stop",
            "user.id": EXTRA_USER,
            "tracehouse.feature": "chat",
        },
    )
    child.end(end_time=start + MS + 9000 * MS)
    root.end(end_time=start + 2 * MS + 9000 * MS)
    provider.force_flush()
    provider.shutdown()
    wait_drained(collector.data_dir)


def _tracehouse_report(data_dir: Path, out: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "report", "--data-dir", str(data_dir), "--since", "7d"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def _stop_a_collector_left_in(data_dir: Path) -> None:
    """load() starts the collector before it waits: if the wait is interrupted, stop what it started."""
    try:
        pid = json.loads((data_dir / "collector.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The report written through the running collector, and again on the store after it stopped."""
    base = tmp_path_factory.mktemp("report")
    try:
        collector, data = load(base / "data")  # near midnight it waits for the next day (minutes)
    except BaseException:
        _stop_a_collector_left_in(base / "data")
        raise
    try:
        _send_the_breakout_call(collector, data.now)
        through_endpoint = base / "through-endpoint.html"
        result = _tracehouse_report(data.store.collector.data_dir, through_endpoint)
    finally:
        collector.stop()
    on_store = base / "on-store.html"
    _tracehouse_report(base / "data", on_store)
    return {"endpoint": through_endpoint, "store": on_store, "stdout": result.stdout, "dir": base}


def _data_block(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


def _charts(page: str) -> dict[str, dict]:
    return {chart["key"]: chart for chart in _data_block(page)["charts"]}


@STORE_TIMEOUT
def test_the_report_says_what_it_wrote(reports):
    assert re.fullmatch(
        r"wrote \S+through-endpoint\.html \(65 calls since \d{4}-\d\d-\d\d \d\d:\d\d UTC\)\n", reports["stdout"]
    )


@STORE_TIMEOUT
def test_with_and_without_a_running_collector_the_report_is_the_same(reports):
    endpoint, store = reports["endpoint"].read_text(), reports["store"].read_text()
    assert _data_block(endpoint) == _data_block(store)
    strip = lambda page: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?", "T", page)  # noqa: E731
    assert strip(endpoint) == strip(store)


@STORE_TIMEOUT
def test_the_numbers_are_the_dashboards(reports):
    page = reports["endpoint"].read_text()
    charts = _charts(page)
    cost = charts["cost-by-day-and-feature"]
    by_feature = {d["label"]: dict(zip(cost["labels"], d["data"], strict=True)) for d in cost["datasets"]}
    today = datetime.now(UTC).date()
    assert len(cost["labels"]) == 8 and cost["labels"][-1] == today.isoformat()
    assert by_feature["summarize"][(today - timedelta(days=1)).isoformat()] == pytest.approx(0.21)
    assert by_feature["summarize"][today.isoformat()] == pytest.approx(0.189)
    assert by_feature["chat"][today.isoformat()] == pytest.approx(0.002904 + 0.000045)
    assert by_feature["search"][today.isoformat()] == 0  # unpriced: no cost, not a made-up one
    features = charts["top-features"]
    assert features["labels"][:3] == ["summarize", "chat", "search"]
    assert features["datasets"][0]["data"][0] == pytest.approx(0.399)
    users = charts["top-users"]
    assert users["labels"][0] == "u-carol" and users["datasets"][0]["data"][0] == pytest.approx(0.399)
    assert users["labels"][-1] == EXTRA_USER  # the JSON carries the value whole
    latency = charts["latency-by-model"]
    assert [d["label"] for d in latency["datasets"]] == ["p50", "p95", "p99", "time to first token p50"]
    claude = latency["labels"].index("anthropic / claude-3-5-sonnet")
    assert latency["datasets"][3]["data"][claude] == pytest.approx(250)
    errors = dict(zip(charts["errors-by-type"]["labels"], charts["errors-by-type"]["datasets"][0]["data"], strict=True))
    assert errors == {"RateLimitError": 2, "APITimeoutError": 2}
    reasons = dict(
        zip(charts["finish-reasons"]["labels"], charts["finish-reasons"]["datasets"][0]["data"], strict=True)
    )
    assert reasons["content_filter"] == 2
    rates = charts["error-and-refusal-rates"]
    assert [d["label"] for d in rates["datasets"]] == ["error rate", "refusal rate"]
    assert max(v for v in rates["datasets"][1]["data"] if v is not None) > 0
    tiles = dict(re.findall(r'<div class="value">([^<]*)</div><div class="title">([^<]*)</div>', page))
    assert {v: k for k, v in tiles.items()}["Calls"] == "65"
    assert {v: k for k, v in tiles.items()}["Unpriced calls"] == "24"


@STORE_TIMEOUT
def test_prompts_are_shown_as_text_and_redacted(reports):
    page = reports["endpoint"].read_text()
    assert BREAKOUT not in page and "<img src=x" not in page
    assert html.escape(EXTRA_PROMPT) in page  # the slowest call's prompt, as text
    assert EMAIL not in page  # redacted at ingest; the report shows what the store holds
    slowest = page.split('id="panel-slowest-calls"')[1].split('id="panel-most-expensive-calls"')[0]
    assert slowest.index("u-dave") < slowest.index("u-carol")  # 9 s before the 2 s summaries
    assert page.count("<script") == 3


def _chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)"
    return None


@STORE_TIMEOUT
def test_the_report_renders_in_chromium_offline(reports, tmp_path):
    missing = _chromium_missing()
    assert missing is None, missing
    from playwright.sync_api import sync_playwright

    page_file = reports["endpoint"]
    expected_charts = set(_charts(page_file.read_text()))
    console: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            offline=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            context.route(
                "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
            )
            page = context.new_page()
            page.on(
                "console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
            )
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_function("Object.keys(window.tracehouseCharts || {}).length > 0")
            charts = page.evaluate(
                """() => Object.entries(window.tracehouseCharts).map(([key, chart]) => {
                  const points = chart.data.datasets.reduce(
                    (n, d) => n + d.data.filter(v => typeof v === "number" && v > 0).length, 0);
                  const canvas = chart.canvas;
                  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                  let painted = 0;
                  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
                  return {key, type: chart.config.type, points, painted, width: canvas.width,
                          drawn: chart.getDatasetMeta(0).data.length};
                })"""
            )
            scripts = page.evaluate("() => document.scripts.length")
            user_labels = page.evaluate("() => window.tracehouseCharts['top-users'].data.labels")
            prompt_text = page.locator("#panel-slowest-calls pre").first.text_content()
            page.locator("#panel-slowest-calls details").first.evaluate("d => d.open = true")
            # The whole page in the viewport, and the charts settled at its width, before the screenshot.
            page.set_viewport_size({"width": 1280, "height": page.evaluate("document.documentElement.scrollHeight")})
            page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
            page.wait_for_timeout(300)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot))
        finally:
            context.close()
    assert {c["key"] for c in charts} == expected_charts
    for chart in charts:
        assert chart["points"] > 0, chart  # every chart has data points
        assert chart["drawn"] > 0 and chart["width"] > 0 and chart["painted"] > 1000, chart  # and drew them
    assert console == []
    assert dialogs == []  # nothing the store holds ran as script
    assert requests == [page_file.as_uri()]  # the page itself and nothing else
    assert scripts == 3
    assert EXTRA_USER in user_labels  # drawn as text on the canvas, not parsed as markup
    assert prompt_text == f"user: {EXTRA_PROMPT}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if os.environ.get("UPDATE_REPORT_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_the_readme_shows_the_screenshot():
    assert SCREENSHOT.exists()
    assert "](docs/report.png)" in (ROOT / "README.md").read_text()


def test_report_refuses_a_start_in_the_future(tmp_path):
    future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "report", "--data-dir", str(tmp_path), "--since", future],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "is not in the past" in result.stderr
