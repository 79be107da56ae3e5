"""`tracehouse forget`: erase one subject (a user, a session or a trace) from everything tracehouse wrote.

What is erased, for the traces the subject appears in (a user's or session's traces are every trace with
one span carrying that user or session id, so a tool span without the id goes with its LLM call):
- their spans in `otel_traces` (content and identifiers: the whole row) and their entries in the trace
  index `otel_traces_trace_id_ts`;
- the scores and reviews of those traces, and for a user the scores that user wrote (`Author`);
- the spool: spans acknowledged before the erasure are drained into the store first and erased there, then
  every spool segment already sent is deleted, so no copy stays on disk for retry detection;
- dead letters holding any of those trace ids or the subject's id (whole files: they are refused data).
- for a user, their rows of the daily rollup by user `llm_user_daily` (found by the stored forms of the id).
The daily rollup `llm_daily` has no user, session or trace dimension: its costs stay as they were; so do the
`llm_user_daily` rows of the other users of an erased trace or session (the rollup has no trace dimension).
An `erasures` row records who asked, when, the subject's kind and the counts, never the erased values.

How rows are found: the ids as sent and as the redaction stage stores them (a hashed user id is looked for
under its hash too, stages/redact). How rows go: `ALTER TABLE ... DELETE` mutations, waited for, which
rewrite the affected parts without those rows (a lightweight DELETE only hides them); the engine removes
the replaced parts within its `old_parts_lifetime` (8 minutes by default).

Routes: while a collector owns the data dir, the command asks it (POST /forget on its local query endpoint,
with the key in collector.json), so the erasure waits for its spool to drain; otherwise it opens the store
itself, drains a spool left behind, and erases.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import re
import secrets
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracehouse.instrumentation.attributes import REPLAY_OF

if TYPE_CHECKING:
    from aiohttp import web
    from clickhouse_connect.driver.client import Client

    from tracehouse.collector.config import Config
    from tracehouse.collector.spool import Spool
    from tracehouse.collector.writer import DirectWriter, SpoolDrainer

log = logging.getLogger(__name__)

SUBJECT_KINDS = ("user", "session", "trace")
AUDIT_TABLE = "erasures"
MAX_SUBJECT_CHARS = 1024
IDS_PER_MUTATION = 2000  # a mutation's WHERE holds its ids as literals: keep the statement well under 1 MB
DRAIN_TIMEOUT_SECONDS = 120.0
ROUTE_PATH = "/forget"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# The column each kind of subject is found by in otel_traces.
_SUBJECT_COLUMNS = {"user": "UserId", "session": "SessionId"}


class ForgetFailed(Exception):
    """The erasure could not run (or not completely); the message names why and what to do."""


@dataclass(frozen=True)
class ErasableTable:
    """A table tracehouse writes and how a subject's rows are found in it."""

    name: str
    trace_column: str
    tenant_column: str = ""
    author_column: str = ""  # rows the subject wrote about any trace (a user's own scores)
    id_column: str = ""  # their ids: a mutation names rows by it, so its record never holds the user's id
    user_column: str = ""  # rows of a user by their id itself (a rollup by user, no trace ids)


TABLES = (
    ErasableTable("otel_traces", "TraceId", "TenantId"),
    ErasableTable("otel_traces_trace_id_ts", "TraceId"),
    ErasableTable("scores", "TraceId", "TenantId", author_column="Author", id_column="ScoreId"),
    ErasableTable("reviews", "TraceId", "TenantId"),
    ErasableTable("llm_user_daily", "", "tenant", user_column="user_id"),
)


