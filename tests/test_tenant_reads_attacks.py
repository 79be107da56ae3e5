"""Attacks on a tenant's read key (`[query_read_keys]`, collector/tenant_reads.py): with tenant alpha's key, try to
read anything of tenant beta (span content, names, user ids, prompts, scores, reviews, erasures, counts) or to
change the filter. One real collector, two tenants sending through the OTel SDK's OTLP/HTTP exporter, scores and
reviews through POST /v1/scores and /v1/reviews, an erasure through POST /forget; the attacker connects with
clickhouse-connect (as a Grafana datasource would) or plain HTTP. Each test asserts the safe behaviour; an
attack that leaks today (what the README documents: store-wide sizes) is marked xfail(strict=True) with the
leak in its reason."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import clickhouse_connect
import pytest
from collector_process import CollectorProcess, wait_drained
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_tenant_reads import ALPHA_READ, ENV, SPANS  # the same two tenants and keys

from tracehouse.collector import grafana_macros as gm
from tracehouse.dashboards.build import DASHBOARDS

pytestmark = pytest.mark.timeout(240)

# Every value of beta's contains "beta" (its tenant id, service, span name, user, content, prompt, comments):
# alpha's answers must never hold that word, whatever they read.
MARKER = "beta"
PROMPT_NAME, PROMPT_VERSION = "answer", "1"  # the same name and app-chosen version for both tenants
TEMPLATES = {"alpha": "alpha asks {{q}}", "beta": "BETA SECRET TEMPLATE: never show {{q}} to another tenant"}


def send_calls(collector: CollectorProcess, tenant: str, count: int, user: str) -> list[tuple[str, str]]:
    exporter = OTLPSpanExporter(
        endpoint=collector.traces_url, headers={"authorization": f"Bearer key-{tenant}"}, timeout=30
    )
    provider = TracerProvider(resource=Resource.create({"service.name": f"app-{tenant}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("attacks")
    ids = []
    for n in range(count):
        with tracer.start_as_current_span(f"{tenant}-chat") as span:
            span.set_attribute("openinference.span.kind", "LLM")
            span.set_attribute("llm.model_name", "gpt-4o-mini")
            span.set_attribute("llm.token_count.prompt", 10 + n)
            span.set_attribute("llm.token_count.completion", 5)
            span.set_attribute("user.id", user)
            span.set_attribute("session.id", f"{tenant}-session")
            span.set_attribute("input.value", f"{tenant} private question {n}")
            span.set_attribute("output.value", f"{tenant} private answer {n}")
            span.set_attribute("llm.prompt_template.name", PROMPT_NAME)
            span.set_attribute("llm.prompt_template.version", PROMPT_VERSION)
            span.set_attribute("llm.prompt_template.template", TEMPLATES[tenant])
            context = span.get_span_context()
            ids.append((format(context.trace_id, "032x"), format(context.span_id, "016x")))
    provider.shutdown()
    return ids


def post(url: str, body: object, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def judge(collector: CollectorProcess, tenant: str, ids: list[tuple[str, str]]) -> None:
    auth = {"Authorization": f"Bearer key-{tenant}"}
    trace_id, span_id = ids[0]
    post(
        collector.http_endpoint + "/v1/scores",
        [{"trace_id": trace_id, "span_id": span_id, "name": "thumbs", "value": True, "comment": f"{tenant} note"}],
        auth,
    )
    post(
        collector.http_endpoint + "/v1/reviews",
        [{"trace_id": trace_id, "span_id": span_id, "state": "flagged", "reason": f"{tenant} reason"}],
        auth,
    )


def endpoint_client(collector: CollectorProcess, key: str):
    port = int(collector.info["query_url"].rsplit(":", 1)[1].strip("/"))
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, username="default", password=key)


OPTIMIZE_ALL = """
import sys, clickhouse_connect
engine = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
# Rows of the tenant '' (a collector without API keys stores them), marked as beta's so that `leaks` finds them:
# only the prompt registry's '' rows are every tenant's.
engine.command(
    "INSERT INTO scores (TenantId, TraceId, SpanId, ScoreId, Name, Value, Comment)"
    " VALUES ('', 'ab', '', 'tenantless', 'x', 1, 'tenantless beta comment')"
)
engine.command(
    "INSERT INTO reviews (TenantId, TraceId, SpanId, ReviewId, State, Reason)"
    " VALUES ('', 'ab', 'cd', 'tenantless', 'flagged', 'tenantless beta reason')"
)
engine.command(
    "INSERT INTO prompt_observations (TenantId, Name, Version, Template, FirstSeen, LastSeen, Calls)"
    " VALUES ('', 'tenantless', 'v1', 'tenantless beta template', now64(9), now64(9), 1)"
)
for (table,) in engine.query(
    "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
).result_rows:
    engine.command(f"OPTIMIZE TABLE `{table}` FINAL")
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data = tmp_path_factory.mktemp("attacks") / "data"
    collector = CollectorProcess(data, env=ENV).start()
    try:
        alpha_ids = send_calls(collector, "alpha", SPANS["alpha"], "alpha-user")
        beta_ids = send_calls(collector, "beta", SPANS["beta"], "beta-user")
        send_calls(collector, "beta", 1, "beta-erased-user")
        judge(collector, "alpha", alpha_ids)
        judge(collector, "beta", beta_ids)
        wait_drained(data)
        # An erasure of one of beta's users (the audit row is beta's), through the collector's own route.
        post(
            collector.info["query_url"].rstrip("/") + "/forget",
            {"kind": "user", "value": "beta-erased-user", "tenant": "beta", "requested_by": "beta-dpo"},
            {"X-ClickHouse-Key": collector.info["query_key"]},
        )
        # Both tenants' rows in one part of each table (as merges make them sooner or later): a condition the
        # engine ran before the tenant filter would then meet beta's rows in the same granules as alpha's.
        # In a process of its own: chDB opens one store path per process.
        collector.stop()
        subprocess.run([sys.executable, "-c", OPTIMIZE_ALL, str(data / "clickhouse")], check=True, timeout=120)
        collector = CollectorProcess(data, env=ENV).start()
        collector.beta_ids = beta_ids
        yield collector
    finally:
        collector.kill()


