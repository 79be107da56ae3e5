"""SpanBatch: the unit every stage works on, column-oriented like the table it ends in."""

from __future__ import annotations

from typing import Any

# otel_traces columns, in the OTel Collector ClickHouse exporter's insert order.
OTEL_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)


class SpanBatch:
    """Parallel column lists, one entry per span. Stages add or rewrite whole columns.

    Map values (attribute dicts) may be shared between spans of one resource: a stage that
    changes one must replace it, never mutate it in place.
    """

    __slots__ = ("columns",)

    def __init__(self, columns: dict[str, list[Any]] | None = None) -> None:
        self.columns: dict[str, list[Any]] = columns if columns is not None else {n: [] for n in OTEL_COLUMNS}

    def __len__(self) -> int:
        return len(self.columns["SpanId"])
