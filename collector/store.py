"""The one ClickHouse client path (clickhouse-connect, embedded chDB or a server) and the migrations."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "tracehouse_migrations"
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


def connect(url: str) -> Client:
    """Open a client for a `chdb:///path` or `http(s)://user:pass@host:port/db` URL."""
    if url.startswith("chdb:"):
        from pathlib import Path

        path = url.removeprefix("chdb://")
        if path and path != "memory" and not path.startswith(":memory:"):
            Path(path).mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=url)
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


def cluster_variant(statement: str, cluster: str) -> str:
    """The statement for every replica of `cluster`: `ON CLUSTER` after the object's name and the
    Replicated* form of its engine (the server's default replication path and macros apply)."""
    if not re.fullmatch(r"[A-Za-z0-9_.{}-]+", cluster):
        raise ValueError(f"cluster name {cluster!r} is not a plain ClickHouse identifier")
    rewritten, found = _ON_CLUSTER_TARGETS.subn(rf"\1 ON CLUSTER '{cluster}'", statement, count=1)
    if not found:
        # A new kind of statement must be taught here, not silently run on one node.
        raise ValueError(f"no cluster variant for statement: {statement.splitlines()[0][:80]}")
    return _ENGINES.sub(r"ENGINE = Replicated\1", rewritten)


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("tracehouse.schema").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, _split_statements(entry.read_text())))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in schema/: {versions}")
    return found


def applied_versions(client: Client, cluster: str = "") -> set[int]:
    for statement in _split_statements(resources.files("tracehouse.schema").joinpath("bootstrap.sql").read_text()):
        client.command(cluster_variant(statement, cluster) if cluster else statement)
    return {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE} FINAL").result_rows}


def migrate(client: Client, cluster: str = "") -> list[str]:
    """Apply the migrations not yet recorded; each statement is itself idempotent (IF NOT EXISTS).

    With `cluster`, every statement runs `ON CLUSTER` with Replicated* engines (see cluster_variant).
    """
    done = applied_versions(client, cluster)
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(cluster_variant(statement, cluster) if cluster else statement)
        client.insert(MIGRATIONS_TABLE, [[migration.version, migration.name]], column_names=["version", "name"])
        log.info("applied migration %s", migration.name)
        applied.append(migration.name)
    return applied