@pytest.fixture(scope="module")
def alpha(store):
    return endpoint_client(store, ALPHA_READ)


@pytest.fixture(scope="module")
def full(store):
    return endpoint_client(store, store.info["query_key"])


def text_of(client, sql: str) -> str:
    return client.raw_query(sql, fmt="JSONEachRow").decode(errors="replace")


def leaks(client, sql: str) -> str | None:
    """What of beta's the answer (or the error) to `sql` shows: None when nothing. An error that the engine raised
    while evaluating beta's rows (a throwIf that fired) is a one-bit oracle on them: a leak too."""
    try:
        text = text_of(client, sql)
    except Exception as exc:  # noqa: BLE001 - refusals and engine errors are both answers to inspect
        text = str(exc)
        if "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in text:
            return text[:300]
    return text[:300] if MARKER in text.lower() else None


def test_the_fixture_holds_beta_data_the_full_key_sees(store, full):
    """The attacks below would prove nothing on a store without beta's rows."""
    assert full.query("SELECT TenantId, count() FROM otel_traces GROUP BY 1 ORDER BY 1").result_rows == [
        ("alpha", SPANS["alpha"]),
        ("beta", SPANS["beta"]),
    ]
    for table in ("scores", "reviews", "erasures", "prompt_observations", "llm_daily", "otel_traces_trace_id_ts"):
        assert MARKER in text_of(full, f"SELECT * FROM {table}").lower(), table


def test_no_table_or_view_of_the_store_shows_beta(store, alpha, full):
    """Every name SHOW TABLES lists (tables, plain views, materialized views, rollups, lookup, prompt registry,
    erasures, schema bookkeeping), read whole with SELECT *, holds nothing of beta's for alpha's key."""
    tables = [row[0] for row in alpha.query("SHOW TABLES").result_rows]
    assert {"otel_traces", "llm_calls_scored", "prompt_versions", "erasures", "llm_daily_mv"} <= set(tables)
    seen_by_full = [t for t in tables if MARKER in text_of(full, f"SELECT * FROM {t}").lower()]
    assert len(seen_by_full) >= 10, seen_by_full
    assert {t: leaks(alpha, f"SELECT * FROM {t}") for t in tables} == dict.fromkeys(tables)
    # alpha's own rows are all there
    assert alpha.query("SELECT count() FROM llm_calls_scored").result_rows == [(SPANS["alpha"],)]


