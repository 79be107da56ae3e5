"""The CPU part of the pipeline, one request at a time: parse, decode, the stages, encode.

A pure function of the request body (and the API key's tenant): no I/O, no shared state but the
stages' own caches. The pipeline runs it in its one pipeline thread, or hands it to worker processes
(`workers`, one per core; `service` builds them with this module's `process_body` and the stage builder).
With workers a large request is processed in parts, one per worker at once (`part`, `parts`): each
worker parses the whole body (cheap, ~2 µs per span) and keeps the spans of its part, chosen by trace id
so that a trace's spans stay together (the sampling stage decides per trace within a request); `merge`
joins the parts into what one call would have made. What comes out, `Processed`, is what the spool keeps
and the writer inserts.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import COST_SOURCE, COST_UNKNOWN, REDACTION_COUNTS, TENANT_ID
from tracehouse.collector.stages import Stage
from tracehouse.collector.stages.decode import MAX_REJECT_MESSAGES, DecodeResult, decode_request, parse_request
from tracehouse.collector.stages.price.provided import MAX_COST

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# Rows as JSON arrays, one per line: orjson writes them at C speed, records from the spool concatenate
# into one insert without re-encoding, ClickHouse parses them with the GIL released, and the writer can
# split a refused batch into its rows at the newlines (orjson escapes newlines inside strings).
INSERT_FORMAT = "JSONCompactEachRow"
_NS_COLUMNS = ("Timestamp",)
_NS_ARRAY_COLUMNS = ("Events.Timestamp",)
# The last guard for any cost column: the pricer gives no cost at or past MAX_COST (stages/price/provided.py), which
# the rollups' sums could not hold; a Decimal that still reaches here past it (say a reprice) is stored as NULL.
_DECIMAL_LIMIT = MAX_COST


@dataclass
class Processed:
    """What a request became: encoded rows ready for the spool, and what the stages did."""

    header: bytes
    payload: bytes
    rows: int
    rejected: int
    message: str
    redactions: dict[str, int] = field(default_factory=dict)
    unpriced: int = 0
    # What `message` was made of, so that `merge` can say it again for the parts of one request.
    reject_messages: list[str] = field(default_factory=list)
    events_retimed: int = 0
    warnings: list[str] = field(default_factory=list)


def process_body(
    stages: Sequence[Stage], body: bytes, is_json: bool, tenant: str | None, part: int = 0, parts: int = 1
) -> Processed:
    """Parse, decode, run the stages and encode one request (with `parts` > 1: only the spans of `part`);
    raises errors.Invalid for a body that does not parse. `tenant` is the API key's (None when no keys are
    configured)."""
    request = parse_request(body, is_json)
    if parts > 1:
        keep_part(request, part, parts)
    decoded = decode_request(request)
    batch = process_batch(stages, decoded.batch, tenant)
    header, payload = encode_rows(batch) if len(batch) else (b"", b"")
    redacted: dict[str, int] = {}
    for counts in batch.columns.get(REDACTION_COUNTS, ()):
        if counts:
            for kind, n in counts.items():
                redacted[kind] = redacted.get(kind, 0) + n
    sources = batch.columns.get(COST_SOURCE)
    unpriced = sources.count(COST_UNKNOWN) if sources else 0
    return Processed(
        header,
        payload,
        len(batch),
        decoded.rejected,
        decoded.message,
        redacted,
        unpriced,
        decoded.reject_messages,
        decoded.events_retimed,
        decoded.warnings,
    )


def part_of(trace_id: bytes, parts: int) -> int:
    """The part a span belongs to: by the trace id's last byte (random in W3C and X-Ray ids alike; X-Ray's
    first four bytes are a timestamp), so every span of a trace lands in the same part."""
    return trace_id[-1] % parts if trace_id else 0


def keep_part(request: ExportTraceServiceRequest, part: int, parts: int) -> None:
    """Drop, in place, the spans of every other part: a stable sort by part moves pointers, not spans; ours
    are then the run that two binary searches find."""

    def part_of_span(span: Any) -> int:
        return part_of(span.trace_id, parts)

    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            spans.sort(key=part_of_span)
            del spans[bisect.bisect_right(spans, part, key=part_of_span) :]
            del spans[: bisect.bisect_left(spans, part, key=part_of_span)]


def merge(parts: Sequence[Processed]) -> Processed | None:
    """The parts of one request as one `Processed` (one spool record, so the request stays all-or-nothing);
    None when their column layouts differ (the caller then processes the request whole)."""
    filled = [p for p in parts if p.rows]
    if len({p.header for p in filled}) > 1:
        return None
    redacted: dict[str, int] = {}
    for p in parts:
        for kind, n in p.redactions.items():
            redacted[kind] = redacted.get(kind, 0) + n
    notes = DecodeResult(
        SpanBatch({}),
        sum(p.rejected for p in parts),
        [m for p in parts for m in p.reject_messages][:MAX_REJECT_MESSAGES],
        sum(p.events_retimed for p in parts),
        [w for p in parts for w in p.warnings][:MAX_REJECT_MESSAGES],
    )
    return Processed(
        filled[0].header if filled else b"",
        b"".join(p.payload for p in filled),
        sum(p.rows for p in parts),
        notes.rejected,
        notes.message,
        redacted,
        sum(p.unpriced for p in parts),
        notes.reject_messages,
        notes.events_retimed,
        notes.warnings,
    )


def process_batch(stages: Sequence[Stage], batch: SpanBatch, tenant: str | None) -> SpanBatch:
    """Run the stages in order, then decide the tenant."""
    for stage in stages:
        batch = stage(batch)
    return with_key_tenant(batch, tenant)


def with_key_tenant(batch: SpanBatch, key_tenant: str | None) -> SpanBatch:
    """The one place the tenant is decided. With API keys configured, the key's tenant wins over whatever
    the spans claim (the tenant comes from the key, never from span attributes); with none (`None`), the
    tenant the normalize stage read from the span's own attributes stands."""
    if key_tenant is not None and len(batch):
        batch.columns[TENANT_ID] = [key_tenant] * len(batch)
    return batch


