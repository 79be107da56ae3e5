"""The I/O edge towards ClickHouse: the store connection, and the two ways encoded rows get there.

- `SpoolDrainer` (the default): requests are acknowledged once their record is fsynced in the
  spool; the drainer inserts large batches from it, each with a deduplication token derived from
  its spool range, so a crash and replay never duplicates.
- `DirectWriter` (spool off): a request waits until its rows are inserted; whatever arrived while
  the previous insert ran goes into the next one (group commit).

Rows arrive encoded (`processing.encode_rows`, in `processing.INSERT_FORMAT`, one row per line), each batch
for one table: the spans' (`otel_traces`, named "" by the spool and the pipeline) or another one (`scores`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

from tracehouse.collector import store
from tracehouse.collector.encryption import RecordSealer
from tracehouse.collector.metrics import CollectorMetrics
from tracehouse.collector.processing import INSERT_FORMAT
from tracehouse.collector.retention import RetentionSettings
from tracehouse.collector.spool import Intent, Record, Spool

log = logging.getLogger(__name__)

TRACES_TABLE = "otel_traces"

# ClickHouse error codes that mean the data itself is wrong: retrying cannot help. 395 is throwIf() and 469 a
# CHECK constraint, both a table's or a view's own rule refusing rows.
PERMANENT_ERROR_CODES = frozenset(
    {6, 9, 16, 25, 26, 27, 38, 41, 53, 69, 70, 72, 117, 130, 321, 349, 376, 395, 407, 441, 467, 469}
)
# How ClickHouse names a materialized view that failed on an insert. By then the table's own part is written:
# inserting the rows again, in halves under new tokens, would store them twice.
_VIEW_FAILED = "while pushing to view"


# Spans of one batch may fall on any number of days (a backfill, clocks off by years); the table is
# partitioned by day and ClickHouse's default refuses an insert touching more than 100 partitions, a
# refusal that would hold the drainer forever. Such an insert is slower, never wrong.
_INSERT_SETTINGS = {"max_partitions_per_insert_block": 0}


class StoreUnavailable(Exception):
    """The store did not take the rows this time; try again later."""


class BatchRejected(Exception):
    """The store refuses these rows as invalid; retrying cannot help."""


class _ViewRejected(BatchRejected):
    """A materialized view refused rows that its table took."""


class TraceStore:
    """The writer's own connection: connects and migrates lazily (the collector starts while the store
    is away), inserts encoded rows and sorts failures into retryable and permanent.

    `fault_file` is the documented fault-injection hook for the embedded store: while that file
    exists, every operation fails as if the store were unreachable.
    """

    def __init__(
        self,
        url: str,
        fault_file: Path | None = None,
        table: str = TRACES_TABLE,
        cluster: str = "",
        retention: RetentionSettings | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self._url = url
        self._metrics = metrics
        self._cluster = cluster
        self._retention = retention
        self._fault_file = fault_file
        self._table = table
        self._client: Client | None = None

    def _check_fault(self) -> None:
        if self._fault_file is not None and self._fault_file.exists():
            raise StoreUnavailable(f"fault injected: {self._fault_file} exists")

    def ensure_ready(self) -> Client:
        self._check_fault()
        if self._client is None:
            try:
                client = store.connect(self._url)
                applied = store.migrate(client, self._cluster, retention_settings=self._retention)
            except Exception as exc:
                raise StoreUnavailable(f"store at {store.redact_url(self._url)} unreachable: {exc}") from exc
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            self._client = client
        return self._client

    def insert(self, header: bytes, payload: bytes | list[bytes], token: str | None = None, table: str = "") -> None:
        """Insert encoded rows into `table` ("" for this store's spans table), with the deduplication token.
        `payload` is the rows or a list of pieces of them (records, requests), sent as they are: a joined copy
        would be one more insert's worth of memory (64 MiB by default), and the HTTP client makes another to put
        the INSERT statement in front of bytes, not of pieces (it streams them)."""
        settings = dict(_INSERT_SETTINGS, insert_deduplication_token=token) if token else _INSERT_SETTINGS
        try:
            self._raw_insert(header, payload, settings, table)
        except _ViewRejected as exc:
            # A view refused rows the table took. The same insert again, same token, with view errors ignored: the
            # table drops the blocks it has, and so do the views' tables that had them (their deduplication window,
            # schema/0027), so every row is in each table once but the failed view's.
            self._raw_insert(header, payload, dict(settings, materialized_views_ignore_errors=1), table)
            if self._metrics is not None:
                self._metrics.insert_failures.labels("view").inc()
            log.error("stored, but a materialized view refused these rows and misses them: %s", exc)

    def _raw_insert(self, header: bytes, payload: bytes | list[bytes], settings: dict, table: str) -> None:
        client = self.ensure_ready()
        try:
            client.raw_insert(
                table or self._table,
                column_names=header.decode().split(","),
                insert_block=iter(payload) if isinstance(payload, list) else payload,
                settings=settings,
                fmt=INSERT_FORMAT,
            )
        except DatabaseError as exc:
            code = getattr(exc, "code", None) or _error_code(str(exc))
            if code in PERMANENT_ERROR_CODES:
                refused = _ViewRejected if _VIEW_FAILED in str(exc) else BatchRejected
                raise refused(str(exc).splitlines()[0][:2000]) from exc
            self._drop_connection()
            raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc
        except (ClickHouseError, OSError) as exc:
            self._drop_connection()
            raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc

    def _drop_connection(self) -> None:
        if self._client is not None and not self._url.startswith("chdb:"):
            try:
                self._client.close()
            finally:
                self._client = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _error_code(message: str) -> int | None:
    marker = message.find("Code: ")
    if marker < 0:
        return None
    digits = ""
    for ch in message[marker + 6 :]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


@dataclass
class Backoff:
    """Exponential backoff with full jitter."""

    base: float = 0.2
    cap: float = 10.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.base * (2**self.attempt)))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


# A drainer with data waiting and no insert for this long is stalled (hung store call, lost wakeup):
# not ready, even though its task is alive.
STALL_SECONDS = 120.0


@dataclass
class TaskHealth:
    """What /readyz and /metrics say about one background task: is it running, is it failing, since when."""

    name: str
    alive: bool = False
    failing: bool = False  # the last attempt ended in an unexpected error (not "the store is away")
    restarts: int = 0
    last_error: str = ""
    last_error_at: float | None = None  # wall clock
    last_success_at: float | None = None  # wall clock of the last insert that succeeded

    def succeeded(self) -> None:
        self.failing = False
        self.last_success_at = time.time()

    def failed(self, exc: BaseException) -> None:
        self.failing = True
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.last_error_at = time.time()

    def snapshot(self) -> dict[str, object]:
        now = time.time()
        return {
            "alive": self.alive,
            "failing": self.failing,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_age_seconds": None if self.last_error_at is None else round(now - self.last_error_at, 3),
            "last_success_age_seconds": None if self.last_success_at is None else round(now - self.last_success_at, 3),
        }


def supervise(
    run: Callable[[], Awaitable[None]],
    health: TaskHealth,
    metrics: CollectorMetrics,
    stopping: asyncio.Event,
) -> asyncio.Task[None]:
    """Run `run` as a background task that cannot die quietly: an unexpected error is logged with its
    traceback, counted, marks the task failing (so /readyz says not ready) and `run` starts again after a
    backoff. `run` must rebuild its state from durable state (the drainer re-reads the spool's intent),
    so a restart is as safe as a process restart. The task ends only when `run` returns."""
    up = metrics.task_up.labels(health.name)

    async def guarded() -> None:
        backoff = Backoff(base=0.5, cap=5.0)
        health.alive = True
        up.set(1)
        try:
            while True:
                try:
                    await run()
                    return
                except Exception as exc:
                    if (
                        health.last_success_at
                        and health.last_error_at
                        and health.last_success_at > health.last_error_at
                    ):
                        backoff.reset()
                    health.failed(exc)
                    health.restarts += 1
                    metrics.task_errors.labels(health.name).inc()
                    metrics.task_failing.labels(health.name).set(1)
                    delay = backoff.next_delay()
                    log.error("%s failed, restarting in %.1fs: %s", health.name, delay, health.last_error, exc_info=exc)
                    if stopping.is_set():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), delay)
        finally:
            health.alive = False
            up.set(0)

    def ended(task: asyncio.Task[None]) -> None:
        if not stopping.is_set():
            cause = "cancelled" if task.cancelled() else repr(task.exception())
            log.critical(
                "%s ended while the collector runs (%s): not ready; nothing more is stored", health.name, cause
            )

    task = asyncio.create_task(guarded(), name=f"tracehouse-{health.name}")
    task.add_done_callback(ended)
    return task


@dataclass(frozen=True)
class _Unit:
    """A piece of a refused range that bisection can insert on its own: a record, or one row of one."""

    key: str
    rows: int
    payload: bytes


def _units_of_records(records: list[Record]) -> list[_Unit]:
    return [_Unit(f"{r.start}-{r.end}", r.rows, r.payload) for r in records]


def _units_of_rows(unit: _Unit) -> list[_Unit]:
    """The rows of one record: INSERT_FORMAT is one row per line (see processing.encode_rows)."""
    lines = unit.payload.split(b"\n")[:-1]
    return [_Unit(f"{unit.key}:{i}", 1, line + b"\n") for i, line in enumerate(lines)]


def _split(group: list[_Unit]) -> list[list[_Unit]]:
    """The two halves of a refused group, in order (one record splits into its rows); [] for one row."""
    if len(group) == 1:
        group = _units_of_rows(group[0]) if group[0].rows > 1 else group
        if len(group) == 1:
            return []
    middle = len(group) // 2
    return [group[:middle], group[middle:]]


def _group_token(base: str, group: list[_Unit]) -> str:
    """A sub-range's deduplication token, a function of the intent and the sub-range only: a replay after
    a crash mid-bisection splits the same way and ClickHouse drops what was already inserted."""
    return f"{base}/{group[0].key}" if len(group) == 1 else f"{base}/{group[0].key}..{group[-1].key}"


class SpoolDrainer:
    """Moves records from the spool into the store, in order, exactly once.

    `fault_read_file` is a fault-injection hook for tests: while that file exists, every spool read
    of the drainer raises OSError (EMFILE), like a collector out of file descriptors.
    """

    def __init__(
        self,
        spool: Spool,
        trace_store: TraceStore,
        metrics: CollectorMetrics,
        max_rows: int,
        linger_ms: int,
        deadletter_dir: Path,
        fault_read_file: Path | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._spool = spool
        self._store = trace_store
        self._metrics = metrics
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._linger = linger_ms / 1000
        self._last_insert = -math.inf  # monotonic start of the latest insert: a linger counts from it
        self._deadletter_dir = deadletter_dir
        self._fault_read_file = fault_read_file
        self._stopping = asyncio.Event()
        self._draining = False  # stop() began: no lingering, the grace is for draining
        self._task: asyncio.Task[None] | None = None
        self.health = TaskHealth("drainer")
        self.store_ready = False
        self.store_error = ""
        self.failing = False  # the last store operation failed: shutdown does not wait for a drain
        self.backoff = Backoff()
        self._last_progress = time.monotonic()  # the last commit, or when data started waiting

    def start(self) -> None:
        self._task = supervise(self._run, self.health, self._metrics, self._stopping)

    async def stop(self, grace: float) -> None:
        """Drain what is durable within `grace` seconds; the rest stays in the spool for next start."""
        self._draining = True
        deadline = time.monotonic() + grace
        while (
            self._spool.synced > self._spool.committed
            and not self.failing
            and not self.health.failing
            and self.health.alive
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        self._stopping.set()
        self._spool.wake()  # the drain loop may be waiting for data (up to 0.5 s): it sees the stop at once
        if self._task:
            await self._task

    # --- what readiness and metrics see ------------------------------------------------------------

    def stalled_seconds(self) -> float:
        """How long data has waited with no insert committing; 0 when nothing waits."""
        if self._spool.synced <= self._spool.committed:
            return 0.0
        return min(time.monotonic() - self._last_progress, self._spool.oldest_age_seconds())

    def problems(self) -> list[str]:
        problems = []
        if not self.health.alive:
            problems.append("drainer is not running: acknowledged spans are not being stored")
        elif self.health.failing:
            problems.append(f"drainer failing: {self.health.last_error}")
        if not self.store_ready:
            problems.append("store unreachable")
        stalled = self.stalled_seconds()
        if stalled > STALL_SECONDS:
            problems.append(f"drainer stalled: no insert for {stalled:.0f}s while spans wait")
        return problems

    def status(self) -> dict[str, object]:
        return {
            **self.health.snapshot(),
            "store_ready": self.store_ready,
            "store_error": self.store_error,
            "pending_bytes": self._spool.pending_bytes,
            "oldest_unsent_age_seconds": round(self._spool.oldest_age_seconds(), 3),
            "stalled_seconds": round(self.stalled_seconds(), 3),
        }

    def update_gauges(self) -> None:
        m = self._metrics
        m.spool_bytes.set(self._spool.pending_bytes)
        m.spool_oldest_age.set(self._spool.oldest_age_seconds())
        m.drain_stalled.set(self.stalled_seconds())
        m.task_failing.labels(self.health.name).set(1 if self.health.failing or not self.health.alive else 0)
        if self.health.last_success_at is not None:
            m.last_insert_time.labels(self.health.name).set(self.health.last_success_at)
        if self.health.last_error_at is not None:
            m.last_error_time.labels(self.health.name).set(self.health.last_error_at)

    # --- draining ----------------------------------------------------------------------------------

    def _read(self, start: int, max_rows: int, end: int | None = None, payloads: bool = True) -> list[Record]:
        if self._fault_read_file is not None and self._fault_read_file.exists():
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), f"fault injected: {self._fault_read_file}")
        return self._spool.read(start, max_rows, end=end, max_bytes=self._max_bytes, payloads=payloads)

    def _plan(self, start: int) -> list[Record]:
        """The records of the next insert, framing only: planned on the event loop, a few bytes a record."""
        return self._read(start, self._max_rows, payloads=False)

    async def _run(self) -> None:
        """The drain loop. Its only state is on disk (checkpoint, intent), so the supervisor can restart it."""
        intent = self._spool.read_intent()
        while not self._stopping.is_set():
            try:
                if intent is not None:
                    await self._insert_range(intent)
                    intent = None
                    continue
                if self._spool.synced <= self._spool.committed:
                    self._last_progress = time.monotonic()
                await self._spool.wait_for_data(timeout=0.5)
                if self._stopping.is_set():
                    break  # woken by stop(): not a moment for a store check that may hang on a server away
                if self._spool.synced <= self._spool.committed:
                    if not self.store_ready:
                        await self._call(self._store.ensure_ready)
                        self._store_up()
                    if self.health.failing:
                        self.health.failing = False  # idle and nothing failed since the restart
                        self._metrics.task_failing.labels(self.health.name).set(0)
                    continue
                if self._linger:
                    await self._linger_for_rows()
                records = self._plan(self._spool.committed)
                if not records:
                    self._spool.skip_gap()
                    continue
                start, end = records[0].start, records[-1].end
                planned = Intent(start, end, f"tracehouse-spool-{self._spool.instance_id}-{start}-{end}")
                await asyncio.to_thread(self._spool.write_intent, planned)  # two fsyncs: off the event loop
                intent = planned  # only once it is on disk: a replay must use exactly this range and token
            except StoreUnavailable as exc:
                self.store_ready = False
                self.store_error = str(exc)[:500]
                self.failing = True
                self._metrics.store_up.set(0)
                self._metrics.insert_failures.labels("unavailable").inc()
                delay = self.backoff.next_delay()
                log.warning("store unavailable, retrying in %.1fs: %s", delay, exc)
                await self._sleep(delay)

    def _store_up(self) -> None:
        self.store_ready = True
        self.store_error = ""
        self.failing = False
        self._metrics.store_up.set(1)
        self.backoff.reset()

    async def _linger_for_rows(self) -> None:
        """Hold a small batch of spans until `linger` after the previous insert began: under a steady flow inserts
        come about that often and grow with the rate (each insert costs ClickHouse a part to write and merge again,
        whatever its size: bench/bench_merges.py), while a batch after a quiet spell goes at once. Scores and reviews
        never wait. It stops waiting as soon as the next insert can take no more: another table or column layout
        follows in the spool (scores between spans), or a cap is reached. Only the records that arrived since the
        last look are planned, so a long wait over many small records costs the event loop no more than planning
        them once."""
        deadline = self._last_insert + self._linger
        planned_to = self._spool.committed
        first: Record | None = None
        rows = size = 0
        while not self._draining and time.monotonic() < deadline:
            synced = self._spool.synced
            if synced > planned_to:
                more = self._read(planned_to, self._max_rows, payloads=False)
                if not more:
                    return
                first = first or more[0]
                if first.table:
                    return  # scores and reviews: few and small, and a person may read them back at once
                rows += sum(r.rows for r in more)
                size += sum(r.end - r.start for r in more)
                planned_to = more[-1].end
                if (
                    planned_to < synced  # the read stopped at another table or layout, or at a cap
                    or (more[0].header, more[0].table) != (first.header, first.table)
                    or rows >= self._max_rows
                    or (self._max_bytes is not None and size * 2 >= self._max_bytes)
                ):
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await self._spool.wait_for_synced_beyond(planned_to, min(left, 0.05))

    async def _insert_range(self, intent: Intent) -> None:
        # Up to an insert's worth of bytes (64 MiB): read in a thread, not on the event loop the receivers share.
        records = await asyncio.to_thread(self._read, intent.start, self._max_rows, intent.end)
        if not records or records[-1].end != intent.end:
            raise RuntimeError(f"spool range {intent.start}-{intent.end} is not whole on disk")
        rows = sum(r.rows for r in records)
        started = time.perf_counter()
        self._last_insert = time.monotonic()
        try:
            payload = [r.payload for r in records]
            await self._call(self._store.insert, records[0].header, payload, intent.token, records[0].table)
        except BatchRejected as exc:
            self._metrics.insert_failures.labels("rejected").inc()
            await self._isolate_rejected(records, intent.token, str(exc))
        else:
            self._metrics.insert_latency.observe(time.perf_counter() - started)
            self._metrics.insert_batches.inc()
            self._metrics.insert_rows.inc(rows)
        self._store_up()
        await asyncio.to_thread(self._spool.write_checkpoint, intent.end)  # two fsyncs: off the event loop
        self._spool.commit(intent.end, checkpoint_written=True)
        self._last_progress = time.monotonic()
        self.health.succeeded()
        self._metrics.spool_bytes.set(self._spool.pending_bytes)

    async def _isolate_rejected(self, records: list[Record], token: str, reason: str) -> None:
        """Find the rows ClickHouse refuses by bisection: halves of the range, recursively, down to one
        record, then down to its rows. Good halves are inserted at once, so k bad rows among n cost
        O(k log n) inserts; only the refused rows go to deadletter/. A StoreUnavailable on the way
        propagates: the whole intent is retried later, and ClickHouse drops the sub-ranges it already has."""
        header, table = records[0].header, records[0].table
        pending = _split(_units_of_records(records))[::-1]
        while pending:
            group = pending.pop()
            group_token = _group_token(token, group)
            try:
                await self._call(self._store.insert, header, [u.payload for u in group], group_token, table)
            except BatchRejected as exc:
                self._metrics.insert_failures.labels("rejected").inc()
                halves = _split(group)
                if halves:
                    pending += halves[::-1]
                else:
                    self._dead_letter(header, group[0], group_token, str(exc) or reason, table)
            else:
                self._metrics.insert_batches.inc()
                self._metrics.insert_rows.inc(sum(u.rows for u in group))

    def _dead_letter(self, header: bytes, unit: _Unit, token: str, reason: str, table: str = "") -> None:
        """Keep refused rows with the reason, in files only the collector's user can read (they hold span data).
        Named by the token, so a replay rewrites the same files instead of adding copies."""
        self._deadletter_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = token.replace("/", "_").replace("..", "_to_")
        meta: dict = {"reason": reason, "columns": header.decode().split(","), "rows": unit.rows, "range": unit.key}
        if table:
            meta["table"] = table
        payload = unit.payload
        sealer = self._spool.sealer
        if sealer is not None:  # encryption at rest: the rows and the reason (it may quote them) sealed
            payload = sealer.seal(payload, dead_letter_binding(name))
            sealed_reason = sealer.seal(reason.encode(), dead_letter_binding(name, "reason"))
            meta["reason"] = "sealed:" + base64.b64encode(sealed_reason).decode()
        _write_private(self._deadletter_dir / f"{name}.rows", payload)
        _write_private(self._deadletter_dir / f"{name}.json", json.dumps(meta, indent=1).encode())
        self._metrics.dead_lettered.inc()
        self._metrics.dead_lettered_rows.inc(unit.rows)
        log.error("dead-lettered %d row(s) (%s): %s", unit.rows, name, reason[:300])

    async def _call(self, fn: Callable, *args):
        return await asyncio.to_thread(fn, *args)

    async def _sleep(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return


def dead_letter_binding(name: str, part: str = "rows") -> bytes:
    """What a sealed dead letter is bound to: its file name and part."""
    return f"tracehouse dead letter {name} {part}".encode()


def read_dead_letter(path: Path, sealer: RecordSealer | None) -> bytes:
    """The rows of a dead letter (`<name>.rows`), opened when sealed; raises OSError or SealFailed."""
    data = path.read_bytes()
    if sealer is None or not path.with_suffix(".json").exists():
        return data
    meta = json.loads(path.with_suffix(".json").read_text())
    if not str(meta.get("reason", "")).startswith("sealed:"):
        return data  # written before encryption was on
    return sealer.open(data, dead_letter_binding(path.stem), f"dead letter {path.name}")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass
class _Pending:
    header: bytes
    payload: bytes
    rows: int
    future: asyncio.Future[None]
    table: str = ""


class DirectWriter:
    """Spool off: a request's future resolves only after its rows are in ClickHouse. It does not linger (an exporter
    that waits for each acknowledgement before its next request would wait out every linger): what arrives while an
    insert runs goes into the next one together."""

    def __init__(
        self,
        trace_store: TraceStore,
        metrics: CollectorMetrics,
        max_rows: int,
        max_bytes: int | None = None,
    ) -> None:
        self._store = trace_store
        self._metrics = metrics
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.health = TaskHealth("writer")
        self.store_ready = False
        self.store_error = ""

    def start(self) -> None:
        self._task = supervise(self._run, self.health, self._metrics, self._stopping)

    async def write(self, header: bytes, payload: bytes, rows: int, table: str = "") -> None:
        """Return once the rows are stored in `table` ("" for the spans'); raise StoreUnavailable if not."""
        if not rows:
            return
        if self._closing:
            raise StoreUnavailable("collector is shutting down")
        if not self.health.alive:
            raise StoreUnavailable("the writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(header, payload, rows, future, table))
        self._wakeup.set()
        await future

    async def stop(self, grace: float) -> None:
        self._closing = True
        self._stopping.set()
        self._wakeup.set()
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.warning("writer did not finish within %.1fs", grace)
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(StoreUnavailable("collector is shutting down"))
        self._pending.clear()  # refused, so the client retries: an insert still running must not store them as well

    def problems(self) -> list[str]:
        problems = []
        if not self.health.alive:
            problems.append("writer is not running: requests cannot be stored")
        elif self.health.failing:
            problems.append(f"writer failing: {self.health.last_error}")
        if not self.store_ready:
            problems.append("store unreachable")
        return problems

    def status(self) -> dict[str, object]:
        return {
            **self.health.snapshot(),
            "store_ready": self.store_ready,
            "store_error": self.store_error,
            "pending_requests": len(self._pending),
        }

    def update_gauges(self) -> None:
        m = self._metrics
        m.task_failing.labels(self.health.name).set(1 if self.health.failing or not self.health.alive else 0)
        if self.health.last_success_at is not None:
            m.last_insert_time.labels(self.health.name).set(self.health.last_success_at)
        if self.health.last_error_at is not None:
            m.last_error_time.labels(self.health.name).set(self.health.last_error_at)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._flush()

    async def _flush(self) -> None:
        header, table = self._pending[0].header, self._pending[0].table
        taken: list[_Pending] = []
        rows = size = 0
        while (
            self._pending
            and self._pending[0].header == header
            and self._pending[0].table == table
            and (not taken or rows + self._pending[0].rows <= self._max_rows)
            and (not taken or self._max_bytes is None or size + len(self._pending[0].payload) <= self._max_bytes)
        ):
            item = self._pending.pop(0)
            taken.append(item)
            rows += item.rows
            size += len(item.payload)
        started = time.perf_counter()
        try:
            payload = [p.payload for p in taken]
            await asyncio.to_thread(self._store.insert, header, payload, None, table)
        except (StoreUnavailable, BatchRejected) as exc:
            self.store_ready = False
            self.store_error = str(exc)[:500]
            self._metrics.store_up.set(0)
            kind = "rejected" if isinstance(exc, BatchRejected) else "unavailable"
            self._metrics.insert_failures.labels(kind).inc()
            log.error("insert of %d spans failed: %s", rows, exc)
            _fail(taken, exc)
            return
        except Exception as exc:
            # Not stored: the clients hear UNAVAILABLE and retry; the supervisor logs and restarts us.
            _fail(taken, StoreUnavailable(f"writer error: {type(exc).__name__}: {exc}"))
            raise
        self.store_ready = True
        self.store_error = ""
        self.health.succeeded()
        self._metrics.store_up.set(1)
        self._metrics.insert_latency.observe(time.perf_counter() - started)
        self._metrics.insert_batches.inc()
        self._metrics.insert_rows.inc(rows)
        for item in taken:
            if not item.future.done():
                item.future.set_result(None)


def _fail(taken: list[_Pending], exc: Exception) -> None:
    for item in taken:
        if not item.future.done():
            item.future.set_exception(exc)