BETA_VALUE = "toUInt64(if(TenantId = 'beta', UserId, '1')) = 1"  # fails on beta's rows, naming the value


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT count() FROM otel_traces WHERE {BETA_VALUE}",
        "SELECT count() FROM otel_traces WHERE throwIf(TenantId = 'beta')",
        f"SELECT (SELECT count() FROM otel_traces WHERE {BETA_VALUE})",
        f"WITH b AS (SELECT * FROM otel_traces WHERE {BETA_VALUE}) SELECT count() FROM b",
        "SELECT count() FROM otel_traces ARRAY JOIN Events.Name AS e WHERE throwIf(TenantId = 'beta')",
        "SELECT TenantId, count() FROM otel_traces GROUP BY TenantId HAVING throwIf(TenantId = 'beta') = 0",
        "SELECT count() FROM llm_daily WHERE toUInt64(if(tenant = 'beta', service, '1')) = 1",
        "SELECT count() FROM scores WHERE toUInt64(if(TenantId = 'beta', Comment, '1')) = 1",
        f"SELECT count() FROM view(SELECT * FROM otel_traces WHERE {BETA_VALUE})",
        "SELECT groupArray(SpanName) FROM otel_traces WHERE _part != '' AND _partition_id != ''",
        "SELECT any(toUInt64(SpanName)) FROM otel_traces",
    ],
)
def test_filters_are_applied_before_the_querys_own_conditions(alpha, sql):
    """A WHERE of one condition, scalar subqueries, CTEs, ARRAY JOIN, HAVING and errors see alpha's rows
    only: an expression that fails on a beta row (naming its value) or throwIf on one never fires."""
    assert leaks(alpha, sql) is None


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT count() FROM otel_traces WHERE SpanName != '' AND {BETA_VALUE}",
        f"SELECT count() FROM otel_traces WHERE {BETA_VALUE} AND SpanName != ''",
        f"SELECT count() FROM otel_traces WHERE (SpanName != '' OR Duration > 0) AND {BETA_VALUE}",
        f"SELECT count() FROM otel_traces AS s JOIN otel_traces_trace_id_ts AS t ON s.TraceId = t.TraceId "
        f"WHERE {BETA_VALUE}",
        f"SELECT count() FROM otel_traces WHERE SpanId IN (SELECT SpanId FROM otel_traces WHERE {BETA_VALUE})",
        "SELECT count() FROM llm_calls WHERE toUInt64(if(tenant_id = 'beta', user_id, '1')) = 1",
        "SELECT count() FROM llm_calls_scored WHERE feature = ''"
        " AND toUInt64(if(tenant_id = 'beta', user_id, '1')) = 1",
        "SELECT count() FROM llm_daily WHERE day > '2000-01-01' AND toUInt64(if(tenant = 'beta', service, '1')) = 1",
    ],
)
def test_conditions_moved_to_prewhere_see_only_the_tenants_rows(alpha, sql):
    """A WHERE of several conditions (a view's own count), a join or an IN subquery: optimize_move_to_prewhere
    moves them to PREWHERE, where the tenant filter still runs first (chDB 26.x; reported leaking by an
    earlier try, not reproduced since: kept as the regression check)."""
    assert leaks(alpha, sql) is None


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT count() FROM otel_traces PREWHERE {BETA_VALUE}",
        "SELECT count() FROM otel_traces PREWHERE throwIf(TenantId = 'beta' AND startsWith(UserId, 'b'))",
        "SELECT count() FROM otel_traces PREWHERE toUInt64(if(TenantId = 'beta', SpanAttributes['input.value'], '1'))",
        "SELECT count() FROM view(SELECT * FROM otel_traces PREWHERE toUInt64(if(TenantId = 'beta', SpanName, '1')))",
        "SELECT count() FROM llm_daily PREWHERE toUInt64(if(tenant = 'beta', service, '1')) = 1",
        "SELECT count() FROM llm_daily_mv PREWHERE toUInt64(if(tenant = 'beta', service, '1')) = 1",
        "SELECT count() FROM otel_traces_trace_id_ts PREWHERE toUInt64(if(TenantId = 'beta', TenantId, '1')) = 1",
        "SELECT count() FROM erasures PREWHERE toUInt64(if(TenantId = 'beta', RequestedBy, '1')) = 1",
    ],
)
def test_prewhere_is_refused_to_a_tenant_key(alpha, full, sql):
    """An explicit PREWHERE runs on every row before additional_table_filters narrows them (an expression that
    fails on beta's row names its value, throwIf is an oracle): refused to a tenant's key, naming WHERE."""
    with pytest.raises(Exception, match="PREWHERE is not allowed with a tenant's read key") as refused:
        text_of(alpha, sql)
    assert MARKER not in str(refused.value).lower()
    with pytest.raises(Exception, match="beta"):  # the same query through the full key does reach beta's rows
        text_of(full, sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT sum(rows) FROM system.parts WHERE database = currentDatabase() AND table = 'otel_traces' AND active",
        "SELECT total_rows FROM system.tables WHERE database = currentDatabase() AND name = 'otel_traces'",
        "SELECT table_rows FROM information_schema.tables WHERE table_schema = currentDatabase()"
        " AND table_name = 'otel_traces'",
        "SELECT rows FROM (EXPLAIN ESTIMATE SELECT * FROM otel_traces)",
    ],
)
@pytest.mark.xfail(
    strict=True,
    reason="LEAK (README: 'sizes' of tables are shown): the store's row counts in system.parts, system.tables, "
    "information_schema and EXPLAIN ESTIMATE include every tenant's rows: alpha's key reads beta's span count "
    "(total minus its own), and how it grows over time",
)
def test_row_counts_of_the_store_are_the_tenants(alpha, sql):
    assert alpha.query(sql).result_rows[0][0] == SPANS["alpha"]


