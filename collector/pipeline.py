"""The pipeline between receivers and the store: the CPU part (`processing`: parse, decode, the stages,
encode), then acknowledge once durable (spool or insert). The CPU part runs in worker processes, one per
core, while the main process does the I/O; without workers it runs in one pipeline thread, never on the
event loop: a huge request must not stall /healthz or the other connections.

Scores (POST /v1/scores) and reviews (POST /v1/reviews) take the same road: checked and redacted by
`scores.ScoreProcessor` / `reviews.ReviewProcessor` in the pipeline thread, spooled (records for their table)
or inserted, acknowledged once durable, a retried request
answered from the spool by its digest.

Refusals are `errors.PipelineError`s (retryable, permanent, ...): the receivers turn them into statuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blake3

from tracehouse.collector.errors import Permanent, PipelineError, Retryable
from tracehouse.collector.metrics import CollectorMetrics
from tracehouse.collector.processing import Processed, merge, process_body
from tracehouse.collector.reviews import REVIEWS_TABLE, ReviewProcessor
from tracehouse.collector.scores import SCORES_TABLE, ProcessedRows, ScoreProcessor
from tracehouse.collector.spool import DIGEST_BYTES, NO_DIGEST, Spool, SpoolFull
from tracehouse.collector.stages import Stage
from tracehouse.collector.writer import BatchRejected, DirectWriter, StoreUnavailable

if TYPE_CHECKING:
    from tracehouse.collector.workers import WorkerPool

log = logging.getLogger(__name__)

# A protobuf request at least this large is processed in parts, one per worker at once: its
# acknowledgement waits for its slowest part instead of the whole (a 512-span request of LLM spans,
# ~4.6 MB, takes ~57 ms of CPU in one process). Below it a part's fixed cost (every part parses the
# whole body, a round trip to a worker) outweighs the gain.
PARTS_MIN_BYTES = 256 << 10


def request_digest(body: bytes, tenant: str | None, kind: bytes = b"", key: bytes | None = None) -> bytes:
    """A request's digest; `kind` keeps the requests of one endpoint apart from another's (scores). With
    encryption at rest it is keyed (`key`, 32 bytes), so the spool does not confirm a guessed request body.
    BLAKE3: ~1 ms per 4.6 MB request where sha256 took ~4 (8 µs per LLM span of CPU)."""
    digest = blake3.blake3(body, key=key) if key else blake3.blake3(body)
    return _scoped(digest, tenant, kind).digest(DIGEST_BYTES)


def legacy_digest(body: bytes, tenant: str | None, kind: bytes = b"", key: bytes | None = None) -> bytes:
    """The digest versions before BLAKE3 wrote (sha256, keyed blake2b): a spool they wrote still answers the
    retry of a request it holds (Spool.legacy_digests)."""
    digest = hashlib.blake2b(body, key=key, digest_size=DIGEST_BYTES) if key else hashlib.sha256(body)
    return _scoped(digest, tenant, kind).digest()[:DIGEST_BYTES]


def _scoped(digest: Any, tenant: str | None, kind: bytes) -> Any:
    """A body's hash with the tenant and the endpoint added, so equal bodies of two tenants or endpoints differ."""
    if tenant is not None:
        digest.update(b"\0tenant:" + tenant.encode())
    if kind:
        digest.update(b"\0kind:" + kind)
    return digest


@dataclass
class ExportResult:
    accepted: int
    rejected: int
    message: str


