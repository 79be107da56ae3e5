"""The daily rollup by user `llm_user_daily` (schema/0023) and the panel that reads it, "Top users by spend" on
the Cost dashboard, on the real engine: spans of several days, tenants, services, features, models and users
(priced, unpriced, without a user, not a call) stored through the collector's insert path. The panel's answer
(whole days from the rollup, the partial days at the range's ends from the spans) is the old span-only query's
for ranges across days, at midnights and within one day, under every filter; reprice rebuilds the rollup with
the new costs; `tracehouse forget --user` removes the user's rows (a hashed id, the real collector) without
writing the id into the mutation; the rollup has the rollup TTL."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from collector_process import CollectorProcess, wait_drained
from test_forget import HASHED, _send, forget

from tracehouse.collector import grafana_macros as gm
from tracehouse.collector import store
from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.config import Config, parse_config
from tracehouse.collector.forget import Subject, erase_on_store
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.reprice import reprice
from tracehouse.collector.retention import RetentionSettings
from tracehouse.collector.stages.price import build
from tracehouse.collector.writer import TraceStore
from tracehouse.dashboards.cost import cost
from tracehouse.dashboards.queries import RAW_FILTERS

pytestmark = pytest.mark.timeout(240)

PRICES_V1 = """
[[price]]
model = "house-model"
input = 1
output = 2
"""
PRICES_V2 = """
[[price]]
model = "house-model"
input = 0.5
output = 1
"""

# The panel as it was before the rollup by user: every span of the range.
SPANS_ONLY = f"""
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
"""

USERS = ["u1", "u2", "u3", "u4", "u5", "u6", ""]
MODELS = [("house-model", ""), ("gpt-4o-mini", "openai"), ("mystery-model", "openai"), ("", "")]
DAYS = [date(2025, 3, d) for d in range(1, 6)]
# Seconds into a day: midnight itself, the range ends below, the day's last second.
TIMES = [0, 1, 6 * 3600, 10 * 3600, 12 * 3600, 14 * 3600 + 1800, 20 * 3600, 86399]


def _ns(day: date, second: int, nano: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + second) * 1_000_000_000 + nano


def _row(ts: int, user: str, tenant: str, service: str, feature: str, model: str, provider: str, n: int) -> dict:
    row = {
        "Timestamp": ts,
        "TraceId": secrets.token_hex(16),
        "SpanId": secrets.token_hex(8),
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": "chat" if model else "lookup",
        "SpanKind": "Client",
        "ServiceName": service,
        "ResourceAttributes": {},
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": {},
        "Duration": 1_000_000,
        "StatusCode": "Unset",
        "StatusMessage": "",
        "Events.Timestamp": [],
        "Events.Name": [],
        "Events.Attributes": [],
        "Links.TraceId": [],
        "Links.SpanId": [],
        "Links.TraceState": [],
        "Links.Attributes": [],
        "LlmSpanKind": "LLM" if model else "TOOL",
        "LlmProvider": provider,
        "LlmRequestModel": model,
        "LlmResponseModel": "",
        "Feature": feature,
        "InputTokens": 100 + n * 7 if model else None,
        "OutputTokens": 10 + n * 3 if model else None,
        "CacheReadTokens": None,
        "CacheWriteTokens": None,
        "ReasoningTokens": None,
        "InputAudioTokens": None,
        "OutputAudioTokens": None,
        "UserId": user,
        "TenantId": tenant,
    }
    assert list(row)[: len(OTEL_COLUMNS)] == list(OTEL_COLUMNS)
    return row


def _spans() -> list[dict]:
    """About 600 spans: every day and time slot, users in both tenants, a few spans a nanosecond around midnight."""
    rng = random.Random(19)
    rows = []
    n = 0
    for day in DAYS:
        for second in TIMES:
            for _ in range(15):
                model, provider = rng.choice(MODELS)
                rows.append(
                    _row(
                        _ns(day, second, rng.choice([0, 0, 1, 999_999_999])),
                        rng.choice(USERS),
                        rng.choice(["t1", "t2"]),
                        rng.choice(["svc-a", "svc-b"]),
                        rng.choice(["chat", "search", ""]),
                        model,
                        provider,
                        n,
                    )
                )
                n += 1
    return rows


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    """A migrated embedded store holding _spans() priced with PRICES_V1, and a Config pointing at both."""
    monkeypatch.delenv("TRACEHOUSE_PRICE_FILE", raising=False)
    price_file = tmp_path / "prices.toml"
    price_file.write_text(PRICES_V1)
    config = parse_config({"data_dir": str(tmp_path / "data"), "pricing": {"price_file": str(price_file)}}, environ={})
    rows = _spans()
    batch = build(config).price(SpanBatch({name: [r[name] for r in rows] for name in rows[0]}))
    writer = TraceStore(config.store_url)  # the collector's own insert path: the views fill the rollups
    half = len(rows) // 2
    for part in (slice(0, half), slice(half, None)):  # two inserts: the rollup holds rows to merge per key
        columns = {name: values[part] for name, values in batch.columns.items()}
        writer.insert(*encode_rows(SpanBatch(columns)))
    client = store.connect(config.store_url)
    yield config, client, price_file
    client.close()
    writer.close()


def _panel() -> str:
    (panel,) = [p for p in cost()["panels"] if p.get("title") == "Top users by spend"]
    return panel["targets"][0]["rawSql"]


def _context(start: str, end: str) -> gm.QueryContext:
    return gm.QueryContext(datetime.fromisoformat(start + "+00:00"), datetime.fromisoformat(end + "+00:00"))


def _variables(**chosen: list[str]) -> dict[str, gm.Variable]:
    options = {
        "service": ["svc-a", "svc-b"],
        "feature": ["chat", "search"],
        "provider": ["openai"],
        "model": ["house-model", "gpt-4o-mini", "mystery-model"],
        "user": [u for u in USERS if u],
    }
    return {name: gm.Variable(name, chosen.get(name, [gm.ALL]), values) for name, values in options.items()}


RANGES = [
    ("2025-03-01 10:00:00", "2025-03-05 14:30:00"),  # five days, both ends mid-day, on a slot's second
    ("2025-03-02 00:00:00", "2025-03-04 00:00:00"),  # midnight to midnight
    ("2025-03-03 06:00:00", "2025-03-03 20:00:00"),  # within one day
    ("2025-03-02 12:00:00", "2025-03-03 12:00:00"),  # two adjacent partial days, no whole day
    ("2025-03-01 23:59:59", "2025-03-05 00:00:01"),  # one second of each end day
    ("2025-02-20 00:00:00", "2025-03-10 00:00:00"),  # past the data on both sides
    ("2025-03-04 13:00:00", "2025-03-04 14:30:00"),  # within one afternoon
    ("2025-03-04 06:00:00", "2025-03-04 10:00:00"),  # within one morning
    ("2025-03-01 12:00:00", "2025-03-05 11:59:59"),  # the ends at the half day: one side in R, the other not
    ("2025-03-01 11:59:59", "2025-03-05 12:00:00"),
]
FILTERS = [
    {},
    {"service": ["svc-a"], "user": ["u1", "u3"]},
    {"feature": ["chat"], "model": ["house-model"]},
    {"provider": ["openai"]},
    {"model": ["mystery-model"], "service": ["svc-b"]},
]


def _answers(client, context: gm.QueryContext, variables: dict) -> tuple[list, list]:
    new = client.query(gm.expand(_panel(), variables, context)).result_rows
    old = client.query(gm.expand(SPANS_ONLY, variables, context)).result_rows
    return new, old


@pytest.mark.parametrize("start,end", RANGES)
def test_the_panel_answers_as_the_spans_do_for_every_range_and_filter(env, start, end):
    _, client, _ = env
    assert "FROM llm_user_daily" in _panel()
    for chosen in FILTERS:
        new, old = _answers(client, _context(start, end), _variables(**chosen))
        assert new == old, (chosen, new, old)
    # All filters at All: a real answer (not two empty ones), users of both tenants summed by id as before.
    new, _ = _answers(client, _context(start, end), _variables())
    if start.startswith("2025-03"):
        assert len(new) >= 3 and any(row[5] for row in new) and any(row[2] > 0 for row in new)


def test_a_store_with_spans_from_before_the_rollup_answers_as_the_spans_do(env):
    """Upgraded from before schema/0023: the rollup is empty, then holds only what arrived since, from the middle
    of a day on (its first day partial, the days before it missing); the panel still answers as the spans do."""
    config, client, _ = env
    client.command("TRUNCATE TABLE llm_user_daily")  # the spans stored before the rollup existed
    for start, end in RANGES:
        for chosen in FILTERS:
            new, old = _answers(client, _context(start, end), _variables(**chosen))
            assert new == old, (start, end, chosen)
    upgraded = _ns(DAYS[2], 12 * 3600)  # the spans from here on arrive after the upgrade
    client.command(
        f"ALTER TABLE otel_traces DELETE WHERE Timestamp >= fromUnixTimestamp64Nano(toInt64({upgraded}))",
        settings={"mutations_sync": 2},
    )
    later = [row for row in _spans() if row["Timestamp"] >= upgraded]
    batch = build(config).price(SpanBatch({name: [r[name] for r in later] for name in later[0]}))
    writer = TraceStore(config.store_url)
    try:
        writer.insert(*encode_rows(batch))
    finally:
        writer.close()
    assert client.query("SELECT min(day) FROM llm_user_daily").result_rows == [(DAYS[2],)]
    for start, end in RANGES:
        for chosen in FILTERS:
            new, old = _answers(client, _context(start, end), _variables(**chosen))
            assert new == old, (start, end, chosen)


def test_the_rollup_holds_the_calls_with_a_user_once_merged(env):
    _, client, _ = env
    keys = "day, tenant, service, feature, provider, model, user_id"
    calls = (
        f"SELECT toDate(Timestamp) AS day, TenantId AS tenant, ServiceName AS service, Feature AS feature, "
        f"LlmProvider AS provider, LlmModel AS model, UserId AS user_id, count(), sum(ifNull(CostUsd, 0)) "
        f"FROM otel_traces WHERE CostSource != '' AND UserId != '' GROUP BY {keys} ORDER BY {keys}"
    )
    rollup = f"SELECT {keys}, sum(calls), sum(cost_usd) FROM llm_user_daily GROUP BY {keys} ORDER BY {keys}"
    expected = client.query(calls).result_rows
    assert client.query(rollup).result_rows == expected
    assert {row[1] for row in expected} == {"t1", "t2"} and "" not in {row[6] for row in expected}
    assert {row[5] for row in expected} == {"house-model", "gpt-4o-mini", "mystery-model"}  # no TOOL span
    client.command("OPTIMIZE TABLE llm_user_daily FINAL")
    assert client.query("SELECT count() FROM llm_user_daily").result_rows[0][0] == len(expected)


def test_reprice_rebuilds_the_rollup_by_user(env):
    config, client, price_file = env
    context, variables = _context("2025-03-01 10:00:00", "2025-03-05 14:30:00"), _variables()
    before = {row[0]: row[2] for row in _answers(client, context, variables)[0]}
    house = "SELECT day, sum(cost_usd), sum(calls) FROM llm_user_daily WHERE model = 'house-model' GROUP BY day"
    house += " ORDER BY day"
    house_before = client.query(house).result_rows
    price_file.write_text(PRICES_V2)
    repriced = parse_config({"data_dir": str(config.data_dir), "pricing": {"price_file": str(price_file)}}, environ={})
    result = reprice(client, build(repriced), datetime(2025, 3, 3, tzinfo=UTC))
    assert result.days == DAYS[2:]
    house_after = client.query(house).result_rows
    # The days before --since keep their cost; the repriced ones cost half (the house model's price halved).
    assert house_after[:2] == house_before[:2]
    assert [(d, c / 2, n) for d, c, n in house_before[2:]] == house_after[2:]
    assert all(cost > D(0) for _, cost, _ in house_after)
    new, old = _answers(client, context, variables)
    assert new == old
    assert {row[0]: row[2] for row in new} != before
    for chosen in FILTERS:
        new, old = _answers(client, context, _variables(**chosen))
        assert new == old, chosen


def test_forget_of_a_user_in_one_tenant_removes_only_their_rollup_rows(env):
    config, client, _ = env
    count = "SELECT tenant, user_id, count() FROM llm_user_daily GROUP BY tenant, user_id ORDER BY tenant, user_id"
    before = client.query(count).result_rows
    assert ("t1", "u1") in {row[:2] for row in before} and ("t2", "u1") in {row[:2] for row in before}
    erasure = erase_on_store(client, config, Subject.parse("user", "u1", "t1"), dry_run=False, route="store")
    assert erasure.rows["llm_user_daily"] == next(n for t, u, n in before if (t, u) == ("t1", "u1"))
    after = client.query(count).result_rows
    assert after == [row for row in before if row[:2] != ("t1", "u1")]
    # The panel still agrees with the spans: u1's spans of tenant t1 went too, t2's stay in both.
    for chosen in FILTERS:
        new, old = _answers(client, _context("2025-03-01 10:00:00", "2025-03-05 14:30:00"), _variables(**chosen))
        assert new == old, chosen
    # The mutation's record (kept on disk with the table) names the rows by a keyed hash, not by the id.
    (command,) = client.query("SELECT command FROM system.mutations WHERE table = 'llm_user_daily'").result_rows[0]
    assert "sipHash64Keyed" in command and "u1" not in command


def test_forget_a_hashed_user_removes_their_rollup_rows_through_the_collector_store(tmp_path):
    """The real collector stores alice's and bob's ids hashed (redaction policy); the rollup holds the hashes,
    never the ids as sent; `tracehouse forget --user alice` removes hers and writes neither form into a mutation."""
    data = tmp_path / "data"
    config = tmp_path / "tracehouse.toml"
    config.write_text(HASHED)
    collector = CollectorProcess(data, "--config", str(config)).start()
    try:
        traces = _send(collector.http_endpoint)
        wait_drained(data)
    finally:
        collector.stop()
    url = Config(data_dir=data).store_url
    client = store.connect(url)
    try:
        stored = dict(
            client.query("SELECT TraceId, any(UserId) FROM otel_traces WHERE UserId != '' GROUP BY TraceId").result_rows
        )
        alice, bob = stored[traces["alice"]], stored[traces["bob"]]
        assert alice not in ("", "alice") and bob not in ("", "bob")  # hashed by the policy
        rows = client.query("SELECT user_id, sum(calls) FROM llm_user_daily GROUP BY user_id ORDER BY user_id")
        assert sorted(rows.result_rows) == sorted([(alice, 1), (bob, 1)])
    finally:
        client.close()

    done = forget(data, "--config", str(config), "--user", "alice")
    assert done.returncode == 0, done.stderr
    assert any(line.split() == ["llm_user_daily", "removed", "1", "row(s)"] for line in done.stdout.splitlines())
    client = store.connect(url)
    try:
        assert client.query("SELECT user_id, sum(calls) FROM llm_user_daily GROUP BY user_id").result_rows == [(bob, 1)]
        mutations = dict(client.query("SELECT table, command FROM system.mutations").result_rows)
        assert "sipHash64Keyed" in mutations["llm_user_daily"]
        assert not [m for m in mutations.values() if alice in m or "alice" in m]
    finally:
        client.close()


def test_the_rollup_by_user_keeps_the_rollup_period(tmp_path):
    client = store.connect(Config(data_dir=tmp_path / "data").store_url)
    try:
        store.migrate(client, retention_settings=RetentionSettings(30, 400, rollup_days=90))
        tables = dict(
            client.query(
                "SELECT name, create_table_query FROM system.tables "
                "WHERE database = currentDatabase() AND name IN ('llm_daily', 'llm_user_daily')"
            ).result_rows
        )
        for name in ("llm_daily", "llm_user_daily"):
            assert "TTL day + toIntervalDay(90)" in tables[name], tables[name]
        store.migrate(client, retention_settings=RetentionSettings(30, 400, rollup_days=0))  # kept forever again
        (query,) = client.query(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
            "AND name = 'llm_user_daily'"
        ).result_rows[0]
        assert " TTL " not in query
    finally:
        client.close()