def test_system_tables_name_nothing_of_beta(alpha):
    """What the readable system tables show of the store (names, columns, parts, settings) holds no value of
    beta's rows (partition values are days; the filter setting is alpha's own)."""
    for sql in (
        "SELECT * FROM system.parts WHERE database = currentDatabase()",
        "SELECT * FROM system.tables WHERE database = currentDatabase()",
        "SELECT * FROM system.columns WHERE database = currentDatabase()",
        "SELECT * FROM system.settings WHERE changed",
        "SELECT getSetting('additional_table_filters'), currentUser(), currentDatabase()",
        "SELECT * FROM (EXPLAIN indexes = 1 SELECT * FROM otel_traces WHERE UserId = 'x')",
        "EXPLAIN SYNTAX SELECT * FROM llm_calls_scored",
        "EXPLAIN QUERY TREE SELECT count() FROM otel_traces",
        "DESCRIBE TABLE otel_traces",
        "SHOW CREATE TABLE prompt_versions",
        "EXISTS TABLE otel_traces",
        "SELECT max(_part_offset), groupUniqArray(_part) FROM otel_traces",
    ):
        assert leaks(alpha, sql) is None, sql


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("SELECT * FROM merge(currentDatabase(), '^otel')", "merge"),
        ("SELECT * FROM merge('system', '^processes$')", "merge"),
        ("SELECT * FROM remote('127.0.0.1', currentDatabase(), 'otel_traces')", "remote"),
        ("SELECT * FROM remoteSecure('127.0.0.1', currentDatabase(), 'otel_traces')", "remotesecure"),
        ("SELECT * FROM cluster('default', currentDatabase(), 'otel_traces')", "cluster"),
        ("SELECT * FROM clusterAllReplicas('default', currentDatabase(), 'otel_traces')", "clusterallreplicas"),
        ("SELECT * FROM mergeTreeIndex(currentDatabase(), otel_traces, with_marks = 1)", "mergetreeindex"),
        ("SELECT * FROM loop(currentDatabase(), 'otel_traces') LIMIT 1", "loop"),
        ("SELECT * FROM input('x String')", "input"),
        ("SELECT * FROM system.processes", "system.processes"),
        ("SELECT * FROM system.query_log", "system.query_log"),
        ("SELECT * FROM system.parts_columns", "system.parts_columns"),
        ("SELECT joinGet('otel_traces', 'SpanName', 'x')", "joinget"),
        ("SELECT dictGet('d', 'x', 1)", "dictget"),
    ],
)
def test_what_reaches_around_the_filter_is_refused(alpha, sql, refusal):
    with pytest.raises(Exception, match="not allowed|not readable") as refused:
        alpha.query(sql)
    assert refusal in str(refused.value).lower()


