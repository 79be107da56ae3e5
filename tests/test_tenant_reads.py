"""A tenant's read key (`[query_read_keys]`) reads that tenant's rows and nothing else, on a real collector:
two tenants send LLM spans with their API keys through the OTel SDK's OTLP/HTTP exporter; through the SQL
endpoint (clickhouse-connect, as a Grafana datasource would connect) the tenant's key sees its own spans in
every table, view, rollup and lookup, however the query reaches them (subquery, join, view(), a materialized
view's name), and no other tenant's; the collector's own key still sees both; the key cannot administer,
lift its filter with a setting, or be weak."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import clickhouse_connect
import pytest
from collector_process import wait_drained
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tracehouse.collector import tenant_reads

pytestmark = pytest.mark.timeout(240)

ALPHA_READ = "alpha-reads-0123456789abcdef"
ENV = {
    "TRACEHOUSE_API_KEYS": "key-alpha=alpha, key-beta=beta",
    "TRACEHOUSE_QUERY_READ_KEYS": f"{ALPHA_READ}=alpha",
}
SPANS = {"alpha": 3, "beta": 5}


def send_calls(collector, key: str, tenant: str, count: int) -> None:
    exporter = OTLPSpanExporter(endpoint=collector.traces_url, headers={"authorization": f"Bearer {key}"}, timeout=30)
    provider = TracerProvider(resource=Resource.create({"service.name": f"app-{tenant}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for n in range(count):
        with tracer.start_as_current_span("ChatCompletion") as span:
            span.set_attribute("openinference.span.kind", "LLM")
            span.set_attribute("llm.model_name", "gpt-4o-mini")
            span.set_attribute("llm.token_count.prompt", 10 + n)
            span.set_attribute("llm.token_count.completion", 5)
            span.set_attribute("user.id", f"{tenant}-user")
    provider.shutdown()


def endpoint_client(collector, key: str):
    port = int(collector.info["query_url"].rsplit(":", 1)[1].strip("/"))
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, username="default", password=key)


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory):
    from collector_process import CollectorProcess

    data = tmp_path_factory.mktemp("tenants") / "data"
    collector = CollectorProcess(data, env=ENV).start()
    try:
        send_calls(collector, "key-alpha", "alpha", SPANS["alpha"])
        send_calls(collector, "key-beta", "beta", SPANS["beta"])
        wait_drained(data)
        yield collector
    finally:
        collector.kill()


def one(client, sql: str):
    return client.query(sql).result_rows[0][0]


def test_the_collectors_key_sees_every_tenant(two_tenants):
    full = endpoint_client(two_tenants, two_tenants.info["query_key"])
    assert full.query("SELECT TenantId, count() FROM otel_traces GROUP BY 1 ORDER BY 1").result_rows == [
        ("alpha", 3),
        ("beta", 5),
    ]
    assert one(full, "SELECT count() FROM otel_traces_trace_id_ts") == 8


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT groupUniqArray(TenantId), count() FROM otel_traces", (["alpha"], 3)),
        ("SELECT count() FROM (SELECT * FROM otel_traces)", 3),
        ("SELECT count() FROM view(SELECT TraceId FROM otel_traces)", 3),
        ("SELECT count() FROM llm_calls", 3),
        ("SELECT groupUniqArray(tenant), sum(calls) FROM llm_daily", (["alpha"], 3)),
        ("SELECT groupUniqArray(user_id), sum(calls) FROM llm_user_daily", (["alpha-user"], 3)),
        ("SELECT groupUniqArray(tenant), sum(calls) FROM llm_daily_mv", (["alpha"], 3)),
        ("SELECT groupUniqArray(TenantId), count() FROM otel_traces_trace_id_ts", (["alpha"], 3)),
        ("SELECT count() FROM traces", 3),
        (
            "SELECT count() FROM otel_traces AS s JOIN otel_traces_trace_id_ts AS t ON s.TraceId = t.TraceId",
            3,
        ),
        ("SELECT count() FROM tracehouse_migrations WHERE version = 25", 1),
    ],
)
def test_a_tenants_read_key_sees_its_rows_only(two_tenants, sql, expected):
    alpha = endpoint_client(two_tenants, ALPHA_READ)
    row = alpha.query(sql).result_rows[0]
    assert (row[0] if len(row) == 1 else tuple(row)) == expected


def test_a_tenants_read_key_cannot_lift_its_filter(two_tenants):
    alpha = endpoint_client(two_tenants, ALPHA_READ)
    with pytest.raises(Exception, match="SETTINGS clause is not allowed|READONLY"):
        alpha.query("SELECT count() FROM otel_traces SETTINGS additional_table_filters = {'otel_traces': '1'}")
    with pytest.raises(Exception, match="additional_table_filters"):
        alpha.query("SELECT count() FROM otel_traces", settings={"additional_table_filters": "{'otel_traces': '1'}"})
    with pytest.raises(Exception, match="READONLY|readonly"):
        alpha.command("INSERT INTO otel_traces (SpanName, TenantId) VALUES ('x', 'beta')")
    # The setting holds the tenant's own filter, nothing of another tenant's.
    assert "beta" not in str(alpha.query("SELECT getSetting('additional_table_filters')").result_rows)
    # The same query shape answered for the full key first (a cached verdict) still runs filtered after.
    full = endpoint_client(two_tenants, two_tenants.info["query_key"])
    assert one(full, "SELECT count() FROM otel_traces WHERE 1 = 1") == 8
    assert one(alpha, "SELECT count() FROM otel_traces WHERE 1 = 1") == 3


def test_a_tenants_read_key_cannot_administer(two_tenants):
    request = urllib.request.Request(
        two_tenants.info["query_url"].rstrip("/") + "/forget",
        data=b"{}",
        headers={"X-ClickHouse-Key": ALPHA_READ},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert "query_read_keys" in refused.value.read().decode()


def test_another_key_is_refused(two_tenants):
    with pytest.raises(Exception, match="Authentication failed"):
        endpoint_client(two_tenants, "alpha-reads-0123456789abcdeX").query("SELECT 1")


def test_table_filters_cover_every_kind_of_table():
    tables = [
        ("otel_traces", "MergeTree", frozenset({"TenantId", "TraceId"})),
        ("llm_daily_local", "ReplicatedAggregatingMergeTree", frozenset({"tenant", "day"})),
        ("prompts", "ReplacingMergeTree", frozenset({"TenantId", "Name"})),
        ("llm_calls", "View", frozenset({"tenant"})),
        ("tracehouse_views", "ReplacingMergeTree", frozenset({"name"})),
        ("someone_elses", "MergeTree", frozenset({"x"})),
    ]
    filters = tenant_reads.table_filters(tables, "a'b\\c")
    hexed = "unhex('" + b"a'b\\c".hex() + "')"
    assert filters == {
        "otel_traces": f"TenantId = {hexed}",
        "llm_daily_local": f"tenant = {hexed}",
        # the shared rows of '' only where the registry itself is read (`scores AS prompts` gets this filter)
        "prompts": f"TenantId = {hexed} OR (TenantId = '' AND _table IN (unhex('{b'prompts'.hex()}'),"
        f" unhex('{b'prompts_local'.hex()}')))",
        "someone_elses": "0",
    }
    # The Map literal ClickHouse parses: quotes inside conditions escaped once more.
    assert tenant_reads.filters_setting({"t": "x = unhex('61')"}) == "{'t': 'x = unhex(\\'61\\')'}"


def test_a_weak_tenant_read_key_stops_the_collector(tmp_path):
    env = {**os.environ, "TRACEHOUSE_QUERY_READ_KEYS": "short=alpha"}
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "serve", "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "query_read_keys: a key must be at least 16 printable ASCII characters" in result.stderr
    assert not Path(tmp_path / "d" / "collector.json").exists()


def test_a_table_created_later_is_filtered_for_tenant_reads(tmp_path):
    """Another collector's migration may add a table while this one serves tenant reads (server layout): within
    the check interval the filters are rebuilt, and the clients built before are not reused."""
    script = textwrap.dedent(
        f"""
        from tracehouse.collector import query, store
        from tracehouse.collector.query import ReadOnlySql

        url = "chdb://{tmp_path / "store"}"
        admin = store.connect(url)
        admin.command("CREATE TABLE spans_a (TenantId String, v UInt8) ENGINE = MergeTree ORDER BY v")
        admin.command("INSERT INTO spans_a VALUES ('alpha', 1), ('beta', 2)")
        runner = ReadOnlySql(lambda: store.connect(url))

        def rows(sql):
            return runner.run(sql, "TSV", tenant="alpha").body.decode().split()

        assert rows("SELECT v FROM spans_a") == ["1"]
        admin.command("CREATE TABLE spans_b (TenantId String, v UInt8) ENGINE = MergeTree ORDER BY v")
        admin.command("CREATE TABLE shared_c (v UInt8) ENGINE = MergeTree ORDER BY v")
        admin.command("INSERT INTO spans_b VALUES ('alpha', 3), ('beta', 4)")
        admin.command("INSERT INTO shared_c VALUES (5)")
        query.TENANT_TABLES_CHECK_SECONDS = 0
        assert rows("SELECT v FROM spans_b") == ["3"]
        assert rows("SELECT count() FROM shared_c") == ["0"]
        assert rows("SELECT v FROM spans_a") == ["1"]
        assert runner.run("SELECT count() FROM shared_c", "TSV").body.decode().split() == ["1"]
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split()[-1:] == ["ok"], result.stderr[-3000:]
