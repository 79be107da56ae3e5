"""Server-side query parameters on the collector's read endpoint (`{name:Type}` in the SQL, `param_name` in the
URL), as clickhouse-go (the Grafana plugin's driver), clickhouse-connect and the JS client send them: bound as
ClickHouse binds them, typed, never spliced into the SQL as text, and the read-only guard still applies to the
bound query. Driven by clickhouse-connect's HTTP client against a real collector, and by raw HTTP for what a
client library would not send."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

import clickhouse_connect
import pytest

from tracehouse.collector.query import QueryRefused, bind_parameters

pytestmark = pytest.mark.timeout(120)


def _raw(collector, sql: str, **params: str) -> tuple[int, str]:
    query = urllib.parse.urlencode({"query": sql, **{f"param_{k}": v for k, v in params.items()}})
    request = urllib.request.Request(
        collector.info["query_url"] + "?" + query, headers={"X-ClickHouse-Key": collector.info["query_key"]}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_clients_bind_typed_parameters_on_the_read_endpoint(start_collector):
    collector = start_collector()
    url = urllib.parse.urlparse(collector.info["query_url"])
    client = clickhouse_connect.get_client(
        host=url.hostname, port=url.port, username="default", password=collector.info["query_key"]
    )
    try:
        row = client.query(
            "SELECT {name:String} AS name, {n:UInt32} + 1 AS n, {tags:Array(String)} AS tags, {at:DateTime} AS at",
            parameters={
                "name": "it's {not:String} a placeholder",
                "n": 41,
                "tags": ["a", "b'c"],
                "at": datetime(2025, 3, 1, 10, 0),
            },
        ).result_rows
        assert row == [("it's {not:String} a placeholder", 42, ["a", "b'c"], datetime(2025, 3, 1, 10, 0))]
        # The Grafana plugin's kind of query: a table name as an Identifier, a filter value as a String.
        count = client.query(
            "SELECT count() FROM {table:Identifier} WHERE service = {service:String}",
            parameters={"table": "llm_calls", "service": "x' OR 1=1 --"},
        ).result_rows
        assert count == [(0,)]
    finally:
        client.close()

    status, body = _raw(collector, "SELECT {u:String}")
    assert status == 400 and "Substitution `u` is not set: pass param_u" in body and "Code: 456" in body
    status, body = _raw(collector, "SELECT count() FROM {t:Identifier}", t="system.processes")
    assert status == 400 and "system.processes" in body  # the guard still reads the bound query
    status, body = _raw(collector, "SELECT 1", **{"bad-name": "x"})
    assert status == 400 and "not a parameter name" in body
    status, body = _raw(collector, "SELECT '{u:String}' AS literal, {v:Int8} AS v", v="-3")
    assert status == 200 and body == "{u:String}\t-3\n"
    # A query_id goes back in a header: one with a line break is refused (it dropped the connection).
    query = urllib.parse.urlencode({"query": "SELECT 1", "query_id": "a\r\nX-Evil: 1"})
    request = urllib.request.Request(
        collector.info["query_url"] + "?" + query, headers={"X-ClickHouse-Key": collector.info["query_key"]}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400 and "query_id: printable characters only" in refused.value.read().decode()
    status, body = _raw(collector, "SELECT {v: Int8 } AS v", v="-3")  # spaces around the type, as ClickHouse
    assert status == 200 and body == "-3\n"


def test_a_query_that_only_looks_like_placeholders_is_answered_at_once(start_collector):
    """`{a:` and a run of spaces with no closing brace made the placeholder pattern backtrack cubically, on the
    event loop the receivers share (3 KB stalled /healthz for 18 s): now it is read once and the query's
    own error comes back, while the collector keeps serving."""
    collector = start_collector()

    def posted(sql: str) -> tuple[int, str]:  # in the body: a URL holds at most 8 KB
        request = urllib.request.Request(
            collector.info["query_url"], data=sql.encode(), headers={"X-ClickHouse-Key": collector.info["query_key"]}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # within 30 s, or the test fails
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    status, body = posted("SELECT {a:" + " " * 50_000)
    assert status == 400 and "Code: 62" in body, body[:300]  # the engine's syntax error, no placeholder bound
    status, body = posted("SELECT 1 -- " + "{" * 200_000)
    assert status == 200 and body == "1\n", body[:300]


def test_binding_skips_literals_quoted_names_and_comments():
    sql = (
        "SELECT {a:String} /* {b:String} */, `{c:String}`, \"{d:String}\", 'x''{e:String}' -- {f:String}\n, {a:String}"
    )
    bound = bind_parameters(sql, {"a": "v"})
    assert bound == (
        "SELECT CAST('v', 'String') /* {b:String} */, `{c:String}`, \"{d:String}\", 'x''{e:String}' -- {f:String}\n,"
        " CAST('v', 'String')"
    )
    assert bind_parameters("SELECT {t:Identifier}", {"t": "a`b"}) == "SELECT `a\\`b`"
    with pytest.raises(QueryRefused, match="Substitution `b` is not set"):
        bind_parameters("SELECT {b:UInt8}", {})