@pytest.mark.parametrize(
    ("sql", "table"),
    [
        ("SELECT * FROM scores AS prompts", "scores"),
        ("SELECT * FROM reviews AS prompt_labels", "reviews"),
        ("SELECT * FROM prompt_observations AS prompts", "prompt_observations"),
        ("SELECT * FROM scores AS `prompt_labels_local`", "scores"),
        ("SELECT prompts.Comment FROM llm_calls AS c RIGHT JOIN scores AS prompts ON c.id = prompts.SpanId", "scores"),
    ],
)
def test_a_table_aliased_as_the_prompt_registry_keeps_its_own_filter(alpha, full, sql, table):
    """ClickHouse matches additional_table_filters on a table's alias before its name: an alias naming the
    registry (whose filter also keeps the shared tenant '' rows) must not widen another table's filter."""
    assert MARKER in text_of(full, f"SELECT * FROM {table} WHERE TenantId = ''").lower()  # the rows are there
    assert leaks(alpha, sql) is None


@pytest.mark.parametrize("path", ["/forget", "/reviews", "/spans", "/prompts"])
def test_a_tenants_read_key_reaches_no_write_route(store, path):
    """The collector's local routes write for every tenant (erasures, reviews, spans, the prompt registry): the
    tenant's read key is refused on each, before its body is read."""
    request = urllib.request.Request(
        store.info["query_url"].rstrip("/") + path, data=b"{}", headers={"X-ClickHouse-Key": ALPHA_READ}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert "query_read_keys" in refused.value.read().decode()


def _http(store, sql: str, **parameters: str) -> tuple[int, str]:
    url = store.info["query_url"] + "?" + urllib.parse.urlencode({"default_format": "JSONEachRow", **parameters})
    request = urllib.request.Request(url, data=sql.encode(), headers={"X-ClickHouse-Key": ALPHA_READ}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("SELECT count() AS n FROM otel_traces", {"additional_table_filters": "{'otel_traces': '1'}"}),
        ("SELECT count() AS n FROM otel_traces", {"readonly": "0"}),
        ("SELECT count() AS n FROM otel_traces", {"allow_experimental_analyzer": "0"}),
        ("SELECT count() AS n FROM otel_traces", {"database": "system"}),
        ("SELECT count() AS n FROM otel_traces", {"session_id": "s1", "profile": "default"}),
        ("SET additional_table_filters = {'otel_traces': '1'}", {"session_id": "s1"}),
        ("SELECT count() AS n FROM (SELECT * FROM otel_traces SETTINGS additional_table_filters = {'x': '1'})", {}),
        ("EXPLAIN ESTIMATE additional_table_filters = {'otel_traces': '1'} SELECT * FROM otel_traces", {}),
        ("SELECT count() AS n FROM {t:Identifier}", {"param_t": "system.processes"}),
    ],
)
def test_the_filter_cannot_be_changed_from_the_request(store, sql, parameters):
    """Settings in the query string, a session, a database, SETTINGS in a subquery, EXPLAIN options, parameters:
    refused, or answered with alpha's rows only."""
    status, body = _http(store, sql, **parameters)
    assert MARKER not in body.lower()
    assert status != 200 or json.loads(body.splitlines()[0]) == {"n": SPANS["alpha"]}, body


def test_the_full_keys_verdict_runs_filtered_for_the_tenant(full, alpha):
    """The verdict cache is shared by shape across keys; a query the full key ran first runs filtered for alpha."""
    for sql in (
        "SELECT count() FROM view(SELECT TraceId FROM otel_traces WHERE Duration >= 0) WHERE 1 = 1",
        "SELECT count() FROM llm_calls_scored WHERE prompt_tokens >= 0",
    ):
        assert full.query(sql).result_rows[0][0] > SPANS["alpha"]
        assert alpha.query(sql.replace(">= 0", ">= 1")).result_rows[0][0] == SPANS["alpha"]