@dataclass(frozen=True)
class Subject:
    kind: str
    value: str
    tenant: str = ""  # "" means every tenant

    @classmethod
    def parse(cls, kind: str, value: str, tenant: str = "") -> Subject:
        """Check a subject; raises ForgetFailed naming the flag."""
        if kind not in SUBJECT_KINDS:
            raise ForgetFailed(f"unknown subject kind {kind!r}: use --user, --session or --trace")
        value = value.strip()
        if not value:
            raise ForgetFailed(f"--{kind} needs a non-empty id")
        if len(value) > MAX_SUBJECT_CHARS or "\x00" in value:
            raise ForgetFailed(f"--{kind}: an id of at most {MAX_SUBJECT_CHARS} characters, without NUL")
        if kind == "trace":
            value = value.lower()
            if not _TRACE_ID.fullmatch(value):
                raise ForgetFailed(f"--trace {value!r}: a trace id is 32 hex digits, as OTLP/JSON writes it")
        return cls(kind, value, tenant)


@dataclass
class Erasure:
    """What an erasure found and removed (or, dry run, would remove)."""

    kind: str
    dry_run: bool
    route: str  # "collector" or "store"
    traces: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)  # rows that arrived while it ran
    drained_bytes: int = 0  # spool bytes drained into the store before erasing
    spool_bytes: int = 0  # sent spool segments deleted afterwards
    dead_letter_files: int = 0
    erasure_id: str = ""
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        head = f"forget {self.kind}: {self.traces} trace(s)" + (" (dry run: nothing changed)" if self.dry_run else "")
        lines = [head]
        width = max(len(name) for name in (*self.rows, "dead letters"))
        for table, count in self.rows.items():
            lines.append(f"  {table:<{width}}  {verb} {count} row(s)")
        lines.append(f"  {'dead letters':<{width}}  {verb} {self.dead_letter_files} file(s)")
        if self.drained_bytes:
            lines.append(f"  {'spool':<{width}}  drained {self.drained_bytes} byte(s) into the store first")
        if self.spool_bytes:
            lines.append(f"  {'spool':<{width}}  deleted {self.spool_bytes} byte(s) of sent segments")
        for table, count in self.remaining.items():
            lines.append(f"  {table}: {count} row(s) of this subject arrived while it ran: run forget again")
        lines += [f"  {note}" for note in self.notes]
        if self.erasure_id:
            lines.append(f"audit: erasure {self.erasure_id} recorded in table {AUDIT_TABLE}")
        return lines


# --- on the store --------------------------------------------------------------------------------------


def subject_forms(config: Config, subject: Subject) -> tuple[list[str], list[str]]:
    """The values to look for, and notes for the user: the id as sent and as redaction stored it."""
    if subject.kind == "trace":
        return [subject.value], []
    from tracehouse.collector.stages import redact

    column = _SUBJECT_COLUMNS[subject.kind]
    redactor = redact.build(config)
    forms = redactor.stored_forms(column, subject.value) if redactor is not None else {subject.value}
    notes = []
    if redactor is not None and redactor.masks_column(column):
        notes.append(f"redaction masks {column}: spans stored since then cannot be found by {subject.kind}")
    return sorted(forms), notes


def _chunks(values: list[str]) -> Iterator[tuple[str, ...]]:
    for start in range(0, len(values), IDS_PER_MUTATION):
        yield tuple(values[start : start + IDS_PER_MUTATION])


def _existing(client: Client) -> list[ErasableTable]:
    names = {
        row[0] for row in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
    }
    return [table for table in TABLES if table.name in names]


