"""The schema's two parts on real chDB stores: numbered migrations (tables) applied once each, and the
views of schema/views/, applied after them and again whenever a view's text changes. A store migrated by
the schema as it was before views had their own files upgrades to a fresh store's definitions and keeps
its data; the model of a call is defined once (otel_traces.LlmModel)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from tracehouse.collector import store
from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.processing import INSERT_FORMAT, encode_rows
from tracehouse.collector.writer import TraceStore

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose schema/ created the views in numbered migrations (0001-0010): the schema that
# stores in the field were migrated with.
SCHEMA_BEFORE_VIEW_FILES = "43bce261bb2b509c4ccdc246c1d79774f5f9d333"
VIEW_ENGINES = {
    "llm_calls": "View",
    "traces": "View",
    "llm_calls_scored": "View",
    "traces_scored": "View",
    "llm_daily_mv": "MaterializedView",
    "llm_user_daily_mv": "MaterializedView",
    "otel_traces_trace_id_ts_mv": "MaterializedView",
}
DAY = datetime(2025, 3, 1, 10, tzinfo=UTC)


def _span(name: str, trace: str, span: str, kind: str = "LLM", service: str = "shop", **llm: Any) -> dict[str, Any]:
    """A stored span as the stages hand it to the writer: the exporter's columns plus LLM fields."""
    row: dict[str, Any] = {
        "Timestamp": int(DAY.timestamp() * 1e9) + int(span, 16),
        "TraceId": trace,
        "SpanId": span,
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": name,
        "SpanKind": "Client",
        "ServiceName": service,
        "ResourceAttributes": {},
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": {},
        "Duration": 2_000_000,
        "StatusCode": "Unset",
        "StatusMessage": "",
        "Events.Timestamp": [],
        "Events.Name": [],
        "Events.Attributes": [],
        "Links.TraceId": [],
        "Links.SpanId": [],
        "Links.TraceState": [],
        "Links.Attributes": [],
        "LlmSpanKind": kind,
        "LlmRequestModel": llm.get("request", ""),
        "LlmResponseModel": llm.get("response", ""),
        "TenantId": "acme",
        "InputTokens": llm.get("tokens"),
        "CostUsd": llm.get("cost"),
        "CostSource": llm.get("source", ""),
    }
    assert list(row)[: len(OTEL_COLUMNS)] == list(OTEL_COLUMNS)
    return row


TRACE_A, TRACE_B, TRACE_C = "a" * 32, "b" * 32, "c" * 32
STORED_BEFORE = [
    # The response model names the call when the span has one, the request model otherwise.
    _span(
        "answer",
        TRACE_A,
        "00000000000000a1",
        request="gpt-4o-mini",
        response="gpt-4o-mini-2024-07-18",
        tokens=100,
        cost=Decimal("0.001"),
        source="catalogue",
    ),
    _span("ask-house", TRACE_B, "00000000000000b1", request="house-model", tokens=50, source="unknown"),
    _span("chain", TRACE_A, "00000000000000a2", kind="CHAIN"),
]
STORED_AFTER = [
    _span(
        "later",
        TRACE_C,
        "00000000000000c1",
        request="gpt-4o",
        response="gpt-4o-2024-08-06",
        tokens=10,
        cost=Decimal("0.0001"),
        source="catalogue",
    ),
]


@contextmanager
def _store(path: Path) -> Iterator[Client]:
    client = store.connect(f"chdb://{path}")
    try:
        yield client
    finally:
        client.close()


def _insert(client: Client, rows: list[dict[str, Any]]) -> None:
    """The writer's own insert: encoded rows with their column names (LlmModel is never among them)."""
    header, payload = encode_rows(SpanBatch({name: [row[name] for row in rows] for name in rows[0]}))
    assert b"LlmModel" not in header
    client.raw_insert("otel_traces", column_names=header.decode().split(","), insert_block=payload, fmt=INSERT_FORMAT)


def _rows(client: Client, sql: str) -> list[tuple]:
    return [tuple(row) for row in client.query(sql).result_rows]


def _definitions(client: Client) -> dict[str, str]:
    """Every table and view of the store, as ClickHouse stores its definition."""
    return dict(_rows(client, "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase()"))