def test_pooled_clients_never_change_scope_under_concurrency(store):
    """The tenant key and the full key at once, on several pooled connections each: every answer of alpha's is
    alpha's count, every answer of the full key the whole store's."""
    answers: dict[str, list[int]] = {"alpha": [], "full": []}
    errors: list[BaseException] = []

    def reader(who: str, key: str) -> None:
        try:
            client = endpoint_client(store, key)
            for n in range(8):
                sql = f"SELECT count() FROM otel_traces WHERE Duration >= {n}"
                answers[who].append(client.query(sql).result_rows[0][0])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [
        threading.Thread(target=reader, args=(who, key))
        for who, key in [("alpha", ALPHA_READ), ("full", store.info["query_key"])] * 3
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # Too many queries at once is a refusal (TOO_MANY_SIMULTANEOUS_QUERIES), not a wrong answer.
    assert all("TOO_MANY_SIMULTANEOUS_QUERIES" in str(exc) for exc in errors), errors
    assert answers["alpha"] and set(answers["alpha"]) == {SPANS["alpha"]}
    assert answers["full"] and set(answers["full"]) == {SPANS["alpha"] + SPANS["beta"]}


def _prompt(store, key: str, query: str = "") -> tuple[int, dict]:
    url = f"{store.http_endpoint}/v1/prompts/{PROMPT_NAME}{query}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_the_prompt_route_serves_the_tenants_own_template(store, alpha):
    status, body = _prompt(store, "key-alpha")
    assert status == 200, body
    assert body["template"] == TEMPLATES["alpha"]


def test_the_prompt_route_and_view_show_alpha_its_own_template_through_sql(alpha):
    """Through alpha's SQL key the same registry view holds alpha's template only (the filter is under the view)."""
    rows = alpha.query("SELECT template, tenants, calls FROM prompt_versions").result_rows
    assert rows == [(TEMPLATES["alpha"], ["alpha"], SPANS["alpha"])]


def _panels():
    """(dashboard, title, SQL) of every panel target and every query variable on the ClickHouse datasource."""
    found = []
    for name, builder in DASHBOARDS.items():
        board = builder()
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                found.append((name, f"${variable['name']}", variable["query"]["rawSql"]))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target.get("rawSql"):
                    found.append((name, panel["title"], target["rawSql"]))
    return found


def _variables(service: list[str], trace_id: str) -> dict[str, gm.Variable]:
    plain = {"feature": [], "provider": ["openai"], "model": ["gpt-4o-mini"], "user": [], "prompt": [PROMPT_NAME]}
    found = {name: gm.Variable(name, [gm.ALL], values) for name, values in plain.items()}
    found["purpose"] = gm.Variable("purpose", [gm.ALL], ["batch"])
    found["service"] = gm.Variable("service", service, service)
    found["search"] = gm.Variable("search", "")
    found["trace_id"] = gm.Variable("trace_id", trace_id)
    return found


def test_dashboards_through_a_tenant_key_show_that_tenant_only(store, alpha, full):
    """Every dashboard panel and variable query, as Grafana sends them, through alpha's key: all of them run,
    none shows anything of beta's, and a panel narrowed by service answers what the full key answers for
    alpha's service (counts and costs included, not only names). beta's trace in the trace view shows nothing."""
    now = datetime.now(UTC)
    context = gm.QueryContext(now - timedelta(hours=6), now + timedelta(hours=1), interval_ms=60_000)
    beta_trace = store.beta_ids[0][0]
    panels = _panels()
    assert len(panels) > 60
    failed, leaked, differ, full_saw_beta, compared = [], [], [], 0, 0
    for dashboard, title, raw in panels:
        tenant_sql = gm.expand(raw, _variables([gm.ALL], beta_trace), context)
        full_sql = gm.expand(raw, _variables(["app-alpha"], beta_trace), context)
        try:
            seen = text_of(alpha, tenant_sql)
        except Exception as exc:  # noqa: BLE001 - collected: a panel that fails for a tenant is a finding
            failed.append((dashboard, title, str(exc)[:200]))
            continue
        if MARKER in seen.lower():
            leaked.append((dashboard, title, seen[:200]))
        everything = text_of(full, gm.expand(raw, _variables([gm.ALL], beta_trace), context))
        full_saw_beta += MARKER in everything.lower()
        narrowed = "$__conditionalAll(service" in raw and "now" not in raw.lower() and title != "Spans"
        if narrowed:
            compared += 1
            if text_of(full, full_sql) != seen:
                differ.append((dashboard, title))
    assert failed == []
    assert leaked == []
    assert full_saw_beta >= 5  # the same panels on the full key do show beta
    assert differ == []
    assert compared > 40, compared  # most panels compared, numbers and all
