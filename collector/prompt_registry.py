"""The prompt registry's store side (issue 16): what is written to the prompt tables, and what GET
/v1/prompts/NAME answers.

Writes come from `tracehouse prompts sync` and `prompts label` (collector/prompts_cli.py): through the running
collector's local query endpoint (POST /prompts, the operator's key) when one owns the store, else straight
into it. Either way the rows are checked here (`check_rows`) before anything is inserted, and all the rows of
one request go in one insert: a bad row means nothing is written. With redaction on, a prompt (its name,
template, body, front matter, labels) in which the redactor finds something is refused, not redacted: the
registry stores a prompt as written and serves it back to the app, which a replaced text would change.
Observed versions need no writer: the materialized view prompt_observations_mv registers them from
otel_traces (schema/views/).

The read API answers for one tenant (the API key's): the versions it has and the shared ones (tenant ''), its
own label over a shared label of the same name; without API keys every version and the shared labels.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from tracehouse.collector.config import Config
    from tracehouse.collector.stages.redact import Redactor

log = logging.getLogger("tracehouse")

ROUTE_PATH = "/prompts"
API_PATH = "/v1/prompts/"
MAX_NAME_CHARS = 256
MAX_TEMPLATE_CHARS = 1 << 20  # a synced file larger than this is refused by the CLI, not truncated
# column -> kind, per table the route may write: "str", "strs" (list of str), "u32", "time" (epoch ns)
TABLES: dict[str, dict[str, str]] = {
    "prompts": {
        "TenantId": "str",
        "Name": "str",
        "Version": "str",
        "Template": "str",
        "Body": "str",
        "FrontMatter": "str",
        "Labels": "strs",
        "File": "str",
        "Source": "str",
        "SyncedBy": "str",
        "FirstSeen": "time",
    },
    "prompt_labels": {
        "Timestamp": "time",
        "TenantId": "str",
        "Name": "str",
        "Label": "str",
        "Version": "str",
        "VersionNumber": "u32",
        "MovedBy": "str",
        "LabelId": "str",
    },
}
_VERSION = re.compile(r"[0-9a-f]{12}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The columns of each table scanned by the redactor: a prompt's own text, who synced or moved it (`--by`, an
# operator's words, stored as written), the tenant (`--tenant`, typed on the command line: an attacker's e-mail or
# key there reached disk) and the synced file's path. The others are hashes, numbers and times.
SCANNED: dict[str, tuple[str, ...]] = {
    "prompts": ("TenantId", "Name", "Template", "Body", "FrontMatter", "Labels", "File", "SyncedBy"),
    "prompt_labels": ("TenantId", "Name", "Label", "MovedBy"),
}
# Who synced or moved a prompt is user@host by default, which reads as an e-mail address: that kind is allowed there.
_WHO = ("SyncedBy", "MovedBy")
# Identifiers the CLI prints back and Grafana shows: one printable line each (no escape sequences).
_ONE_LINE = {"TenantId": 256, "SyncedBy": 256, "MovedBy": 256}


class RowsRefused(ValueError):
    """A write request the registry does not take; the message names the row and field."""


def check_name(name: str) -> str:
    """A prompt name as the registry keys it: one line, not empty, at most MAX_NAME_CHARS characters."""
    if not name or not name.strip() or "\n" in name or len(name) > MAX_NAME_CHARS:
        raise RowsRefused(f"prompt name {name!r}: one line of 1 to {MAX_NAME_CHARS} characters")
    return name


def check_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise RowsRefused(f"label {label!r}: 1 to 64 letters, digits, '_', '.', '-', starting with a letter or digit")
    return label


def registry_redactor(config: Config) -> Redactor | None:
    """The redactor check_rows scans prompts with: None when redaction is off."""
    if not config.redaction.enabled:
        return None
    from tracehouse.collector.stages.redact import Redactor

    return Redactor(config.redaction)


def check_rows(table: str, rows: Any, redactor: Redactor | None = None) -> list[list[Any]]:
    """The rows of a write request as insert values, in TABLES[table] column order; RowsRefused naming the
    row and field of the first problem (nothing is written then)."""
    columns = TABLES.get(table)
    if columns is None:
        raise RowsRefused(f"table {table!r}: the registry writes only {', '.join(TABLES)}")
    if not isinstance(rows, list) or not rows:
        raise RowsRefused("rows: a non-empty list of objects")
    values = []
    for index, row in enumerate(rows):
        where = f"rows[{index}]"
        if not isinstance(row, dict):
            raise RowsRefused(f"{where}: an object")
        if set(row) != set(columns):
            missing, extra = sorted(set(columns) - set(row)), sorted(set(row) - set(columns))
            raise RowsRefused(f"{where}: fields {', '.join(columns)} (missing {missing}, unknown {extra})")
        converted = []
        for column, kind in columns.items():
            converted.append(_convert(f"{where}.{column}", row[column], kind))
        check_name(row["Name"])
        for column, limit in _ONE_LINE.items():
            if column in row and (len(row[column]) > limit or not row[column].isprintable()):
                raise RowsRefused(f"{where}.{column}: one line of at most {limit} printable characters")
        if not _VERSION.fullmatch(row["Version"]):
            raise RowsRefused(f"{where}.Version {row['Version']!r}: a content hash, 12 lowercase hex digits")
        if table == "prompt_labels":
            check_label(row["Label"])
        if table == "prompts" and len(row["Template"]) > MAX_TEMPLATE_CHARS:
            raise RowsRefused(f"{where}.Template: more than {MAX_TEMPLATE_CHARS} characters")
        if redactor is not None:
            _check_redacted(where, table, row, redactor)
        values.append(converted)
    return values


def _check_redacted(where: str, table: str, row: dict[str, Any], redactor: Redactor) -> None:
    for column in SCANNED[table]:
        for text in row[column] if isinstance(row[column], list) else (row[column],):
            found = redactor.kinds_in(text)
            if column in _WHO:
                found = ", ".join(kind for kind in found.split(", ") if kind not in ("", "email"))
            if found:
                raise RowsRefused(
                    f"{where}.{column}: holds what redaction removes ({found}); the registry"
                    " stores a prompt as written and serves it back, so it is refused (a value meant to be there"
                    " goes in [redaction] allow)"
                )


def _convert(where: str, value: Any, kind: str) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise RowsRefused(f"{where}: a string")
        return value
    if kind == "strs":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise RowsRefused(f"{where}: a list of strings")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowsRefused(f"{where}: an integer")
    if kind == "u32":
        if not 0 <= value < 1 << 32:
            raise RowsRefused(f"{where}: between 0 and 4294967295")
        return value
    if not 0 <= value < 1 << 63:
        raise RowsRefused(f"{where}: nanoseconds since the epoch")
    return datetime.fromtimestamp(value / 1e9, UTC)


def insert_rows(client: Any, table: str, values: list[list[Any]]) -> None:
    """One insert of checked rows (check_rows) into a prompt table (store.insert_values: no pandas)."""
    from tracehouse.collector.store import insert_values

    insert_values(client, table, list(TABLES[table]), values)


class PromptsRoute:
    """POST /prompts on the collector's local query endpoint (its key): `tracehouse prompts sync` and `label`
    write their rows through the collector that owns the store, on a connection of its own."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._redactor = registry_redactor(config)

    async def handle(self, _request: web.Request, raw: bytes) -> web.Response:
        from aiohttp import web

        from tracehouse.collector import store

        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise RowsRefused("the body: an object with 'table' and 'rows'")
            table = str(body.get("table", ""))
            values = check_rows(table, body.get("rows"), self._redactor)
        except ValueError as exc:  # RowsRefused, or JSON that does not parse
            return web.json_response({"error": f"malformed prompts request: {exc}"}, status=400)

        def write() -> None:
            client = store.connect(self._config.store_url)
            try:
                insert_rows(client, table, values)
            finally:
                client.close()

        try:
            await asyncio.to_thread(write)
        except Exception as exc:  # the store failed: say so, keep serving
            log.exception("prompts: insert into %s failed", table)
            return web.json_response({"error": f"the store refused the insert ({exc}); run it again"}, status=503)
        return web.json_response({"table": table, "rows": len(values)})


