"""The I/O edge towards ClickHouse: encoding, the store connection, and the two ways spans get there.

- `SpoolDrainer` (the default): requests are acknowledged once their record is fsynced in the
  spool; the drainer inserts large batches from it, each with a deduplication token derived from
  its spool range, so a crash and replay never duplicates.
- `DirectWriter` (spool off): a request waits until its rows are inserted; whatever arrived while
  the previous insert ran goes into the next one (group commit).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

from tracehouse.collector import store
from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.metrics import CollectorMetrics
from tracehouse.collector.spool import Intent, Record, Spool

log = logging.getLogger(__name__)

TRACES_TABLE = "otel_traces"
# Rows as JSON arrays, one per line: orjson writes them at C speed, records from the spool
# concatenate into one insert without re-encoding, and ClickHouse parses them with the GIL released.
INSERT_FORMAT = "JSONCompactEachRow"
_NS_COLUMNS = ("Timestamp",)
_NS_ARRAY_COLUMNS = ("Events.Timestamp",)

# ClickHouse error codes that mean the data itself is wrong: retrying cannot help.
PERMANENT_ERROR_CODES = frozenset(
    {6, 9, 16, 25, 26, 27, 38, 41, 53, 69, 70, 72, 117, 130, 321, 349, 376, 407, 441, 467}
)


class StoreUnavailable(Exception):
    """The store did not take the rows this time; try again later."""


class BatchRejected(Exception):
    """The store refuses these rows as invalid; retrying cannot help."""


def _ns_text(ns: int) -> str:
    """DateTime64(9) from JSON text: seconds with nine decimals (a JSON number would be read as seconds)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} for ClickHouse")


def encode_rows(batch: SpanBatch) -> tuple[bytes, bytes]:
    """(header: the column names, payload: JSONCompactEachRow rows, newline terminated)."""
    columns = dict(batch.columns)
    for name in _NS_COLUMNS:
        if name in columns:
            columns[name] = [_ns_text(ns) for ns in columns[name]]
    for name in _NS_ARRAY_COLUMNS:
        if name in columns:
            columns[name] = [[_ns_text(ns) for ns in values] if values else values for values in columns[name]]
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    rows = zip(*columns.values(), strict=True)
    payload = b"".join([dumps(row, default=_json_default, option=option) for row in rows])
    return ",".join(columns).encode(), payload


class TraceStore:
    """The writer's own connection: connects and migrates lazily (the collector starts while the store
    is away), inserts encoded rows and sorts failures into retryable and permanent.

    `fault_file` is the documented fault-injection hook for the embedded store: while that file
    exists, every operation fails as if the store were unreachable.
    """

    def __init__(self, url: str, fault_file: Path | None = None, table: str = TRACES_TABLE, cluster: str = "") -> None:
        self._url = url
        self._cluster = cluster
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
                applied = store.migrate(client, self._cluster)
            except Exception as exc:
                raise StoreUnavailable(f"store at {store.redact_url(self._url)} unreachable: {exc}") from exc
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            self._client = client
        return self._client

    def insert(self, header: bytes, payload: bytes, token: str | None = None) -> None:
        client = self.ensure_ready()
        settings = {"insert_deduplication_token": token} if token else None
        try:
            client.raw_insert(
                self._table,
                column_names=header.decode().split(","),
                insert_block=payload,
                settings=settings,
                fmt=INSERT_FORMAT,
            )
        except DatabaseError as exc:
            code = getattr(exc, "code", None) or _error_code(str(exc))
            if code in PERMANENT_ERROR_CODES:
                raise BatchRejected(str(exc).splitlines()[0][:2000]) from exc
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


