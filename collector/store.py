"""The one ClickHouse client path (clickhouse-connect, embedded chDB or a server) and the migrations:
numbered ones for tables, then the views of schema/views/ whose text changed (schema/README.md)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from tracehouse.collector import retention
from tracehouse.collector.encryption import SHARED_MEMORY, EncryptionSettings
from tracehouse.collector.retention import RetentionSettings
from tracehouse.collector.settings import ConfigError
from tracehouse.collector.sql_text import split_top_level

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "tracehouse_migrations"
VIEWS_TABLE = "tracehouse_views"
_NO_TTL_TO_REMOVE = re.compile(r"doesn't have (?:any table )?TTL|doesn't have any table TTL")
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_CLICKHOUSE_CODE = re.compile(r"Code: \d+\. DB::Exception: (.+?)(?: \(\w+\))?(?:\. \(|$)", re.MULTILINE)


class StoreUnreachable(ConnectionError):
    """The store could not be opened; the message names it (no password), the reason and the fix."""


def describe_error(exc: BaseException) -> str:
    """One line for a clickhouse-connect or OS error: the root reason, not the driver's retry story."""
    text = str(exc)
    found = _CLICKHOUSE_CODE.search(text) or _ERRNO_TEXT.search(text)
    if found:
        return found.group(1).strip().rstrip(".")
    if "timed out" in text.lower():
        return "timed out"
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


# The embedded store's chDB options, set once per process by use_encryption (chDB opens one engine per
# process, with the options of its first client).
_chdb_options: dict[str, str] = {}


def use_encryption(data_dir: Path, settings: EncryptionSettings, embedded: bool) -> None:
    """Before anything opens the store or the spool: refuse a data dir whose keys are not given, record the
    keys' fingerprints, and give the embedded store its encrypted disk (collector/encryption.py)."""
    from tracehouse.collector import encryption

    encryption.check_keys_for(data_dir, settings)
    if not settings.enabled:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    source = Path(settings.source).resolve() if settings.source.startswith("/") else None
    if source is not None and source.is_relative_to(data_dir.resolve()):
        raise ConfigError(f"encryption.key_file {source} is inside the data dir: keep the keys elsewhere")
    if not Path(SHARED_MEMORY).is_dir():
        raise ConfigError(f"encryption needs {SHARED_MEMORY} (memory) for the driver's insert files, not found")
    encryption.record_keys(data_dir, settings)
    if embedded:
        _chdb_options.update(encryption.chdb_options(data_dir, settings))


# The embedded engine's MergeTree settings, for a lean collector (issue 19). A ClickHouse server's default merges
# horizontally below 131,072 rows: every column of every part merged at once holds its read and write buffers, ~580
# MiB for merges of the writer's ~5,000-row parts of LLM spans. A vertical merge reads the sorting key first, then
# one column at a time: ~90 MiB, at the same insert rate (bench/bench_memory.py). A server's settings are its own.
ENGINE_MERGE_TREE = {"vertical_merge_algorithm_min_rows_to_activate": "1"}
ENGINE_CONFIG = "tracehouse-engine.xml"
# chDB's jemalloc keeps freed pages for 5 s by default (dirty_decay_ms), so one insert's freed memory is still
# resident while the next ones run: 1 s makes the peak loading LLM spans ~170 MiB lower at the same rate. Read
# from the environment once, when chDB loads (a JE_MALLOC_CONF already set is the user's and wins).
ENGINE_JEMALLOC = "dirty_decay_ms:1000"


def engine_config() -> str:
    """The embedded engine's configuration file: ENGINE_MERGE_TREE under <merge_tree>."""
    settings = "".join(f"<{name}>{value}</{name}>" for name, value in ENGINE_MERGE_TREE.items())
    return f"<clickhouse><merge_tree>{settings}</merge_tree></clickhouse>\n"


