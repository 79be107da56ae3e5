"""The batch writer: the I/O edge towards ClickHouse.

Requests hand their SpanBatch over and wait; the writer merges everything pending into one insert
(at most `batch_max_rows` rows). While one insert runs, the next batch accumulates, so under load
inserts grow by themselves (group commit); `batch_linger_ms` optionally holds a small batch back for
companions. A request's future resolves only after its rows are in ClickHouse, so an
acknowledgement always means stored. Waiting longer would cost every client its latency: exporters
send one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from tracehouse.collector.batch import SpanBatch

log = logging.getLogger(__name__)

TRACES_TABLE = "otel_traces"


class WriterUnavailable(RuntimeError):
    """The store did not take the batch; the client should retry later."""


@dataclass
class _Pending:
    batch: SpanBatch
    future: asyncio.Future[None]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class WriterStats:
    inserts: int = 0
    rows: int = 0
    failures: int = 0
    last_insert_seconds: float = 0.0


class BatchWriter:
    def __init__(self, client: Client, max_rows: int, linger_ms: int, table: str = TRACES_TABLE) -> None:
        self._client = client
        self._table = table
        self._max_rows = max_rows
        self._linger = linger_ms / 1000
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = WriterStats()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracehouse-writer")

    async def write(self, batch: SpanBatch) -> None:
        """Return once `batch` is stored; raise WriterUnavailable if it was not."""
        if not len(batch):
            return
        if self._closing:
            raise WriterUnavailable("collector is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(batch, future))
        self._pending_rows += len(batch)
        self._wakeup.set()
        await future

    async def close(self) -> None:
        """Flush what is pending and stop."""
        self._closing = True
        self._wakeup.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._pending[0].enqueued + self._linger - time.monotonic()
            if self._pending_rows < self._max_rows and wait > 0 and not self._closing:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=wait)
                continue
            await self._flush()

    async def _flush(self) -> None:
        taken: list[_Pending] = []
        rows = 0
        while self._pending and (not taken or rows + len(self._pending[0].batch) <= self._max_rows):
            item = self._pending.pop(0)
            taken.append(item)
            rows += len(item.batch)
        self._pending_rows -= rows
        merged = SpanBatch.concat(p.batch for p in taken)
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._insert, merged)
        except Exception as exc:  # the store refused or is unreachable: nothing was acknowledged
            self.stats.failures += 1
            log.error("insert of %d spans failed: %s", rows, exc)
            error = WriterUnavailable(f"store unavailable: {type(exc).__name__}")
            for item in taken:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self.stats.inserts += 1
        self.stats.rows += rows
        self.stats.last_insert_seconds = time.perf_counter() - started
        log.debug("inserted %d spans in %.3fs", rows, self.stats.last_insert_seconds)
        for item in taken:
            if not item.future.done():
                item.future.set_result(None)

    def _insert(self, batch: SpanBatch) -> None:
        self._client.insert(self._table, batch.column_data(), column_names=batch.column_names(), column_oriented=True)