def find_traces(client: Client, subject: Subject, forms: list[str]) -> list[str]:
    """The subject's traces, and the traces of the replays of their calls (`tracehouse replay` writes a call's
    replay into a trace of its own, with the call's messages and no user: replays of replays too)."""
    if subject.kind == "trace":
        found = {subject.value}
    else:
        column = _SUBJECT_COLUMNS[subject.kind]
        sql = f"SELECT DISTINCT TraceId FROM otel_traces WHERE {column} IN %(forms)s"
        parameters: dict[str, Any] = {"forms": tuple(forms)}
        if subject.tenant:
            sql += " AND TenantId = %(tenant)s"
            parameters["tenant"] = subject.tenant
        found = {row[0] for row in client.query(sql, parameters=parameters).result_rows}
    new = set(found)
    while new:
        replays = {
            row[0]
            for chunk in _chunks(sorted(new))
            for row in client.query(
                # mapContains first: the key's bloom filter (idx_span_attr_key) skips the granules without a
                # replay, so the map column, the prompts' raw copies, is read only where replays are.
                f"SELECT DISTINCT TraceId FROM otel_traces WHERE mapContains(SpanAttributes, '{REPLAY_OF}')"
                f" AND SpanAttributes['{REPLAY_OF}'] IN (SELECT SpanId FROM otel_traces WHERE TraceId IN %(traces)s)",
                parameters={"traces": chunk},
            ).result_rows
        }
        new = replays - found
        found |= new
    return sorted(found)


def _authored(client: Client, table: ErasableTable, subject: Subject, forms: list[str]) -> list[str]:
    """The ids of the rows of `table` the subject wrote (a user's own scores)."""
    if not table.author_column or subject.kind != "user":
        return []
    sql = f"SELECT DISTINCT {table.id_column} FROM {table.name} WHERE {table.author_column} IN %(forms)s"
    return sorted(row[0] for row in client.query(sql, parameters={"forms": tuple(forms)}).result_rows)


def _user_condition(client: Client, table: ErasableTable, subject: Subject, forms: list[str]) -> list[tuple[str, dict]]:
    """For a table with a user column, the user's rows named by a keyed hash of the id (a random key for this
    erasure; the engine hashes the forms): the mutation's record never holds the id as sent or stored."""
    if not table.user_column or subject.kind != "user" or not forms:
        return []
    key = (secrets.randbits(64), secrets.randbits(64))
    keyed = f"sipHash64Keyed((toUInt64({key[0]}), toUInt64({key[1]})), {{value}})"
    rows = client.query(
        f"SELECT DISTINCT {keyed.format(value='form')} FROM (SELECT arrayJoin(%(forms)s) AS form)",
        parameters={"forms": list(forms)},
    ).result_rows
    hashes = ", ".join(str(int(row[0])) for row in rows)
    return [(f"{keyed.format(value=table.user_column)} IN ({hashes})", {})]


def _conditions(
    table: ErasableTable, subject: Subject, traces: list[str], authored: list[str], by_user: list[tuple[str, dict]]
) -> list[tuple[str, dict]]:
    """WHERE clauses (with their parameters) that together select the subject's rows of `table`; each
    names its parameters apart (`_n`), so they can also be joined with OR into one count."""
    conditions = list(by_user)
    tenant = bool(subject.tenant and table.tenant_column)
    for n, ids in enumerate(_chunks(traces if table.trace_column else [])):
        conditions.append((f"{table.trace_column} IN %(ids_{n})s", {f"ids_{n}": ids}))
    for n, ids in enumerate(_chunks(authored)):
        conditions.append((f"{table.id_column} IN %(authored_{n})s", {f"authored_{n}": ids}))
    if tenant:
        conditions = [
            (f"{sql} AND {table.tenant_column} = %(tenant)s", {**params, "tenant": subject.tenant})
            for sql, params in conditions
        ]
    return conditions


def _count(client: Client, table: ErasableTable, conditions: list[tuple[str, dict]]) -> int:
    if not conditions:
        return 0
    where = " OR ".join(f"({sql})" for sql, _ in conditions)
    parameters = {name: value for _, params in conditions for name, value in params.items()}
    return int(client.query(f"SELECT count() FROM {table.name} WHERE {where}", parameters=parameters).result_rows[0][0])


def _delete(client: Client, table: ErasableTable, conditions: list[tuple[str, dict]], cluster: str) -> None:
    from tracehouse.collector.store import cluster_variant

    for sql, params in conditions:
        statement = f"ALTER TABLE {table.name} DELETE WHERE {sql}"
        if cluster:
            statement = cluster_variant(statement, cluster)
        client.command(statement, parameters=params, settings={"mutations_sync": 2})