def _engine_options(path: Path) -> dict[str, str]:
    """chDB's options for the store at `path`: the encryption's (use_encryption) and the engine config. chDB takes
    one config file; with encryption's, ours goes into its `<name>.d/` folder, which ClickHouse merges into it.
    Also sets ENGINE_JEMALLOC for the engine's allocator."""
    os.environ.setdefault("JE_MALLOC_CONF", ENGINE_JEMALLOC)  # before chDB loads, on the first connect
    options = dict(_chdb_options)
    if "config-file" in options:
        target = Path(options["config-file"]).with_suffix(".d") / ENGINE_CONFIG
    else:
        target = path.resolve() / ENGINE_CONFIG
        options["config-file"] = str(target)
    text = engine_config()
    if not target.exists() or target.read_text() != text:
        target.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the data dir is owner-only
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return options


def _load_engine() -> None:
    """Import chDB without pyarrow and the numpy it brings (~45 MiB of RSS, a third of it anonymous): chDB imports
    it when it loads, for Arrow-shaped results (`chdb.state.sqlitelike`, where it is optional) that the collector
    never asks for. A pyarrow already imported stays; once chDB is loaded, pyarrow imports as usual for whoever
    wants it."""
    if "chdb.state.sqlitelike" in sys.modules or "pyarrow" in sys.modules:
        return
    sys.modules["pyarrow"] = None  # type: ignore[assignment]  # `import pyarrow` raises ImportError meanwhile
    try:
        import chdb.state.sqlitelike  # noqa: F401  (what chdb.connect loads, with its `import pyarrow`)
    except ImportError:
        pass  # clickhouse-connect says what is missing
    finally:
        del sys.modules["pyarrow"]


def connect(url: str) -> Client:
    """Open a client for a `chdb:///path` or `http(s)://user:pass@host:port/db` URL."""
    options: dict = {}
    if url.startswith("chdb:"):
        path = url.removeprefix("chdb://")
        if path and path != "memory" and not path.startswith(":memory:"):
            Path(path).mkdir(parents=True, exist_ok=True)
            options["chdb_options"] = _engine_options(Path(path))
        _load_engine()
    try:
        return clickhouse_connect.get_client(dsn=url, **options)
    except (ClickHouseError, OSError) as exc:
        fix = "check --clickhouse-url (TRACEHOUSE_CLICKHOUSE_URL) and that the server is up"
        if url.startswith("chdb:"):
            fix = "check the data dir (--data-dir) and that no other program opened this store"
        raise StoreUnreachable(f"cannot open the store at {redact_url(url)}: {describe_error(exc)}; {fix}") from exc