class SpoolDrainer:
    """Moves records from the spool into the store, in order, exactly once."""

    def __init__(
        self,
        spool: Spool,
        trace_store: TraceStore,
        metrics: CollectorMetrics,
        max_rows: int,
        linger_ms: int,
        deadletter_dir: Path,
    ) -> None:
        self._spool = spool
        self._store = trace_store
        self._metrics = metrics
        self._max_rows = max_rows
        self._linger = linger_ms / 1000
        self._deadletter_dir = deadletter_dir
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.store_ready = False
        self.failing = False  # the last store operation failed: shutdown does not wait for a drain
        self.backoff = Backoff()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracehouse-drainer")

    async def stop(self, grace: float) -> None:
        """Drain what is durable within `grace` seconds; the rest stays in the spool for next start."""
        deadline = time.monotonic() + grace
        while self._spool.synced > self._spool.committed and not self.failing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._stopping.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        intent = self._spool.read_intent()
        while not self._stopping.is_set():
            try:
                if intent is not None:
                    await self._insert_range(intent)
                    intent = None
                    continue
                await self._spool.wait_for_data(timeout=0.5)
                if self._spool.synced <= self._spool.committed:
                    if not self.store_ready:
                        await self._call(self._store.ensure_ready)
                        self.store_ready = True
                        self.failing = False
                        self._metrics.store_up.set(1)
                    continue
                if self._linger:
                    await self._linger_for_rows()
                records = self._spool.read(self._spool.committed, self._max_rows)
                if not records:
                    continue
                start, end = records[0].start, records[-1].end
                intent = Intent(start, end, f"tracehouse-spool-{start}-{end}")
                self._spool.write_intent(intent)
            except StoreUnavailable as exc:
                self.store_ready = False
                self.failing = True
                self._metrics.store_up.set(0)
                self._metrics.insert_failures.labels("unavailable").inc()
                delay = self.backoff.next_delay()
                log.warning("store unavailable, retrying in %.1fs: %s", delay, exc)
                await self._sleep(delay)

    async def _linger_for_rows(self) -> None:
        deadline = time.monotonic() + self._linger
        while time.monotonic() < deadline and not self._stopping.is_set():
            records = self._spool.read(self._spool.committed, self._max_rows)
            if sum(r.rows for r in records) >= self._max_rows:
                return
            await asyncio.sleep(min(0.02, self._linger))

    async def _insert_range(self, intent: Intent) -> None:
        records = self._spool.read(intent.start, self._max_rows, end=intent.end)
        rows = sum(r.rows for r in records)
        started = time.perf_counter()
        try:
            await self._call(self._store.insert, records[0].header, _join(records), intent.token)
        except BatchRejected as exc:
            self._metrics.insert_failures.labels("rejected").inc()
            await self._isolate_rejected(records, str(exc))
        else:
            self._metrics.insert_latency.observe(time.perf_counter() - started)
            self._metrics.insert_batches.inc()
            self._metrics.insert_rows.inc(rows)
        self.store_ready = True
        self.failing = False
        self._metrics.store_up.set(1)
        self.backoff.reset()
        self._spool.commit(intent.end)
        self._metrics.spool_bytes.set(self._spool.pending_bytes)

    async def _isolate_rejected(self, records: list[Record], reason: str) -> None:
        """Insert record by record (tokens per record, so a replay stays exact); refused ones go to deadletter/."""
        for record in records:
            token = f"tracehouse-spool-{record.start}-{record.end}"
            try:
                await self._call(self._store.insert, record.header, record.payload, token)
                self._metrics.insert_batches.inc()
                self._metrics.insert_rows.inc(record.rows)
            except BatchRejected as exc:
                self._dead_letter(record, token, str(exc) or reason)

    def _dead_letter(self, record: Record, token: str, reason: str) -> None:
        self._deadletter_dir.mkdir(parents=True, exist_ok=True)
        (self._deadletter_dir / f"{token}.rows").write_bytes(record.payload)
        meta = {"reason": reason, "columns": record.header.decode().split(","), "rows": record.rows}
        (self._deadletter_dir / f"{token}.json").write_text(json.dumps(meta, indent=1))
        self._metrics.dead_lettered.inc()
        log.error("dead-lettered %d rows (%s): %s", record.rows, token, reason[:300])

    async def _call(self, fn: Callable, *args):
        return await asyncio.to_thread(fn, *args)

    async def _sleep(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return


def _join(records: list[Record]) -> bytes:
    return records[0].payload if len(records) == 1 else b"".join(r.payload for r in records)


@dataclass
class _Pending:
    header: bytes
    payload: bytes
    rows: int
    future: asyncio.Future[None]
    enqueued: float = field(default_factory=time.monotonic)


class DirectWriter:
    """Spool off: a request's future resolves only after its rows are in ClickHouse."""

    def __init__(self, trace_store: TraceStore, metrics: CollectorMetrics, max_rows: int, linger_ms: int) -> None:
        self._store = trace_store
        self._metrics = metrics
        self._max_rows = max_rows
        self._linger = linger_ms / 1000
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.store_ready = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracehouse-writer")

    async def write(self, header: bytes, payload: bytes, rows: int) -> None:
        """Return once the rows are stored; raise StoreUnavailable if they were not."""
        if not rows:
            return
        if self._closing:
            raise StoreUnavailable("collector is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(header, payload, rows, future))
        self._wakeup.set()
        await future

    async def stop(self, grace: float) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task:
            await asyncio.wait_for(self._task, grace)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._pending[0].enqueued + self._linger - time.monotonic()
            if wait > 0 and sum(p.rows for p in self._pending) < self._max_rows and not self._closing:
                await asyncio.sleep(wait)
                continue
            await self._flush()

    async def _flush(self) -> None:
        header = self._pending[0].header
        taken: list[_Pending] = []
        rows = 0
        while (
            self._pending
            and self._pending[0].header == header
            and (not taken or rows + self._pending[0].rows <= self._max_rows)
        ):
            item = self._pending.pop(0)
            taken.append(item)
            rows += item.rows
        started = time.perf_counter()
        try:
            payload = b"".join(p.payload for p in taken)
            await asyncio.to_thread(self._store.insert, header, payload, None)
        except (StoreUnavailable, BatchRejected) as exc:
            self.store_ready = False
            self._metrics.store_up.set(0)
            kind = "rejected" if isinstance(exc, BatchRejected) else "unavailable"
            self._metrics.insert_failures.labels(kind).inc()
            log.error("insert of %d spans failed: %s", rows, exc)
            for item in taken:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.store_ready = True
        self._metrics.store_up.set(1)
        self._metrics.insert_latency.observe(time.perf_counter() - started)
        self._metrics.insert_batches.inc()
        self._metrics.insert_rows.inc(rows)
        for item in taken:
            if not item.future.done():
                item.future.set_result(None)
