"""The column contract (collector/columns.py) against its other side, the ClickHouse schema: every name is a
column of the migrated otel_traces table (real chDB) of the kind its values need, the stages write every
one of them, and the SQL shipped with tracehouse compares CostSource and ContentSampled only with values
the contract defines. Also: the attribute names the app side and the collector share import nothing."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from normalize_support import request

from tracehouse.collector import columns, store
from tracehouse.collector.batch import OTEL_COLUMNS
from tracehouse.collector.config import parse_config
from tracehouse.collector.processing import process_batch
from tracehouse.collector.stages import default_stages
from tracehouse.collector.stages.decode import decode_request

ROOT = Path(__file__).resolve().parents[1]
STRING_TYPES = ("String", "LowCardinality(String)")

# Each contract column -> the ClickHouse types its values fit.
EXPECTED_TYPES: dict[str, tuple[str, ...]] = {
    **{name: STRING_TYPES for name in columns.LLM_STRING_COLUMNS},
    **{name: ("Nullable(UInt64)",) for name in columns.LLM_UINT_COLUMNS},
    **{name: ("Nullable(Float64)",) for name in columns.LLM_FLOAT_COLUMNS},
    **{name: ("Array(String)",) for name in columns.LLM_ARRAY_COLUMNS},
    **{name: ("Nullable(Decimal(38, 12))",) for name in columns.COST_COLUMNS},
    **{
        name: STRING_TYPES
        for name in (
            columns.COST_SOURCE,
            columns.PRICE_MODEL,
            columns.PRICE_EFFECTIVE_FROM,
            columns.PRICE_VARIANT,
        )
    },
    columns.STANDARD_COST_USD: ("Nullable(Decimal(38, 12))",),
    columns.CONTENT_SAMPLED: STRING_TYPES,
    columns.REDACTION_COUNTS: ("Map(LowCardinality(String), UInt32)",),
}


@pytest.fixture(scope="module")
def table_types(tmp_path_factory) -> dict[str, str]:
    """Column -> type of otel_traces in a freshly migrated embedded store."""
    client = store.connect(f"chdb://{tmp_path_factory.mktemp('contract') / 'store'}")
    try:
        store.migrate(client)
        rows = client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'otel_traces'"
        ).result_rows
    finally:
        client.close()
    return dict(rows)


def test_every_contract_column_is_a_table_column_of_its_kind(table_types):
    assert set(columns.TOKEN_COLUMNS) <= set(columns.LLM_UINT_COLUMNS)
    assert columns.TENANT_ID in columns.LLM_STRING_COLUMNS and columns.COST_USD in columns.COST_COLUMNS
    assert set(columns.PRICE_COLUMNS) == {*columns.COST_COLUMNS, columns.COST_SOURCE, columns.PRICE_MODEL,
                                          columns.PRICE_EFFECTIVE_FROM, columns.PRICE_VARIANT,
                                          columns.STANDARD_COST_USD, columns.CANONICAL_MODEL}  # fmt: skip
    missing = [name for name in (*OTEL_COLUMNS, *EXPECTED_TYPES) if name not in table_types]
    assert not missing, f"contract columns that otel_traces does not have: {missing}"
    wrong = {name: table_types[name] for name, types in EXPECTED_TYPES.items() if table_types[name] not in types}
    assert not wrong, f"contract columns whose table type does not fit their values: {wrong}"


def test_the_stages_write_every_contract_column_and_only_table_columns(table_types):
    config = parse_config({"sampling": {"content_share": 0.5}}, environ={})
    spans = [{"attrs": {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "input.value": "hi"}}]
    batch = process_batch(default_stages(config), decode_request(request(spans)).batch, "tenant")
    written = set(batch.columns)
    assert set(EXPECTED_TYPES) <= written, f"contract columns no stage writes: {set(EXPECTED_TYPES) - written}"
    assert written <= set(table_types), f"columns the stages write that otel_traces lacks: {written - set(table_types)}"


def _shipped_sql_texts() -> dict[str, str]:
    """Files holding SQL over otel_traces and its views: migrations, dashboards, alert rules, the README
    and the collector's own queries."""
    paths = [
        *ROOT.glob("schema/**/*.sql"),
        *ROOT.glob("dashboards/*.py"),
        *ROOT.glob("dashboards/*.json"),
        *ROOT.glob("deploy/**/*.yaml"),
        *ROOT.glob("collector/**/*.py"),
        ROOT / "README.md",
    ]
    return {str(path.relative_to(ROOT)): path.read_text() for path in paths if path.is_file()}