def redact_url(url: str) -> str:
    """The URL without its password, for logs and collector.json."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _split_statements(sql: str) -> tuple[str, ...]:
    """Statements end with `;` at the end of a line; comment-only chunks are dropped."""
    statements = []
    for chunk in re.split(r";\s*(?:\n|$)", sql):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            statements.append(body)
    return tuple(statements)


_ON_CLUSTER_TARGETS = re.compile(
    r"^((?:CREATE TABLE IF NOT EXISTS|CREATE MATERIALIZED VIEW IF NOT EXISTS|CREATE OR REPLACE VIEW|ALTER TABLE) \w+)"
)
_ENGINES = re.compile(r"\bENGINE = (MergeTree|AggregatingMergeTree|ReplacingMergeTree|SummingMergeTree)\b")
SHARDED = "sharded:"
SHARDED_DOCUMENT = "sharded.sql"
LOCAL_SUFFIX = "_local"


def cluster_name(cluster: str) -> tuple[str, bool]:
    """The `cluster` setting read: (the ClickHouse cluster's name, whether the layout is sharded).
    `NAME`: every table Replicated on every replica (one shard); `sharded:NAME`: also Distributed tables over
    the shards (schema/sharded.sql)."""
    sharded = cluster.startswith(SHARDED)
    name = cluster.removeprefix(SHARDED)
    if not re.fullmatch(r"[A-Za-z0-9_.{}-]+", name):
        raise ValueError(f"cluster name {name!r} is not a plain ClickHouse identifier")
    return name, sharded


def cluster_variant(statement: str, cluster: str) -> str:
    """The statement for every replica of `cluster`: `ON CLUSTER` after the object's name and the
    Replicated* form of its engine (the server's default replication path and macros apply). For a sharded
    cluster, the one statement of cluster_statements (a statement that becomes several is refused)."""
    name, sharded = cluster_name(cluster)
    if sharded:
        statements = cluster_statements(statement, cluster)
        if len(statements) != 1:
            raise ValueError(
                f"{statement.splitlines()[0][:80]} becomes {len(statements)} statements: use cluster_statements"
            )
        return statements[0]
    rewritten, found = _ON_CLUSTER_TARGETS.subn(rf"\1 ON CLUSTER '{name}'", statement, count=1)
    if not found:
        # A new kind of statement must be taught here, not silently run on one node.
        raise ValueError(f"no cluster variant for statement: {statement.splitlines()[0][:80]}")
    return _ENGINES.sub(r"ENGINE = Replicated\1", rewritten)


def cluster_statements(statement: str, cluster: str, schema: Traversable | None = None) -> tuple[str, ...]:
    """What runs for `statement` on `cluster`: its cluster_variant, or for `sharded:NAME` each statement of
    its sharded_statements made a cluster variant (ON CLUSTER, Replicated* engines)."""
    name, sharded = cluster_name(cluster)
    if not sharded:
        return (cluster_variant(statement, name),)
    return tuple(cluster_variant(part, name) for part in sharded_statements(statement, name, schema))


def _for_store(statement: str, cluster: str, schema: Traversable | None) -> tuple[str, ...]:
    return cluster_statements(statement, cluster, schema) if cluster else (statement,)


def distributed_tables(cluster: str, schema: Traversable | None = None) -> dict[str, str]:
    """schema/sharded.sql: each sharded table's Distributed statement over `cluster` (a name), by table."""
    tables = {}
    for statement in _split_statements((schema or _schema_root()).joinpath(SHARDED_DOCUMENT).read_text()):
        found = _DISTRIBUTED.fullmatch(statement)
        if not found or found.group(1) != found.group(2) or found.group(1) != found.group(3):
            raise RuntimeError(
                f"schema/{SHARDED_DOCUMENT}: each statement must be CREATE TABLE IF NOT EXISTS t AS t{LOCAL_SUFFIX} "
                f"ENGINE = Distributed({{cluster}}, currentDatabase(), t{LOCAL_SUFFIX}, <sharding key>) ..., not "
                f"{statement.splitlines()[0][:80]}"
            )
        tables[found.group(1)] = statement.replace("{cluster}", f"'{cluster}'")
    return tables


_DISTRIBUTED = re.compile(
    rf"CREATE TABLE IF NOT EXISTS (\w+) AS (\w+){LOCAL_SUFFIX}\s+"
    rf"ENGINE = Distributed\(\{{cluster\}}, currentDatabase\(\), (\w+){LOCAL_SUFFIX}, .+\)(?:\s+SETTINGS .+)?",
    re.DOTALL,
)
_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\b")
_ALTER_TABLE = re.compile(r"^ALTER TABLE (\w+)\s+(.*)$", re.DOTALL)
_CREATE_MATERIALIZED = re.compile(
    r"^(CREATE MATERIALIZED VIEW IF NOT EXISTS \w+\s+TO )(\w+)(\s+AS\s+SELECT\b.*)$", re.DOTALL
)
_READS = re.compile(r"\b(FROM|JOIN)(\s+)(\w+)\b")
# ALTER commands a Distributed table takes and must repeat (its columns are what inserts and reads see: the
# initiator computes DEFAULT and ALIAS columns); a column TTL is storage, like the other commands.
_COLUMN_COMMAND = re.compile(r"^(ADD|DROP|RENAME|COMMENT|MODIFY) COLUMN\b")
_TTL = re.compile(r"\bTTL\b")


def sharded_statements(statement: str, cluster: str, schema: Traversable | None = None) -> tuple[str, ...]:
    """The statement for the sharded layout (schema/sharded.sql), without ON CLUSTER (cluster_statements
    adds it), over `cluster` (a name). A table's CREATE makes `<table>_local` then its Distributed table;
    an ALTER that changes columns runs on both (local first), any other ALTER (settings, TTLs, mutations) on
    the local table alone; a materialized view reads and writes the local tables; a plain view reads the
    Distributed names, as it is. A table that schema/sharded.sql does not name is refused."""
    tables = distributed_tables(cluster, schema)

    def local(table: str) -> str:
        if table not in tables:
            raise ValueError(f"{table} has no Distributed table in schema/{SHARDED_DOCUMENT}: add it there")
        return table + LOCAL_SUFFIX

    if created := _CREATE_TABLE.match(statement):
        table = created.group(1)
        return _CREATE_TABLE.sub(f"CREATE TABLE IF NOT EXISTS {local(table)}", statement, count=1), tables[table]
    if materialized := _CREATE_MATERIALIZED.match(statement):
        head, target, select = materialized.groups()
        return (head + local(target) + _local_reads(select, tables),)
    if altered := _ALTER_TABLE.match(statement):
        table, commands = altered.groups()
        if table not in tables and commands.startswith("MODIFY QUERY "):  # a materialized view's query
            return (f"ALTER TABLE {table} {_local_reads(commands, tables)}",)
        on_local = f"ALTER TABLE {local(table)}" + statement[len(f"ALTER TABLE {table}") :]
        kinds = {bool(_COLUMN_COMMAND.match(c) and not _TTL.search(c)) for c in split_top_level(commands) if c}
        if kinds == {True}:
            return on_local, statement
        if kinds == {False}:
            return (on_local,)
        raise ValueError(
            f"ALTER TABLE {table} mixes column changes with other commands: the sharded layout runs column changes "
            "on the Distributed table too, so split them into two statements"
        )
    if statement.startswith("CREATE OR REPLACE VIEW "):
        return (statement,)
    raise ValueError(f"no sharded variant for statement: {statement.splitlines()[0][:80]}")


def _local_reads(select: str, tables: dict[str, str]) -> str:
    """A materialized view's query reading the local tables: it fires on the inserts of its own node."""
    return _READS.sub(
        lambda m: m.group(1) + m.group(2) + m.group(3) + (LOCAL_SUFFIX if m.group(3) in tables else ""), select
    )


def _schema_root() -> Traversable:
    return resources.files("tracehouse.schema")


def load_migrations(schema: Traversable | None = None) -> list[Migration]:
    """The numbered migrations (`NNNN_name.sql`) of `schema` (default: the packaged schema/), in order."""
    found = []
    for entry in (schema or _schema_root()).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, _split_statements(entry.read_text())))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in schema/: {versions}")
    return found


