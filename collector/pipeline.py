"""The pipeline between receivers and the store: decode, the stages, encode, then acknowledge once durable."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.metrics import CollectorMetrics
from tracehouse.collector.receivers.otlp import OtlpError, invalid_argument, unavailable
from tracehouse.collector.spool import DIGEST_BYTES, NO_DIGEST, Spool, SpoolFull
from tracehouse.collector.stages import Stage
from tracehouse.collector.stages.decode import decode_request
from tracehouse.collector.writer import BatchRejected, DirectWriter, StoreUnavailable, encode_rows


def _digest(body: bytes, tenant: str | None) -> bytes:
    digest = hashlib.sha256(body)
    if tenant is not None:
        digest.update(b"\0tenant:" + tenant.encode())
    return digest.digest()[:DIGEST_BYTES]


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
    ) -> None:
        if (spool is None) == (writer is None):
            raise ValueError("a pipeline writes to exactly one of a spool or a direct writer")
        self._stages = list(stages)
        self._metrics = metrics
        self._spool = spool
        self._writer = writer
        self._max_inflight = max_inflight_bytes
        self._inflight = 0

    def process(self, request: ExportTraceServiceRequest, tenant: str | None = None) -> tuple[SpanBatch, ExportResult]:
        """The pure part: decode, run the stages, then the key's tenant over whatever the spans claimed."""
        decoded = decode_request(request)
        batch = decoded.batch
        for stage in self._stages:
            batch = stage(batch)
        if tenant is not None and len(batch):
            batch.columns["TenantId"] = [tenant] * len(batch)
        return batch, ExportResult(len(batch), decoded.rejected, decoded.message)

    def check_capacity(self) -> None:
        """Refuse before decoding when the spool is at its budget: the client retries later."""
        if self._spool is not None and self._spool.full:
            raise unavailable("spool is at its disk budget; retry later", retry_after_seconds=5)

    async def export(
        self, request: ExportTraceServiceRequest, body: bytes, transport: str, tenant: str | None = None
    ) -> ExportResult:
        """Return once the accepted spans are durable; raise OtlpError otherwise.

        `body` is the decompressed request: its digest recognises a retry of a request already spooled.
        `tenant` comes from the request's API key and overrides whatever the spans say.
        """
        try:
            result = await self._export(request, body, tenant)
        except OtlpError as exc:
            self._metrics.requests.labels(transport, exc.grpc_code.name.lower()).inc()
            raise
        self._metrics.requests.labels(transport, "ok").inc()
        return result

    async def _export(self, request: ExportTraceServiceRequest, body: bytes, tenant: str | None) -> ExportResult:
        self.check_capacity()
        size = len(body)
        if self._inflight + size > self._max_inflight and self._inflight:
            raise unavailable("collector has too much data in flight; retry later", retry_after_seconds=1)
        self._inflight += size
        try:
            digest_future = None
            if self._spool is not None and body:
                # hashlib releases the GIL: the digest is computed on the other core while we decode.
                digest_future = asyncio.get_running_loop().run_in_executor(None, _digest, body, tenant)
            batch, result = self.process(request, tenant)
            digest = await digest_future if digest_future is not None else None
            if digest is not None and self._spool is not None:
                seen = self._spool.lookup(digest)
                if seen is not None:
                    await self._spool.sync(seen)
                    self._metrics.duplicate_requests.inc()
                    return result
            self._metrics.spans_received.inc(result.accepted + result.rejected)
            self._count_stage_outcomes(batch)
            if result.rejected:
                self._metrics.spans_rejected.labels("invalid").inc(result.rejected)
            if len(batch):
                header, payload = encode_rows(batch)
                try:
                    await self._store(header, payload, len(batch), digest)
                except OtlpError:
                    self._metrics.spans_rejected.labels("unavailable").inc(len(batch))
                    raise
            self._metrics.spans_accepted.inc(result.accepted)
            return result
        finally:
            self._inflight -= size

    def _count_stage_outcomes(self, batch: SpanBatch) -> None:
        """What the stages did, for /metrics: redactions by kind, calls without a price."""
        redacted: dict[str, int] = {}
        for counts in batch.columns.get("RedactionCounts", ()):
            if counts:
                for kind, n in counts.items():
                    redacted[kind] = redacted.get(kind, 0) + n
        for kind, n in redacted.items():
            self._metrics.redactions.labels(kind).inc(n)
        sources = batch.columns.get("CostSource")
        if sources:
            unpriced = sources.count("unknown")
            if unpriced:
                self._metrics.unpriced_calls.inc(unpriced)

    async def _store(self, header: bytes, payload: bytes, rows: int, digest: bytes | None) -> None:
        if self._spool is not None:
            try:
                end = self._spool.append(header, payload, rows, digest or NO_DIGEST)
            except SpoolFull as exc:
                raise unavailable(str(exc), retry_after_seconds=5) from None
            except OSError as exc:
                raise unavailable(f"spool write failed: {exc.strerror or exc}", retry_after_seconds=5) from None
            await self._spool.sync(end)
            self._metrics.spool_bytes.set(self._spool.pending_bytes)
            return
        assert self._writer is not None
        try:
            await self._writer.write(header, payload, rows)
        except StoreUnavailable as exc:
            raise unavailable(f"store unavailable: {exc}") from None
        except BatchRejected as exc:
            raise invalid_argument(f"the store refused the spans: {exc}") from None
