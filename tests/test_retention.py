"""Retention end to end on a real collector and the real engine: spans of several ages sent with the OTel
SDK's OTLP exporter under a long policy (everything kept), then a restart with a shorter one and the TTL
merge forced: content gone and metadata kept where the policy says, whole spans gone past metadata_days,
the daily rollup's costs unchanged; then the policy removed by another restart. Plus the settings' bad
input, each refused naming the setting."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows

from tracehouse.collector.config import ConfigError, parse_config
from tracehouse.collector.retention import Override, RetentionSettings, placeholders

pytestmark = pytest.mark.timeout(240)

DAY_NS = 86_400 * 1_000_000_000
LONG_POLICY = """
[retention]
content_days = 1000
metadata_days = 2000
"""
README = Path(__file__).parent.parent / "README.md"
# The README's example policy, run as written.
POLICY = README.read_text().split("<!-- retention-example -->\n```toml\n", 1)[1].split("```", 1)[0]
PROMPT = "Summarise the contract for Jane"
ANSWER = "The contract renews in May"
# (name, service, age in days)
SPANS = (
    ("fresh", "shop", 0),
    ("recent", "shop", 3),
    ("bot-recent", "support-bot", 10),
    ("month-old", "shop", 60),
    ("ancient", "shop", 500),
)


def _send(collector: CollectorProcess) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    now = time.time_ns()
    providers = {}
    for service in {service for _, service, _ in SPANS}:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url)))
        providers[service] = provider
    for name, service, age in SPANS:
        start = now - age * DAY_NS
        span = providers[service].get_tracer("retention-test").start_span(name, start_time=start)
        span.set_attributes(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.provider": "openai",
                "llm.token_count.prompt": 1000,
                "llm.token_count.completion": 100,
                "input.value": PROMPT,
                "output.value": ANSWER,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": PROMPT,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": ANSWER,
                "app.customer_tier": "gold",
            }
        )
        span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": PROMPT}, timestamp=start)
        span.end(end_time=start + 1_000_000)
    for provider in providers.values():
        provider.shutdown()


def _force_ttl_merge(data_dir: Path) -> None:
    """What ClickHouse does in its own time (merge_with_ttl_timeout), now: in a process of its own, since
    chDB opens one store per process."""
    script = (
        "import clickhouse_connect, sys\n"
        "c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
        "for table in ('otel_traces', 'llm_daily', 'otel_traces_trace_id_ts'):\n"
        "    c.command(f'OPTIMIZE TABLE {table} FINAL')\n"
    )
    store = (data_dir / "clickhouse").resolve()
    subprocess.run([sys.executable, "-c", script, str(store)], check=True, timeout=120)


def _spans(data_dir: Path) -> dict[str, dict]:
    rows = sql_rows(
        data_dir,
        "SELECT SpanName, ServiceName, InputMessages, OutputMessages, SpanAttributes, Events.Name AS event_names,"
        " Events.Attributes AS event_attributes, InputTokens, CostUsd FROM otel_traces",
    )
    return {row["SpanName"]: row for row in rows}


DAILY = "SELECT toString(day) AS day, sum(cost_usd) AS cost, sum(calls) AS calls FROM llm_daily GROUP BY day"
DAILY += " ORDER BY day"


def _status(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "retention", "status", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def expired(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("retention")
    long_config, config = work / "long.toml", work / "tracehouse.toml"
    long_config.write_text(LONG_POLICY)
    config.write_text(POLICY)
    collector = CollectorProcess(work / "data", "--config", str(long_config)).start()
    try:
        _send(collector)
        before = _spans(collector.data_dir)
        daily_before = sql_rows(collector.data_dir, DAILY)
    finally:
        assert collector.stop() == 0
    first_log = collector.log()
    collector = CollectorProcess(work / "data", "--config", str(config)).start()
    assert collector.stop() == 0
    _force_ttl_merge(collector.data_dir)
    return {
        "work": work,
        "config": config,
        "collector": collector,
        "before": before,
        "after": _spans(collector.data_dir),
        "daily_before": daily_before,
        "daily_after": sql_rows(collector.data_dir, DAILY),
        "first_log": first_log,
        "log": collector.log(),
    }


def test_every_span_arrived_with_its_content_and_its_metadata_copy(expired: dict) -> None:
    before = expired["before"]
    assert set(before) == {name for name, _, _ in SPANS}
    for row in before.values():
        assert PROMPT in row["InputMessages"] and ANSWER in row["OutputMessages"]
        assert row["SpanAttributes"]["input.value"] == PROMPT
    applied = "retention applied (ALTER TABLE ... MODIFY TTL): "
    assert applied + "content 1000 days, metadata 2000 days" in expired["first_log"]
    assert applied + "content 30 days, metadata 400 days" in expired["log"]


def test_content_expires_per_policy_and_metadata_stays(expired: dict) -> None:
    after = expired["after"]
    for name in ("fresh", "recent"):  # younger than 30 days, service shop
        assert PROMPT in after[name]["InputMessages"] and ANSWER in after[name]["OutputMessages"]
        assert after[name]["SpanAttributes"]["llm.input_messages.0.message.content"] == PROMPT
        assert after[name]["event_attributes"] == [{"gen_ai.prompt": PROMPT}]
    for name in ("bot-recent", "month-old"):  # 10 days past support-bot's 7; 60 past the default 30
        row = after[name]
        assert (row["InputMessages"], row["OutputMessages"]) == ("", "")
        attributes = row["SpanAttributes"]
        assert not [key for key in attributes if key.startswith(("input.", "output.", "llm.input_", "llm.output_"))]
        assert attributes["app.customer_tier"] == "gold" and attributes["llm.model_name"] == "gpt-4o-mini"
        assert row["event_names"] == ["gen_ai.content.prompt"] and row["event_attributes"] == [{}]
        assert int(row["InputTokens"]) == 1000 and row["CostUsd"] == expired["before"][name]["CostUsd"] > 0


def test_spans_past_metadata_days_are_gone_and_the_rollup_keeps_their_cost(expired: dict) -> None:
    assert "ancient" not in expired["after"]
    assert len(expired["daily_before"]) == len(SPANS)  # one day each
    assert expired["daily_after"] == expired["daily_before"]


def test_status_shows_the_policy_what_is_held_and_bytes_by_age(expired: dict) -> None:
    out = _status(expired["collector"].data_dir, "--config", str(expired["config"]))
    assert out.splitlines()[0] == (
        "policy     content 30 days, metadata 400 days, rollup forever;"
        " service 'support-bot': content 7 days, metadata 400 days"
    )
    assert "store      has this policy" in out
    recent = expired["after"]["recent"]
    assert "held       4 spans" in out and recent is not None
    oldest = sql_rows(
        expired["collector"].data_dir, "SELECT toString(min(Timestamp)) AS t FROM otel_traces WHERE SpanName = 'recent'"
    )[0]["t"]
    assert f"oldest content {oldest}" in out
    buckets = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert buckets == ["<", "7-30", "30-90"], out  # fresh+recent, bot-recent, month-old


def test_a_changed_policy_applies_at_restart(expired: dict) -> None:
    """Without [retention] the TTLs are removed at the next start, logged; status says the store keeps all."""
    collector = CollectorProcess(expired["work"] / "data").start()
    assert collector.stop() == 0
    assert "retention applied (ALTER TABLE ... MODIFY TTL): content forever, metadata forever" in collector.log()
    tables = sql_rows(
        collector.data_dir,
        "SELECT name, create_table_query FROM system.tables WHERE name IN ('otel_traces', 'scores', 'llm_daily')",
    )
    assert len(tables) == 3 and not [t["name"] for t in tables if " TTL " in t["create_table_query"]]
    assert "store      keeps everything (no TTL)" in _status(collector.data_dir)


# -- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "environ", "message"),
    [
        ({"retention": {"content_days": -1}}, {}, "retention.content_days must be between 0 (keep forever) and"),
        ({"retention": {"metadata_days": 1.5}}, {}, "retention.metadata_days must be a whole number of days"),
        ({"retention": {"content_days": True}}, {}, "retention.content_days must be a whole number of days"),
        ({}, {"TRACEHOUSE_CONTENT_DAYS": "thirty"}, "TRACEHOUSE_CONTENT_DAYS must be a whole number of days"),
        ({"retention": {"content_day": 3}}, {}, "unknown setting 'content_day'; did you mean 'content_days'?"),
        ({"retention": {"override": [{"content_days": 3}]}}, {}, "retention.override[0] needs a service or a feature"),
        ({"retention": {"override": [{"service": "x"}]}}, {}, "sets neither content_days nor metadata_days"),
        ({"retention": {"override": [{"service": "x", "days": 1}]}}, {}, "unknown setting 'days'"),
        ({"retention": {"override": {"service": "x"}}}, {}, "must be an array of tables: [[retention.override]]"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(document: dict, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, environ=environ)
    assert message in str(caught.value)


def test_the_environment_sets_the_periods() -> None:
    config = parse_config({}, environ={"TRACEHOUSE_CONTENT_DAYS": "14", "TRACEHOUSE_METADATA_DAYS": "90"})
    assert (config.retention.content_days, config.retention.metadata_days) == (14, 90)


def test_the_ttl_expressions() -> None:
    """One expression per kind, overrides first; an override that keeps forever never expires (no wrap)."""
    overrides = (Override(service="it's", content_days=0), Override(feature="f", content_days=3))
    settings = RetentionSettings(30, 0, 0, overrides)
    rendered = placeholders(settings)
    days = "multiIf(ServiceName = 'it\\'s', 0, Feature = 'f', 3, 30)"
    assert rendered["content"] == (
        f"TTL if({days} = 0, toDateTime(4294967295), toDateTime(Timestamp) + toIntervalDay({days}))"
    )
    assert rendered["rows"] == "REMOVE TTL"
    assert rendered["score_content"] == "REMOVE TTL"  # an override keeps some content forever: so do scores
    assert placeholders(RetentionSettings(30, 400))["content"] == "TTL toDateTime(Timestamp) + toIntervalDay(30)"