def bootstrap_statements(schema: Traversable | None = None) -> tuple[str, ...]:
    """The bookkeeping tables' DDL (schema/bootstrap.sql): which migrations and view texts a store has."""
    return _split_statements((schema or _schema_root()).joinpath("bootstrap.sql").read_text())


def applied_versions(client: Client, cluster: str = "", schema: Traversable | None = None) -> set[int]:
    for statement in bootstrap_statements(schema):
        for part in _for_store(statement, cluster, schema):
            client.command(part)
    return {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE} FINAL").result_rows}


@dataclass(frozen=True)
class View:
    """One file of schema/views/: a plain view (`CREATE OR REPLACE VIEW`) or a materialized view writing
    TO a table (`CREATE MATERIALIZED VIEW IF NOT EXISTS ... TO ...`), whose data lives in that table."""

    name: str
    file: str
    create: str
    digest: str
    target: str = ""
    select: str = ""

    def statements(self, exists: bool) -> tuple[str, ...]:
        """What applies this view to a store that has it (`exists`) or not. A plain view's CREATE OR
        REPLACE is atomic. A materialized view that exists gets its query swapped in place (MODIFY
        QUERY): no insert from another collector is missed or counted twice, as with DROP and CREATE; its
        CREATE ... IF NOT EXISTS still runs first, for the replicas of a cluster that lack it."""
        if self.target and exists:
            return self.create, f"ALTER TABLE {self.name} MODIFY QUERY {self.select}"
        return (self.create,)


_PLAIN_VIEW = re.compile(r"CREATE OR REPLACE VIEW (\w+) AS\s+SELECT\b.*", re.DOTALL)
_MATERIALIZED_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\s+TO (\w+)\s+AS\s+(SELECT\b.*)", re.DOTALL
)
_STORED_TARGET = re.compile(r"CREATE MATERIALIZED VIEW \S+ TO (?:`?\w+`?\.)?`?(\w+)`?")