def erase_on_store(client: Client, config: Config, subject: Subject, *, dry_run: bool, route: str) -> Erasure:
    """Count the subject's rows in every table; unless a dry run, delete them (waiting for the mutations)."""
    forms, notes = subject_forms(config, subject)
    erasure = Erasure(subject.kind, dry_run, route, notes=notes)
    traces = find_traces(client, subject, forms)
    plans = [
        (
            table,
            _conditions(
                table,
                subject,
                traces,
                _authored(client, table, subject, forms),
                _user_condition(client, table, subject, forms),
            ),
        )
        for table in _existing(client)
    ]
    erasure.rows = {table.name: _count(client, table, conditions) for table, conditions in plans}
    if subject.kind == "trace":
        erasure.traces = 1 if erasure.rows.get("otel_traces") or erasure.rows.get("otel_traces_trace_id_ts") else 0
    else:
        erasure.traces = len(traces)
    dead_letters = _dead_letters(config, traces, forms)
    erasure.dead_letter_files = len(dead_letters) // 2
    if dry_run:
        return erasure
    for table, conditions in plans:
        if erasure.rows[table.name]:
            _delete(client, table, conditions, config.cluster)
    erasure.remaining = {table.name: left for table, conditions in plans if (left := _count(client, table, conditions))}
    for path in dead_letters:
        path.unlink(missing_ok=True)
    erasure.erasure_id = str(uuid.uuid4())
    return erasure


def record(client: Client, erasure: Erasure, subject: Subject, requested_by: str) -> None:
    """The audit row, once everything is erased (its spool part included)."""
    from tracehouse.collector.store import insert_values

    insert_values(
        client,
        AUDIT_TABLE,
        [
            "Timestamp",
            "ErasureId",
            "RequestedBy",
            "SubjectKind",
            "TenantId",
            "Traces",
            "Rows",
            "SpoolBytes",
            "DeadLetterFiles",
            "Route",
        ],
        [
            [
                datetime.now(UTC),
                erasure.erasure_id,
                requested_by,
                subject.kind,
                subject.tenant,
                erasure.traces,
                erasure.rows,
                erasure.spool_bytes,
                erasure.dead_letter_files,
                erasure.route,
            ]
        ],
    )


def _dead_letters(config: Config, traces: list[str], forms: list[str]) -> list[Path]:
    """Dead-letter files (rows and their metadata) that hold any of the ids (opened when sealed)."""
    from tracehouse.collector.encryption import SealFailed, sealer_for
    from tracehouse.collector.writer import read_dead_letter

    directory = config.deadletter_dir
    if not directory.is_dir():
        return []
    sealer = sealer_for(config.encryption)
    needles = [value.encode() for value in (*traces, *forms) if value]
    found = []
    for rows in sorted(directory.glob("*.rows")):
        try:
            data = read_dead_letter(rows, sealer)
        except (OSError, ValueError, SealFailed):
            continue
        if any(needle in data for needle in needles):
            found += [rows, rows.with_suffix(".json")]
    return found


