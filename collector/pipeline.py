"""The pipeline between receivers and writer: decode, then each stage over the batch, then store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.receivers.otlp import unavailable
from tracehouse.collector.stages import Stage
from tracehouse.collector.stages.decode import decode_request
from tracehouse.collector.writer import BatchWriter, WriterUnavailable


@dataclass
class ExportResult:
    accepted: int
    rejected: int
    message: str


@dataclass
class PipelineStats:
    requests: int = 0
    spans_accepted: int = 0
    spans_rejected: int = 0


class Pipeline:
    def __init__(self, writer: BatchWriter, stages: Sequence[Stage] = ()) -> None:
        self._writer = writer
        self._stages = list(stages)
        self.stats = PipelineStats()

    def process(self, request: ExportTraceServiceRequest) -> tuple[SpanBatch, ExportResult]:
        """The pure part: decode and run the stages."""
        decoded = decode_request(request)
        batch = decoded.batch
        for stage in self._stages:
            batch = stage(batch)
        return batch, ExportResult(len(batch), decoded.rejected, decoded.message)

    async def export(self, request: ExportTraceServiceRequest) -> ExportResult:
        """Return once the accepted spans are stored; raise OtlpError(UNAVAILABLE) if they were not."""
        self.stats.requests += 1
        batch, result = self.process(request)
        try:
            await self._writer.write(batch)
        except WriterUnavailable as exc:
            raise unavailable(str(exc)) from None
        self.stats.spans_accepted += result.accepted
        self.stats.spans_rejected += result.rejected
        return result