def _parse_view(file: str, sql: str) -> View:
    statements = _split_statements(sql)
    name = file.removeprefix("views/").removesuffix(".sql")
    if len(statements) != 1:
        raise RuntimeError(f"schema/{file} must hold exactly one statement, not {len(statements)}")
    (statement,) = statements
    digest = hashlib.sha256(statement.encode()).hexdigest()
    if plain := _PLAIN_VIEW.fullmatch(statement):
        found, target, select = plain.group(1), "", ""
    elif materialized := _MATERIALIZED_VIEW.fullmatch(statement):
        found, target, select = materialized.groups()
    else:
        raise RuntimeError(
            f"schema/{file} must be CREATE OR REPLACE VIEW {name} AS SELECT ... or "
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} TO <table> AS SELECT ..."
        )
    if found != name:
        raise RuntimeError(f"schema/{file} defines {found}: a view's file is named after the view")
    return View(name, file, statement, digest, target, select)


def load_views(schema: Traversable | None = None) -> list[View]:
    """The views of `schema`/views/ in the order views/order.txt lists them (a view after those it reads)."""
    folder = (schema or _schema_root()).joinpath("views")
    lines = folder.joinpath("order.txt").read_text().splitlines()
    order = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    files = {entry.name.removesuffix(".sql") for entry in folder.iterdir() if entry.name.endswith(".sql")}
    if len(set(order)) != len(order) or set(order) != files:
        raise RuntimeError(
            f"schema/views/order.txt must list every view file exactly once: listed {order}, files {sorted(files)}"
        )
    return [_parse_view(f"views/{name}.sql", folder.joinpath(f"{name}.sql").read_text()) for name in order]


def _stored_target(client: Client, view: str) -> str:
    rows = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
        parameters={"name": view},
    ).result_rows
    match = _STORED_TARGET.match(rows[0][0]) if rows else None
    return match.group(1) if match else ""


def insert_values(client: Client, table: str, column_names: list[str], rows: list[list[Any]]) -> None:
    """Rows of Python values into `table` (SQL: a name this code chose, maybe `db`.`t`) as one insert in the
    writer's format (INSERT_FORMAT, JSON arrays encoded by orjson as encode_rows does): every value travels
    escaped as JSON in the body, never in the SQL. The one insert path for the small tables (bookkeeping,
    prompts, erasures, a repricing's join table): clickhouse-connect's insert() imports pandas (and numpy,
    pyarrow: ~90 MiB of RSS) to ask whether the rows are a DataFrame. Values: str, int, float, bool, None,
    list, dict (a Map), Decimal (NULL beyond Decimal(38, 12)), datetime (naive means UTC)."""
    import orjson

    from tracehouse.collector.processing import INSERT_FORMAT

    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME
    payload = b"".join([dumps(row, default=_insert_default, option=option) for row in rows])
    client.raw_insert(table, column_names=column_names, insert_block=payload, fmt=INSERT_FORMAT)