class Pipeline:
    """Durable means: fsynced in the spool (the default), or inserted in ClickHouse when the spool is off."""

    def __init__(
        self,
        stages: Sequence[Stage],
        metrics: CollectorMetrics,
        *,
        spool: Spool | None = None,
        writer: DirectWriter | None = None,
        max_inflight_bytes: int = 256 << 20,
        workers: WorkerPool[Processed] | None = None,
        scores: ScoreProcessor | None = None,
        reviews: ReviewProcessor | None = None,
    ) -> None:
        """`workers`: processes that run `processing.process_body` with stages of their own (built from
        the same config); None runs it here, in one pipeline thread, with `stages`. A request a worker death
        (or the pool's watchdog, for a stalled worker) breaks is refused for a retry, the pool restarted. `scores`
        checks and redacts POST /v1/scores bodies, `reviews` POST /v1/reviews bodies, in the pipeline thread
        (default: no redaction)."""
        if (spool is None) == (writer is None):
            raise ValueError("a pipeline writes to exactly one of a spool or a direct writer")
        self._stages = list(stages)
        self._metrics = metrics
        self._spool = spool
        self._writer = writer
        self._digest_key = spool.sealer.digest_key if spool is not None and spool.sealer is not None else None
        self._max_inflight = max_inflight_bytes
        self._inflight = 0
        self._workers = workers
        self._row_processors: dict[str, ScoreProcessor | ReviewProcessor] = {
            SCORES_TABLE: scores or ScoreProcessor(),
            REVIEWS_TABLE: reviews or ReviewProcessor(),
        }
        # One thread: the stages run one request at a time, as they did on the loop (their caches are
        # not shared between threads), and a retry still finds the spool in request order.
        self._thread: ThreadPoolExecutor | None = None
        # Requests being processed, by digest: a retry that arrives meanwhile waits for the original.
        self._pending: dict[bytes, asyncio.Future[None]] = {}

    def check_capacity(self) -> None:
        """Refuse before reading a request when the spool is at its budget: the client retries later.
        Receivers call it once per request, before they read the body; `export` does not repeat it (a spool
        that fills meanwhile refuses the append, with the same retryable answer)."""
        if self._spool is not None and self._spool.full:
            raise Retryable("spool is at its disk budget; retry later", retry_after_seconds=5)

    async def export(self, body: bytes, is_json: bool, transport: str, tenant: str | None = None) -> ExportResult:
        """Return once the accepted spans are durable; raise a PipelineError otherwise.

        `body` is the decompressed request: its digest recognises a retry of a request already spooled.
        `tenant` comes from the request's API key and overrides whatever the spans say.
        """
        try:
            result = await self._export(body, is_json, tenant)
        except PipelineError as exc:
            self._metrics.requests.labels(transport, exc.outcome).inc()
            raise
        self._metrics.requests.labels(transport, "ok").inc()
        return result

    async def _export(self, body: bytes, is_json: bool, tenant: str | None) -> ExportResult:
        size = len(body)
        if self._inflight + size > self._max_inflight and self._inflight:
            raise Retryable("collector has too much data in flight; retry later", retry_after_seconds=1)
        self._inflight += size
        loop = asyncio.get_running_loop()
        try:
            digest = None
            if self._spool is not None and body:
                # blake3 releases the GIL: a thread hashes while the loop serves other requests.
                digest = await loop.run_in_executor(None, request_digest, body, tenant, b"", self._digest_key)
                # An exporter that timed out retries the same body while the first is still processed.
                while (original := self._pending.get(digest)) is not None:
                    await asyncio.shield(original)
                seen = self._spool.lookup(digest)
                if seen is None and self._spool.legacy_digests:
                    legacy = await loop.run_in_executor(None, legacy_digest, body, tenant, b"", self._digest_key)
                    seen = self._spool.lookup(legacy)
                if seen is not None:  # a retry of a request already durable: answer, store nothing
                    await self._sync(seen)
                    self._metrics.duplicate_requests.inc()
                    return ExportResult(0, 0, "")
                done = self._pending[digest] = loop.create_future()
            try:
                return await self._process_and_store(loop, body, is_json, tenant, digest)
            finally:
                if digest is not None:
                    self._pending.pop(digest, None)
                    done.set_result(None)
        finally:
            self._inflight -= size

    async def export_scores(self, body: bytes, tenant: str | None = None) -> list[str]:
        """Return the ids of the body's scores once they are durable; raise a PipelineError otherwise
        (errors.Invalid naming the field of a malformed score). A retry of a request already spooled is
        answered with the same ids, storing nothing."""
        return await self.export_rows(SCORES_TABLE, body, tenant)

    async def export_reviews(self, body: bytes, tenant: str | None = None) -> list[str]:
        """The same for reviews (POST /v1/reviews, `tracehouse review set`)."""
        return await self.export_rows(REVIEWS_TABLE, body, tenant)

    async def export_rows(self, table: str, body: bytes, tenant: str | None) -> list[str]:
        """A JSON body of rows for a side table (scores, reviews): checked, redacted, durable, their ids."""
        try:
            ids = await self._export_rows(table, body, tenant)
        except PipelineError as exc:
            self._metrics.requests.labels(table, exc.outcome).inc()
            raise
        self._metrics.requests.labels(table, "ok").inc()
        return ids

    async def _export_rows(self, table: str, body: bytes, tenant: str | None) -> list[str]:
        size = len(body)
        if self._inflight + size > self._max_inflight and self._inflight:
            raise Retryable("collector has too much data in flight; retry later", retry_after_seconds=1)
        self._inflight += size
        loop = asyncio.get_running_loop()
        processor = self._row_processors[table]
        try:
            digest = None
            if self._spool is not None:
                digest = request_digest(body, tenant, table.encode(), self._digest_key)  # small: on the loop
                while (original := self._pending.get(digest)) is not None:
                    await asyncio.shield(original)
                done = self._pending[digest] = loop.create_future()
            try:
                # Parsed even for a retry: its answer is the ids, which come from the body (not stored).
                processed: ProcessedRows = await loop.run_in_executor(
                    self._pipeline_thread(), processor.process, body, tenant, time.time_ns()
                )
                seen = self._spool.lookup(digest) if self._spool is not None and digest is not None else None
                if seen is None and self._spool is not None and self._spool.legacy_digests:
                    seen = self._spool.lookup(legacy_digest(body, tenant, table.encode(), self._digest_key))
                if seen is not None:
                    await self._sync(seen)
                    self._metrics.duplicate_requests.inc()
                    return processed.ids
                for kind, n in processed.redactions.items():
                    self._metrics.redactions.labels(kind).inc(n)
                if processed.rows:
                    await self._store_rows(processed.header, processed.payload, processed.rows, digest, table)
                return processed.ids
            finally:
                if digest is not None:
                    self._pending.pop(digest, None)
                    done.set_result(None)
        finally:
            self._inflight -= size

    def _pipeline_thread(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracehouse-pipeline")
        return self._thread

    async def _process_and_store(
        self, loop: asyncio.AbstractEventLoop, body: bytes, is_json: bool, tenant: str | None, digest: bytes | None
    ) -> ExportResult:
        processed = await self._process(loop, body, is_json, tenant)
        self._count(processed)
        if processed.rows:
            try:
                await self._store(processed, digest)
            except PipelineError:
                self._metrics.spans_rejected.labels("unavailable").inc(processed.rows)
                raise
        self._metrics.spans_accepted.inc(processed.rows)
        return ExportResult(processed.rows, processed.rejected, processed.message)

    async def _process(
        self, loop: asyncio.AbstractEventLoop, body: bytes, is_json: bool, tenant: str | None
    ) -> Processed:
        if self._workers is None:
            return await loop.run_in_executor(
                self._pipeline_thread(), process_body, self._stages, body, is_json, tenant
            )
        workers = self._workers
        generation = workers.generation
        try:
            parts = workers.count if len(body) >= PARTS_MIN_BYTES and not is_json else 1
            if parts == 1:
                return await self._from_worker(workers.submit(body, is_json, tenant))
            futures = [self._from_worker(workers.submit(body, is_json, tenant, i, parts)) for i in range(parts)]
            # Every part ends before the request is answered, also when one fails (no part left running).
            results = await asyncio.gather(*futures, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            merged = merge(results)  # type: ignore[arg-type]
            if merged is not None:
                return merged
            log.debug("the parts of a request differ in their columns; processed whole")
            return await self._from_worker(workers.submit(body, is_json, tenant))
        except BrokenProcessPool:
            log.error(
                "a pipeline worker process died or was killed; the request is refused for a retry, the workers"
                " restarted"
            )
            workers.restart_soon(generation)
            raise Retryable("a pipeline worker died; retry", retry_after_seconds=1) from None

    async def _from_worker(self, future: Future[Processed]) -> Processed:
        return await asyncio.wrap_future(future)

    def problems(self) -> list[str]:
        """What keeps requests from being processed now, for /readyz: the workers being restarted (every request
        meanwhile is refused for a retry) or a restart that failed."""
        return self._workers.problems() if self._workers is not None else []

    def _count(self, processed: Processed) -> None:
        self._metrics.spans_received.inc(processed.rows + processed.rejected)
        if processed.rejected:
            self._metrics.spans_rejected.labels("invalid").inc(processed.rejected)
        for kind, n in processed.redactions.items():
            self._metrics.redactions.labels(kind).inc(n)
        if processed.unpriced:
            self._metrics.unpriced_calls.inc(processed.unpriced)

    async def _sync(self, upto: int) -> None:
        """A failed fsync is a refusal the exporter retries (UNAVAILABLE), never an acknowledgement."""
        assert self._spool is not None
        try:
            await self._spool.sync(upto)
        except OSError as exc:
            raise Retryable(f"spool write failed: {exc.strerror or exc}", retry_after_seconds=5) from None

    async def _store(self, processed: Processed, digest: bytes | None) -> None:
        await self._store_rows(processed.header, processed.payload, processed.rows, digest)

    async def _store_rows(
        self, header: bytes, payload: bytes, rows: int, digest: bytes | None, table: str = ""
    ) -> None:
        """Spool (and fsync) or insert encoded rows for `table` ("" for the spans')."""
        if self._spool is not None:
            try:
                end = self._spool.append(header, payload, rows, digest or NO_DIGEST, table)
            except SpoolFull as exc:
                raise Retryable(str(exc), retry_after_seconds=5) from None
            except OSError as exc:
                raise Retryable(f"spool write failed: {exc.strerror or exc}", retry_after_seconds=5) from None
            await self._sync(end)
            self._metrics.spool_bytes.set(self._spool.pending_bytes)
            return
        assert self._writer is not None
        try:
            await self._writer.write(header, payload, rows, table)
        except StoreUnavailable as exc:
            raise Retryable(f"store unavailable: {exc}") from None
        except BatchRejected as exc:
            raise Permanent(f"the store refused the {table or 'spans'}: {exc}") from None