def default_requester() -> str:
    """Who runs the command, for the audit row: the OS user and host, as `git` and `sudo` log it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# --- without a collector -------------------------------------------------------------------------------


def forget_offline(config: Config, subject: Subject, *, dry_run: bool, requested_by: str) -> Erasure:
    """Open the store (under the store lock when embedded), drain a spool left behind, erase."""
    from tracehouse.collector import store
    from tracehouse.collector.runtime import StoreBusy, lock_store

    if config.is_embedded and not config.store_dir.exists() and not config.spool_dir.is_dir():
        # Before the lock, which would create the data dir.
        raise ForgetFailed(f"no store in {config.data_dir}; start `tracehouse serve` first")
    try:
        lock = lock_store(config)
    except StoreBusy as exc:
        raise ForgetFailed(f"{exc}; a running collector that owns it answers `forget` itself") from None
    try:
        if config.is_embedded and not config.store_dir.exists() and not config.spool_dir.is_dir():
            raise ForgetFailed(f"no store in {config.data_dir}; start `tracehouse serve` first")
        client = store.connect(config.store_url)
        try:
            store.migrate(client, config.cluster, retention_settings=config.retention)  # the audit table
            drained = 0 if dry_run else _drain_left_behind(config)
            erasure = erase_on_store(client, config, subject, dry_run=dry_run, route="store")
            erasure.drained_bytes = drained
            if not dry_run:
                erasure.spool_bytes = _drop_sent_spool(config)
                record(client, erasure, subject, requested_by)
            return erasure
        finally:
            client.close()
    finally:
        if lock:
            lock.close()


def _drain_left_behind(config: Config) -> int:
    """Insert what a stopped collector left in its spool, with the drainer itself (same tokens, so nothing
    is stored twice); returns the bytes drained. Refuses when the store does not take them."""
    if not config.spool or not config.spool_dir.is_dir():
        return 0
    from tracehouse.collector.encryption import sealer_for
    from tracehouse.collector.metrics import CollectorMetrics
    from tracehouse.collector.spool import Spool
    from tracehouse.collector.writer import SpoolDrainer, TraceStore

    spool = Spool(config.spool_dir, config.spool_budget_bytes, sealer=sealer_for(config.encryption))
    spool.open()
    try:
        pending = spool.synced - spool.committed
        if pending <= 0:
            return 0
        trace_store = TraceStore(config.store_url, cluster=config.cluster, retention=config.retention)
        drainer = SpoolDrainer(
            spool,
            trace_store,
            CollectorMetrics(),
            config.batch_max_rows,
            0,
            config.deadletter_dir,
            max_bytes=config.batch_max_bytes,
        )
        try:
            asyncio.run(_drain(spool, drainer))
        finally:
            trace_store.close()
        return pending
    finally:
        spool.close()


async def _drain(spool: Spool, drainer: SpoolDrainer) -> None:
    drainer.start()
    try:
        await _wait_drained(spool, drainer, spool.synced)
    finally:
        await drainer.stop(0)


async def _wait_drained(spool: Spool, sink: SpoolDrainer, upto: int, timeout: float = DRAIN_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while spool.committed < upto:
        if time.monotonic() > deadline or (sink.failing and time.monotonic() > deadline - timeout + 5):
            why = sink.store_error or sink.health.last_error or "the drainer made no progress"
            raise ForgetFailed(
                f"the spool still holds {upto - spool.committed} byte(s) not in the store ({why}); nothing was"
                " erased: fix the store and run forget again"
            )
        await asyncio.sleep(0.05)


def _drop_sent_spool(config: Config) -> int:
    if not config.spool or not config.spool_dir.is_dir():
        return 0
    from tracehouse.collector.encryption import sealer_for
    from tracehouse.collector.spool import Spool

    spool = Spool(config.spool_dir, config.spool_budget_bytes, sealer=sealer_for(config.encryption))
    spool.open()
    try:
        return spool.drop_sent_segments()
    finally:
        spool.close()


# --- through a running collector -----------------------------------------------------------------------


class ForgetRoute:
    """POST /forget on the collector's local query endpoint (its key): erase once the spool is drained."""

    def __init__(self, config: Config, spool: Spool | None, sink: SpoolDrainer | DirectWriter) -> None:
        self._config = config
        self._spool = spool
        self._sink = sink
        self._lock = asyncio.Lock()  # one erasure at a time: each waits for the spool, then mutates

    async def handle(self, _request: web.Request, raw: bytes) -> web.Response:
        from aiohttp import web

        try:
            body = json.loads(raw)
            subject = Subject.parse(str(body.get("kind", "")), str(body.get("value", "")), str(body.get("tenant", "")))
            dry_run = bool(body.get("dry_run", False))
            requested_by = str(body.get("requested_by", "") or "unknown")[:256]
        except (ValueError, AttributeError) as exc:
            return web.json_response({"error": f"malformed forget request: {exc}"}, status=400)
        except ForgetFailed as exc:
            return web.json_response({"error": str(exc)}, status=400)
        async with self._lock:
            try:
                erasure = await self._forget(subject, dry_run, requested_by)
            except ForgetFailed as exc:
                return web.json_response({"error": str(exc)}, status=503)
            except Exception as exc:  # the store failed mid-way: say so, keep serving
                log.exception("forget %s failed", subject.kind)
                return web.json_response({"error": f"the erasure failed ({exc}); run forget again"}, status=500)
        return web.json_response(asdict(erasure))

    async def _forget(self, subject: Subject, dry_run: bool, requested_by: str) -> Erasure:
        from tracehouse.collector import store

        drained = 0
        if self._spool is not None and not dry_run:
            # Everything acknowledged so far must be in the store before it can be erased there.
            upto = self._spool.synced
            drained = max(0, upto - self._spool.committed)
            await _wait_drained(self._spool, self._sink, upto)  # type: ignore[arg-type]
        client = await asyncio.to_thread(store.connect, self._config.store_url)
        try:
            erasure = await asyncio.to_thread(
                erase_on_store,
                client,
                self._config,
                subject,
                dry_run=dry_run,
                route="collector",
            )
            erasure.drained_bytes = drained
            if not dry_run:
                if self._spool is not None:
                    erasure.spool_bytes = self._spool.drop_sent_segments()
                await asyncio.to_thread(record, client, erasure, subject, requested_by)
        finally:
            await asyncio.to_thread(client.close)
        log.info("forget %s: %d trace(s), rows %s (dry run: %s)", subject.kind, erasure.traces, erasure.rows, dry_run)
        return erasure