# --- reading ----------------------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A ClickHouse string literal (backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def visible_to(tenant: str | None) -> str:
    """The prompt_versions condition for what a tenant sees (None: no API keys, everything)."""
    if tenant is None:
        return "1"
    return f"(has(tenants, '') OR has(tenants, {quote(tenant)}))"


def effective_labels(rows: list[dict[str, Any]], tenant: str | None) -> dict[str, dict[str, Any]]:
    """label -> its prompt_labels_current row for the tenant: its own, else the shared one."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["tenant_id"] not in ("", tenant or ""):
            continue
        current = chosen.get(row["label"])
        if current is None or (row["tenant_id"] != "" and current["tenant_id"] == ""):
            chosen[row["label"]] = row
    return chosen


def labels_sql(name: str, tenant: str | None) -> str:
    tenants = "''" if not tenant else f"'', {quote(tenant)}"
    return (
        "SELECT tenant_id, label, version, version_number, moved_by, toString(moved_at) AS moved_at "
        f"FROM prompt_labels_current WHERE name = {quote(name)} AND tenant_id IN ({tenants}) ORDER BY label"
    )


_VERSION_COLUMNS = "name, version_number, version, template, front_matter, source, toString(first_seen) AS first_seen"
_CONTENT_COLUMNS = "template, front_matter, source, toString(first_seen) AS first_seen"


def lookup(
    rows: Callable[[str, str | None], list[dict[str, Any]]],
    tenant: str | None,
    name: str,
    label: str | None,
    number: int | None,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of GET /v1/prompts/NAME: the labelled version, or number N, or the latest.

    `rows(sql, scope)` runs a read query and returns its rows (the collector's read-only SQL): scope None reads
    every tenant's rows, a tenant's name that tenant's and the shared ones (tenant_reads.py)."""
    visible = visible_to(tenant)
    labels = effective_labels(rows(labels_sql(name, tenant), None), tenant)
    if label is not None:
        found = labels.get(label)
        if found is None:
            return 404, {"error": f"prompt {name!r} has no label {label!r}"}
        where = f"version = {quote(found['version'])}"
    elif number is not None:
        where = f"version_number = {int(number)}"
    else:
        where = "1"
    sql = (
        f"SELECT {_VERSION_COLUMNS} FROM prompt_versions WHERE name = {quote(name)} AND {visible} AND {where} "
        "ORDER BY version_number DESC LIMIT 1"
    )
    found_rows = rows(sql, None)
    if found_rows and tenant is not None:
        # Numbers are everyone's, the content the tenant's own (or the shared sync's): an observed version is
        # keyed by the app's name and version, which another tenant may use for another template.
        content = rows(
            f"SELECT {_CONTENT_COLUMNS} FROM prompt_versions WHERE name = {quote(name)} "
            f"AND version = {quote(found_rows[0]['version'])}",
            tenant,
        )
        if not content:
            found_rows = []
        else:
            found_rows[0].update(content[0])
    if not found_rows:
        if label is not None:
            return 404, {"error": f"prompt {name!r}: label {label!r} points to a version this tenant does not have"}
        if number is not None:
            return 404, {"error": f"prompt {name!r} has no version {number}"}
        return 404, {"error": f"no prompt {name!r} in the registry"}
    version = found_rows[0]
    try:
        metadata = json.loads(version["front_matter"]) if version["front_matter"] else {}
    except ValueError:
        metadata = {}
    return 200, {
        "name": version["name"],
        "version_number": int(version["version_number"]),
        "version": version["version"],
        "template": version["template"],
        "metadata": metadata,
        "labels": sorted(label for label, row in labels.items() if row["version"] == version["version"]),
    }


def query_rows(read: Callable[..., Any]) -> Callable[[str, str | None], list[dict[str, Any]]]:
    """`rows` for lookup() from a read-only runner: ReadOnlySql.run(sql, fmt, tenant=...) -> QueryResult."""

    def rows(sql: str, scope: str | None = None) -> list[dict[str, Any]]:
        body = read(sql, "jsonl", tenant=scope).body
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    return rows


def parse_query(query: Any) -> tuple[str | None, int | None]:
    """(label, version number) of GET /v1/prompts/NAME's query string; RowsRefused naming the parameter."""
    label = query.get("label")
    version = query.get("version")
    if label is not None and version is not None:
        raise RowsRefused("label and version: ask for one of them")
    if label is not None:
        check_label(label)
    number = None
    if version is not None:
        if not version.isdigit() or not 0 < int(version) < 1 << 32:
            raise RowsRefused(f"version {version!r}: the registry's version number, 1 or more")
        number = int(version)
    return label, number