def _insert_default(value: object) -> str | None:
    from tracehouse.collector.processing import json_default, ns_text

    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return ns_text((aware - _EPOCH) // timedelta(microseconds=1) * 1000)
    return json_default(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _record_view(client: Client, name: str, digest: str) -> None:
    """One bookkeeping row: the text a view (or the retention policy) was applied with."""
    insert_values(client, VIEWS_TABLE, ["name", "digest"], [[name, digest]])


def _record_migration(client: Client, migration: Migration) -> None:
    """One bookkeeping row: a numbered migration applied."""
    insert_values(client, MIGRATIONS_TABLE, ["version", "name"], [[migration.version, migration.name]])


def apply_views(client: Client, cluster: str = "", schema: Traversable | None = None) -> list[str]:
    """(Re-)apply every view whose text differs from the one recorded, or that the store lacks; the
    others are left alone. Runs after the numbered migrations, which create every table a view reads."""
    recorded = dict(client.query(f"SELECT name, digest FROM {VIEWS_TABLE} FINAL").result_rows)
    present = {
        row[0] for row in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
    }
    applied = []
    for view in load_views(schema):
        if recorded.get(view.name) == view.digest and view.name in present:
            continue
        exists = view.name in present
        # In the sharded layout a materialized view writes TO its target's local table (sharded_statements).
        target = view.target + LOCAL_SUFFIX if view.target and cluster and cluster_name(cluster)[1] else view.target
        if view.target and exists and (stored := _stored_target(client, view.name)) != target:
            # MODIFY QUERY keeps the target: a new target is a new view under a new name.
            raise RuntimeError(
                f"schema/{view.file} writes TO {target} but the stored {view.name} writes TO {stored}: "
                "a materialized view's TO table cannot change in place, give the view a new name"
            )
        for statement in view.statements(exists):
            for part in _for_store(statement, cluster, schema):
                client.command(part)
        _record_view(client, view.name, view.digest)
        log.info("applied view %s", view.file)
        applied.append(view.file)
    return applied


def _retention_statements(settings: RetentionSettings, schema: Traversable | None = None) -> tuple[str, ...]:
    templates = _split_statements((schema or _schema_root()).joinpath(retention.DOCUMENT).read_text())
    return retention.render(templates, settings)


def retention_digest(settings: RetentionSettings, schema: Traversable | None = None) -> str:
    """What a store that has this policy records (`tracehouse retention status` compares)."""
    return hashlib.sha256("\n;\n".join(_retention_statements(settings, schema)).encode()).hexdigest()


def apply_retention(
    client: Client, settings: RetentionSettings, cluster: str = "", schema: Traversable | None = None
) -> bool:
    """Apply schema/retention.sql for these settings when its rendering differs from the one this store
    recorded (or a policy is set for the first time); True if applied. Logged: expiry is not silent."""
    rendered = _retention_statements(settings, schema)
    digest = retention_digest(settings, schema)
    recorded = client.query(
        f"SELECT digest FROM {VIEWS_TABLE} FINAL WHERE name = {{name:String}}",
        parameters={"name": retention.DOCUMENT},
    ).result_rows
    if recorded and recorded[0][0] == digest:
        return False
    if recorded or not retention.keeps_everything(settings):  # a store never given a policy has none to remove
        for statement in rendered:
            for part in _for_store(statement, cluster, schema):
                try:
                    client.command(part)
                except ClickHouseError as exc:
                    # REMOVE TTL where there is none (a period that was never set): already as wanted.
                    if "REMOVE TTL" not in part or not _NO_TTL_TO_REMOVE.search(str(exc)):
                        raise
        log.info("retention applied (ALTER TABLE ... MODIFY TTL): %s", settings.summary())
    _record_view(client, retention.DOCUMENT, digest)
    return bool(recorded) or not retention.keeps_everything(settings)


def migrate(
    client: Client,
    cluster: str = "",
    schema: Traversable | None = None,
    retention_settings: RetentionSettings | None = None,
) -> list[str]:
    """Apply the numbered migrations not yet recorded (each statement is itself idempotent: IF NOT EXISTS),
    then the views whose text changed; returns what was applied (migration and view file names).

    With `cluster`, every statement runs `ON CLUSTER` with Replicated* engines (see cluster_variant); with
    `sharded:NAME`, in the sharded layout of schema/sharded.sql (see sharded_statements).
    `schema` is the folder holding the migrations, bootstrap.sql and views/ (default: the packaged one).
    """
    done = applied_versions(client, cluster, schema)
    applied = []
    for migration in load_migrations(schema):
        if migration.version in done:
            continue
        for statement in migration.statements:
            for part in _for_store(statement, cluster, schema):
                client.command(part)
        _record_migration(client, migration)
        log.info("applied migration %s", migration.name)
        applied.append(migration.name)
    applied += apply_views(client, cluster, schema)
    if retention_settings is not None and apply_retention(client, retention_settings, cluster, schema):
        applied.append(retention.DOCUMENT)
    if _chdb_options:
        seal_plain_parts(client)
    return applied


def seal_plain_parts(client: Client) -> int:
    """Move the parts a store wrote before encryption was on onto the encrypted disk (logged); returns how many.
    The blocks they leave on the plain disk are freed, not overwritten."""
    from tracehouse.collector.encryption import ENCRYPTED_DISK

    parts = client.query(
        "SELECT table, name FROM system.parts WHERE active AND database = currentDatabase() AND disk_name = 'default'"
    ).result_rows
    for table, name in parts:
        client.command(f"ALTER TABLE `{table}` MOVE PART '{name}' TO DISK '{ENCRYPTED_DISK}'")
    if parts:
        log.info("encryption: moved %d part(s) written before encryption onto the encrypted disk", len(parts))
    return len(parts)