def forget(config: Config, subject: Subject, *, dry_run: bool, requested_by: str) -> Erasure:
    """Through the collector that owns this data dir, else on the store itself."""
    from tracehouse.collector.runtime import CollectorRefused, post_to_collector, read_runtime_info

    info = read_runtime_info(config)
    if info is not None and info.get("query_url"):
        payload = {
            "kind": subject.kind,
            "value": subject.value,
            "tenant": subject.tenant,
            "dry_run": dry_run,
            "requested_by": requested_by,
        }
        try:
            answer = post_to_collector(info, ROUTE_PATH, json.dumps(payload).encode(), DRAIN_TIMEOUT_SECONDS + 600)
        except CollectorRefused as exc:
            raise ForgetFailed(str(exc)) from None
        if answer is not None:
            return Erasure(**json.loads(answer))
    return forget_offline(config, subject, dry_run=dry_run, requested_by=requested_by)


# --- command line --------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> Any:
    from tracehouse.collector.config import add_flags

    command = subparsers.add_parser(
        "forget", help="erase a user's, session's or trace's data from every table (and the spool), audited"
    )
    add_flags(command, "forget")
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", metavar="ID", help="every trace with a span of this user id (and their scores)")
    which.add_argument("--session", metavar="ID", help="every trace with a span of this session id")
    which.add_argument("--trace", metavar="TRACE_ID", help="one trace (32 hex digits)")
    command.add_argument("--tenant", default="", help="only this tenant's data (default: every tenant)")
    command.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    command.add_argument(
        "--requested-by", default="", help="who asked, for the audit row (default: the OS user and host)"
    )
    return command


def run(args: Any, config: Config, out: Any) -> int:
    kind = next(k for k in SUBJECT_KINDS if getattr(args, k) is not None)
    try:
        subject = Subject.parse(kind, getattr(args, kind), args.tenant)
        erasure = forget(config, subject, dry_run=args.dry_run, requested_by=args.requested_by or default_requester())
    except ForgetFailed as exc:
        print(f"tracehouse: forget: {exc}", file=sys.stderr)
        return 1
    print("\n".join(erasure.lines()), file=out)
    return 0