def _columns(client: Client, table: str) -> list[tuple]:
    return _rows(
        client,
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = "
        f"'{table}' ORDER BY position",
    )


def _rollup(client: Client) -> list[tuple]:
    return _rows(
        client,
        "SELECT day, tenant, service, provider, model, sum(calls), sum(unpriced_calls), sum(input_tokens),"
        " sum(cost_usd) FROM llm_daily GROUP BY day, tenant, service, provider, model ORDER BY model",
    )


def _contents(client: Client) -> dict[str, list[tuple]]:
    """What a user reads: the spans, both views, the rollup and the trace-id lookup."""
    return {
        "otel_traces": _rows(
            client, "SELECT SpanId, SpanName, LlmRequestModel, LlmResponseModel FROM otel_traces ORDER BY 1"
        ),
        "llm_calls": _rows(client, "SELECT * FROM llm_calls ORDER BY id"),
        "traces": _rows(client, "SELECT * FROM traces ORDER BY trace_id"),
        "llm_daily": _rollup(client),
        "trace_id_ts": _rows(
            client, "SELECT TraceId, min(Start), max(End) FROM otel_traces_trace_id_ts GROUP BY TraceId ORDER BY 1"
        ),
    }


def _recorded(client: Client) -> dict[str, str]:
    return dict(_rows(client, f"SELECT name, digest FROM {store.VIEWS_TABLE} FINAL"))


