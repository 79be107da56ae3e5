"""What a tenant's read key (`[query_read_keys]`) sees through the SQL endpoint: that tenant's rows only.

The engine does the narrowing: a tenant's reads run on connections whose `additional_table_filters` setting
(set before readonly=1, so no query can change it) holds a filter for every table and materialized view of
the store, which ClickHouse applies wherever the table is read (directly, through a view, a join, a
subquery, view()). A table with a tenant column keeps the tenant's rows (and, for the prompt registry, the
shared rows of tenant '', of the registry's own tables only: a filter is matched on a table's alias
before its name); the schema bookkeeping keeps its rows; any other table, whose rows belong to
every tenant with nothing to tell them apart, reads as empty. A materialized view is filtered under its own
name: reading one reads its target without the target's filter. Plain views need none.
The filters are built from the store's catalogue (system.tables, system.columns) when a tenant read opens a
connection; a tenant read checks at most every few seconds that the store's tables are still those
(ReadOnlySql._check_store_tables): when another collector's migration added one, the filters are rebuilt
and the clients built before are closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Tables whose TenantId '' rows are every tenant's (schema/0017_prompts.sql: the CLI registers prompts as '').
SHARED_TENANT_TABLES = frozenset({"prompts", "prompt_labels"})
# Rows that say what schema the store has, no tenant's data (schema/bootstrap.sql).
SCHEMA_TABLES = frozenset({"tracehouse_migrations", "tracehouse_views"})
TENANT_COLUMNS = ("TenantId", "tenant")
LOCAL_SUFFIX = "_local"  # the sharded layout's per-node tables (schema/sharded.sql)
# Set with the filters on a tenant's connections. optimize_move_to_prewhere merges a query's WHERE with the
# filter into one PREWHERE and, by default, orders the conditions by the columns' sizes: a query's condition
# could then run first, on other tenants' rows, and an error name their values. In the order written, the
# filter's step runs first and the rest only on the rows it kept. (An explicit PREWHERE is refused.)
CONNECTION_SETTINGS = {"allow_reorder_prewhere_conditions": 0}


def _literal(text: str) -> str:
    """A string literal with nothing to escape at any quoting level (the filter sits in a Map literal)."""
    return f"unhex('{text.encode().hex()}')"


def table_filters(tables: Iterable[tuple[str, str, frozenset[str]]], tenant: str) -> dict[str, str]:
    """(name, engine, column names) of every table of the store -> the filter of each, for `tenant`."""
    filters: dict[str, str] = {}
    for name, engine, columns in tables:
        base = name.removesuffix(LOCAL_SUFFIX)
        if engine == "View" or base in SCHEMA_TABLES:
            continue
        column = next((c for c in TENANT_COLUMNS if c in columns), None)
        if column is None:
            filters[name] = "0"
        elif base in SHARED_TENANT_TABLES:
            # ClickHouse matches a filter on a table's alias before its name: `scores AS prompts` would get
            # this filter. The shared rows are kept only where _table (every engine's virtual column) says the
            # registry itself is read, so another table under its name keeps only the tenant's rows.
            registry = f"{_literal(base)}, {_literal(base + LOCAL_SUFFIX)}"
            filters[name] = f"{column} = {_literal(tenant)} OR ({column} = '' AND _table IN ({registry}))"
        else:
            filters[name] = f"{column} = {_literal(tenant)}"
    return filters


def filters_setting(filters: Mapping[str, str]) -> str:
    """The value of ClickHouse's additional_table_filters setting: a Map literal of table -> condition."""

    def quoted(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    entries = (f"{quoted(table)}: {quoted(condition)}" for table, condition in sorted(filters.items()))
    return "{" + ", ".join(entries) + "}"


TABLE_NAMES_SQL = "SELECT groupArray(name) FROM system.tables WHERE database = currentDatabase()"
CATALOGUE_SQL = (
    "SELECT t.name, t.engine, groupArray(c.name) FROM system.tables AS t"
    " LEFT JOIN system.columns AS c ON c.database = t.database AND c.table = t.name"
    " WHERE t.database = currentDatabase() GROUP BY t.name, t.engine"
)