# A comparison with a literal, on the table's column or the views' snake_case one.
_COMPARED = {
    "CostSource": (r"\b(?:CostSource|cost_source)", {"", *columns.COST_SOURCES}),
    "ContentSampled": (r"\b(?:ContentSampled|content_sampled)", {"", *columns.SAMPLING_DECISIONS}),
}


@pytest.mark.parametrize("column", sorted(_COMPARED))
def test_shipped_sql_compares_only_with_contract_values(column):
    pattern, allowed = _COMPARED[column]
    equals = re.compile(pattern + r"\s*(?:=|==|!=|<>)\s*'([^']*)'")
    within = re.compile(pattern + r"\s+(?:NOT\s+)?IN\s*\(([^)]*)\)", re.IGNORECASE)
    found: dict[str, set[str]] = {}
    for name, text in _shipped_sql_texts().items():
        values = set(equals.findall(text))
        for listed in within.findall(text):
            values.update(re.findall(r"'([^']*)'", listed))
        if values:
            found[name] = values
    assert column != "CostSource" or found, "the pattern finds no comparison at all: is it still right?"
    strange = {name: sorted(values - allowed) for name, values in found.items() if values - allowed}
    assert not strange, f"{column} compared with values the contract does not define: {strange}"


@pytest.mark.parametrize(
    ("column", "migration", "values"),
    [
        (columns.COST_SOURCE, "0004_cost.sql", columns.COST_SOURCES),
        (columns.CONTENT_SAMPLED, "0010_content_sampling.sql", columns.SAMPLING_DECISIONS),
    ],
)
def test_the_migration_documents_every_value(column, migration, values):
    """The migration that adds the column says, in its comments, what each value means."""
    sql = (ROOT / "schema" / migration).read_text()
    assert re.search(rf"ADD COLUMN IF NOT EXISTS {column}\b", sql)
    comments = " ".join(line for line in sql.splitlines() if line.startswith("--"))
    undocumented = [value for value in values if not re.search(rf"\b{value}\b", comments)]
    assert not undocumented, f"{migration} does not say what {column} = {undocumented} means"


def test_provider_ids_are_their_own_ids():
    """Normalize stores provider_id(raw); pricing folds names with the same function, so an id must not
    move again (two tables that disagreed on `bedrock` were the bug this prevents)."""
    ids = set(columns._PROVIDER_ALIASES.values())
    assert {name: columns.provider_id(name) for name in ids} == {name: name for name in ids}
    for raw in ("bedrock", "aws.bedrock", "AWS_Bedrock", "amazon-bedrock", "aws"):
        assert columns.provider_id(raw) == "aws_bedrock", raw
    assert columns.provider_id(" Acme.Chat ") == "acme.chat"


def _modules_after_import(module: str) -> list[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_the_shared_attribute_names_import_nothing():
    source = (ROOT / "instrumentation" / "attributes.py").read_text()
    assert not [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import | ast.ImportFrom)]
    heavy = ("opentelemetry", "openinference", "tracehouse.instrumentation._", "tracehouse.collector")
    loaded = _modules_after_import("tracehouse.instrumentation.attributes")
    assert [m for m in loaded if m.startswith(heavy)] == []


def test_the_normalize_stage_does_not_load_the_app_side():
    """The collector reads the attribute names without the app side's SDK and instrumentors."""
    loaded = _modules_after_import("tracehouse.collector.stages.normalize")
    assert "tracehouse.instrumentation.attributes" in loaded
    assert [
        m for m in loaded if m.startswith(("opentelemetry.sdk", "openinference", "tracehouse.instrumentation._"))
    ] == []