# --- encoding: columns into the rows the store takes --------------------------------------------


def ns_text(ns: int) -> str:
    """DateTime64(9) as JSON text: ten digits of seconds, then nine of nanoseconds.

    The width matters: ClickHouse reads a string of ten digits as a Unix timestamp, but a shorter
    one (any time before 1973-03-03) as a date ("5.000000001": day 5 of month 000000001) and refuses
    it. Every time decode lets through (0 < ns < 2**63) has at most ten digits of seconds.
    """
    return f"{ns // 1_000_000_000:010d}.{ns % 1_000_000_000:09d}"


def json_default(value: object) -> str | None:
    if isinstance(value, Decimal):
        # A cost beyond the column (a span claiming 1e30 USD) is NULL in the typed column; the span's
        # raw attribute keeps what it said.
        return str(value) if value.is_finite() and abs(value) < _DECIMAL_LIMIT else None
    raise TypeError(f"cannot encode {type(value).__name__} for ClickHouse")


def encode_rows(batch: SpanBatch) -> tuple[bytes, bytes]:
    """(header: the column names, payload: INSERT_FORMAT rows, newline terminated)."""
    columns = dict(batch.columns)
    for name in _NS_COLUMNS:
        if name in columns:
            columns[name] = [ns_text(ns) for ns in columns[name]]
    for name in _NS_ARRAY_COLUMNS:
        if name in columns:
            columns[name] = [[ns_text(ns) for ns in values] if values else values for values in columns[name]]
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    rows = zip(*columns.values(), strict=True)
    payload = b"".join([dumps(row, default=json_default, option=option) for row in rows])
    return ",".join(columns).encode(), payload