def _schema_before_view_files(folder: Path) -> Path:
    """schema/ as it was at SCHEMA_BEFORE_VIEW_FILES, from git (read only: nothing is checked out)."""
    git = ["git", "-C", str(ROOT)]
    listing = [*git, "ls-tree", "--name-only", SCHEMA_BEFORE_VIEW_FILES, "schema/"]
    listed = subprocess.run(listing, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"needs the git history of the repository: {listed.stderr.strip()}")
    folder.mkdir()
    for path in listed.stdout.split():
        shown = subprocess.run([*git, "show", f"{SCHEMA_BEFORE_VIEW_FILES}:{path}"], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        (folder / Path(path).name).write_text(shown.stdout)
    assert "CREATE OR REPLACE VIEW llm_calls" in (folder / "0010_content_sampling.sql").read_text()
    return folder


def _migrate_as_before(client: Client, schema: Path) -> None:
    """The migration runner as it was: bootstrap, then each numbered migration not recorded, in order."""
    for statement in store._split_statements((schema / "bootstrap.sql").read_text()):
        client.command(statement)
    for migration in store.load_migrations(schema):
        for statement in migration.statements:
            client.command(statement)
        client.insert("tracehouse_migrations", [[migration.version, migration.name]], column_names=["version", "name"])


def _copy_of_the_schema(folder: Path) -> Path:
    shutil.copytree(ROOT / "schema", folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return folder


def test_a_fresh_store_gets_every_view_of_schema_views(tmp_path):
    views = store.load_views()
    assert {v.name: v.target for v in views} == {
        "otel_traces_trace_id_ts_mv": "otel_traces_trace_id_ts",
        "llm_calls": "",
        "traces": "",
        "llm_calls_scored": "",
        "traces_scored": "",
        "llm_daily_mv": "llm_daily",
        "prompt_versions": "",
        "prompt_labels_current": "",
        "prompt_observations_mv": "prompt_observations",
        "llm_user_daily_mv": "llm_user_daily",
    }
    with _store(tmp_path / "store") as client:
        applied = store.migrate(client)
        assert applied[-len(views) :] == [f"views/{v.name}.sql" for v in views]
        assert all(re.fullmatch(r"\d{4}_\w+\.sql", name) for name in applied[: -len(views)])
        engines = dict(_rows(client, "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"))
        assert {name: engines.get(name) for name in VIEW_ENGINES} == VIEW_ENGINES
        assert _recorded(client) == {v.name: v.digest for v in views}
        assert store.migrate(client) == []

        _insert(client, STORED_BEFORE)
        contents = _contents(client)
    assert [(row[0], row[11]) for row in contents["llm_calls"]] == [
        ("00000000000000a1", "gpt-4o-mini-2024-07-18"),
        ("00000000000000b1", "house-model"),
    ]
    assert [row[4:7] for row in contents["llm_daily"]] == [("gpt-4o-mini-2024-07-18", 1, 0), ("house-model", 1, 1)]
    assert [row[0] for row in contents["trace_id_ts"]] == [TRACE_A, TRACE_B]
    assert [(row[0], row[5], row[6]) for row in contents["traces"]] == [(TRACE_A, 2, 1), (TRACE_B, 1, 1)]


def test_a_store_of_the_schema_before_view_files_upgrades_to_a_fresh_stores_definitions_keeping_its_data(tmp_path):
    with _store(tmp_path / "fresh") as client:
        store.migrate(client)
        fresh = _definitions(client)
        fresh_llm_calls = _columns(client, "llm_calls")

    old_schema = _schema_before_view_files(tmp_path / "schema_0010")
    url = f"chdb://{tmp_path / 'upgraded'}"
    with _store(tmp_path / "upgraded") as client:
        _migrate_as_before(client, old_schema)
        _insert(client, STORED_BEFORE)
        llm_calls_before = _columns(client, "llm_calls")
        before = _contents(client)
        assert _definitions(client) != fresh  # not vacuous: the views differ (and LlmModel is missing)

        applied = store.migrate(client)
        since_view_files = [m.name for m in store.load_migrations() if m.version >= 11]  # 0011_llm_model.sql, ...
        assert applied == [*since_view_files, *(v.file for v in store.load_views())]
        assert _definitions(client) == fresh
        # llm_calls keeps every column with its meaning and type (model included); columns added since come last.
        after_columns = _columns(client, "llm_calls")
        assert after_columns == fresh_llm_calls and after_columns[: len(llm_calls_before)] == llm_calls_before
        added = [name for name, _ in after_columns[len(llm_calls_before) :]]
        assert added == [
            "replay_of",
            "batch_id",
            "batch_purpose",
            "batch_custom_id",
            "batch_outcome",
            "batch_submitted_at",
            "price_variant",
            "standard_cost_usd",
            "trace_key",
        ]
        after = _contents(client)
        no_batch = ("", "", "", "", "", None, "", None)
        assert [row[-len(added) : -1] for row in after["llm_calls"]] == [no_batch] * len(before["llm_calls"])
        # trace_key of rows stored before 0026: computed when read, the digest of their tenant and trace id.
        keys = _rows(client, "SELECT id, trace_key FROM llm_calls ORDER BY id")
        digests = _rows(
            client,
            "SELECT SpanId, reinterpretAsUUID(sipHash128(TenantId, TraceId)) FROM otel_traces"
            " WHERE SpanId IN (SELECT id FROM llm_calls) ORDER BY 1",
        )
        assert keys == digests and len({key for _, key in keys}) == len({row[1] for row in after["llm_calls"]}) > 1
        after["llm_calls"] = [row[: -len(added)] for row in after["llm_calls"]]
        assert after == before
        assert _rows(client, "SELECT SpanId, LlmModel FROM otel_traces ORDER BY 1") == [
            ("00000000000000a1", "gpt-4o-mini-2024-07-18"),
            ("00000000000000a2", ""),
            ("00000000000000b1", "house-model"),
        ]
        assert store.migrate(client) == []

    # The collector's writer on the upgraded store: nothing left to migrate at its start, and its inserts
    # reach both materialized views through their new queries.
    writer = TraceStore(url)
    try:
        writer.insert(*encode_rows(SpanBatch({name: [row[name] for row in STORED_AFTER] for name in STORED_AFTER[0]})))
    finally:
        writer.close()
    with _store(tmp_path / "upgraded") as client:
        final = _contents(client)
    added = [row for row in final["llm_daily"] if row not in before["llm_daily"]]
    assert [row[4:8] for row in added] == [("gpt-4o-2024-08-06", 1, 0, 10)]
    assert len(final["llm_daily"]) == len(before["llm_daily"]) + 1
    assert [row[0] for row in final["trace_id_ts"]] == [TRACE_A, TRACE_B, TRACE_C]


def test_a_changed_view_file_is_reapplied_and_unchanged_ones_are_not(tmp_path):
    schema = _copy_of_the_schema(tmp_path / "schema")
    views = schema / "views"
    with _store(tmp_path / "store") as client:
        assert len(store.migrate(client, schema=schema)) > len(VIEW_ENGINES)
        _insert(client, STORED_BEFORE)
        rollup = _rollup(client)
        # A stand-in that shows whether `traces` is re-applied: its file stays as it is.
        client.command("CREATE OR REPLACE VIEW traces AS SELECT 'left alone' AS marker")

        llm_calls = views / "llm_calls.sql"
        last = "TraceKey AS trace_key\n"
        llm_calls.write_text(
            llm_calls.read_text().replace(last, last.rstrip() + ",\n    LlmOperation = 'chat' AS is_chat\n")
        )
        rollup_view = views / "llm_daily_mv.sql"
        narrower = "WHERE CostSource != '' AND ServiceName != 'ignored'"
        rollup_view.write_text(rollup_view.read_text().replace("WHERE CostSource != ''", narrower))
        lookup_view = views / "otel_traces_trace_id_ts_mv.sql"
        lookup_view.write_text("-- A comment is not part of the statement.\n" + lookup_view.read_text())

        assert store.migrate(client, schema=schema) == ["views/llm_calls.sql", "views/llm_daily_mv.sql"]
        assert [name for name, _ in _columns(client, "llm_calls")][-3:] == [
            "standard_cost_usd",
            "trace_key",
            "is_chat",
        ]
        assert _rows(client, "SELECT marker FROM traces") == [("left alone",)]
        stored_rollup_query = _rows(client, "SELECT as_select FROM system.tables WHERE name = 'llm_daily_mv'")[0][0]
        assert "ServiceName != 'ignored'" in stored_rollup_query
        assert _rollup(client) == rollup  # the rollup's rows are kept
        # The new query is the one that runs on inserts.
        skipped = _span("skipped", TRACE_C, "00000000000000c2", service="ignored", request="m", source="unknown")
        _insert(client, [skipped, _span("counted", TRACE_C, "00000000000000c3", request="m", source="unknown")])
        assert [row[2:7] for row in _rollup(client) if row[4] == "m"] == [("shop", "", "m", 1, 1)]
        assert store.migrate(client, schema=schema) == []


def test_view_files_that_cannot_be_applied_as_written_stop_the_migration(tmp_path):
    schema = _copy_of_the_schema(tmp_path / "schema")
    views = schema / "views"
    (views / "extra.sql").write_text("CREATE OR REPLACE VIEW extra AS SELECT 1 AS one;\n")
    with pytest.raises(RuntimeError, match=r"order\.txt must list every view file exactly once"):
        store.load_views(schema)
    (views / "order.txt").write_text((views / "order.txt").read_text() + "extra\n")
    assert store.load_views(schema)[-1].name == "extra"
    (views / "extra.sql").write_text("CREATE OR REPLACE VIEW other AS SELECT 1 AS one;\n")
    with pytest.raises(RuntimeError, match="named after the view"):
        store.load_views(schema)
    (views / "extra.sql").write_text("CREATE VIEW extra AS SELECT 1 AS one;\n")
    with pytest.raises(RuntimeError, match="must be CREATE OR REPLACE VIEW extra"):
        store.load_views(schema)
    (views / "extra.sql").unlink()
    (views / "order.txt").write_text((views / "order.txt").read_text().replace("extra\n", ""))

    with _store(tmp_path / "store") as client:
        store.migrate(client, schema=schema)
        stored = _definitions(client)["llm_daily_mv"]
        rollup_view = views / "llm_daily_mv.sql"
        rollup_view.write_text(rollup_view.read_text().replace("TO llm_daily\n", "TO llm_daily_v2\n"))
        with pytest.raises(RuntimeError, match="TO table cannot change in place"):
            store.migrate(client, schema=schema)
        assert _definitions(client)["llm_daily_mv"] == stored


MODEL_EXPRESSION = re.compile(
    r"if\(\s*LlmResponseModel\s*(?:!=|<>)\s*''\s*,\s*LlmResponseModel\s*,\s*LlmRequestModel\s*\)"
)
TEXT_SUFFIXES = {".py", ".sql", ".json", ".md", ".txt", ".toml", ".yaml", ".yml"}


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("schema", {"schema/0011_llm_model.sql": 1, "schema/0021_canonical_model.sql": 1}),
        ("collector", {}),
        ("dashboards", {}),
        ("deploy", {}),
    ],
)
def test_the_model_expression_is_written_once(folder, expected):
    """otel_traces.LlmModel is the one definition of a call's model; everything else reads the column."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*")):
        if path.suffix not in TEXT_SUFFIXES or "__pycache__" in path.parts or not path.is_file():
            continue
        if count := len(MODEL_EXPRESSION.findall(path.read_text(errors="replace"))):
            found[str(path.relative_to(ROOT))] = count
    assert found == expected, "read otel_traces.LlmModel instead of repeating its expression"


BATCH_COLUMNS = ("BatchId", "BatchOperation", "BatchOutcome", "BatchPurpose")


def _batch_span(span: str, operation: str, outcome: str = "") -> dict[str, Any]:
    row = _span("batch " + operation, TRACE_C, span, request="gpt-4o-mini", source="catalogue")
    row["SpanAttributes"] = {
        "tracehouse.batch.id": "batch_" + span,
        "tracehouse.batch.operation": operation,
        "tracehouse.batch.purpose": "nightly",
        **({"tracehouse.batch.outcome": outcome} if outcome else {}),
    }
    return row


def test_the_trace_key_is_a_fixed_digest_of_tenant_and_trace(tmp_path):
    """0026's TraceKey is stored: if the engine's sipHash128 ever changed, spans and scores stored after an upgrade
    would silently stop joining those stored before. These are the digests this engine stores (UUIDs as text)."""
    with _store(tmp_path / "store") as client:
        store.migrate(client)
        _insert(client, [_span("chat", TRACE_A, "00000000000000a1"), {**_span("chat", TRACE_A, "a2"), "TenantId": ""}])
        assert _rows(client, "SELECT SpanId, toString(TraceKey) FROM otel_traces ORDER BY SpanId") == [
            ("00000000000000a1", "a01fc1d7-d4cb-0c9b-9621-1fd2f3dc6da1"),
            ("a2", "16321da9-ce43-5f7a-0400-a7e86e1d08da"),
        ]
        assert _rows(client, "SELECT toString(trace_key) FROM llm_calls WHERE id = 'a2'") == [
            ("16321da9-ce43-5f7a-0400-a7e86e1d08da",)
        ]
        kinds = _rows(client, "SELECT table, type, default_kind FROM system.columns WHERE name = 'TraceKey' ORDER BY 1")
        assert kinds == [(table, "UUID", "MATERIALIZED") for table in ("otel_traces", "reviews", "scores")]


def test_the_batch_columns_are_copied_from_the_attributes_on_old_and_new_rows(tmp_path):
    """0020's MATERIALIZED Batch* columns: a span stored before the migration reads them computed from its
    attributes, a span stored after has them written on insert; neither the writer's insert nor SELECT *
    names them, and llm_calls reads them."""
    with _store(tmp_path / "store") as client:
        _migrate_as_before(client, _schema_before_view_files(tmp_path / "schema_0010"))
        _insert(client, [_batch_span("00000000000000d1", "request", "handled")])
        store.migrate(client)
        _insert(client, [_batch_span("00000000000000d2", "request", "handler_failed"), _span("live", TRACE_C, "d3")])
        kinds = dict(_rows(client, "SELECT name, default_kind FROM system.columns WHERE table = 'otel_traces'"))
        assert {name: kinds[name] for name in BATCH_COLUMNS} == dict.fromkeys(BATCH_COLUMNS, "MATERIALIZED")
        stored = _rows(client, f"SELECT SpanId, {', '.join(BATCH_COLUMNS)} FROM otel_traces ORDER BY SpanId")
        assert stored == [
            ("00000000000000d1", "batch_00000000000000d1", "request", "handled", "nightly"),
            ("00000000000000d2", "batch_00000000000000d2", "request", "handler_failed", "nightly"),
            ("d3", "", "", "", ""),
        ]
        calls = _rows(client, "SELECT id, batch_id, batch_outcome, batch_purpose FROM llm_calls ORDER BY id")
        assert calls == [(row[0], row[1], row[3], row[4]) for row in stored]
        everything = client.query("SELECT * FROM otel_traces LIMIT 1").column_names
        assert not set(BATCH_COLUMNS) & set(everything)
