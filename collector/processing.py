"""The CPU part of the pipeline, one request at a time: parse, decode, the stages, encode.

A pure function of the request body (and the API key's tenant): no I/O, no shared state but the
stages' own caches. The pipeline runs it in its one pipeline thread, or hands it to worker processes
(`workers`, one per core; `service` builds them with this module's `process_body` and the stage builder).
What comes out, `Processed`, is what the spool keeps and the writer inserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import COST_SOURCE, COST_UNKNOWN, REDACTION_COUNTS, TENANT_ID
from tracehouse.collector.stages import Stage
from tracehouse.collector.stages.decode import decode_request, parse_request

# Rows as JSON arrays, one per line: orjson writes them at C speed, records from the spool concatenate
# into one insert without re-encoding, ClickHouse parses them with the GIL released, and the writer can
# split a refused batch into its rows at the newlines (orjson escapes newlines inside strings).
INSERT_FORMAT = "JSONCompactEachRow"
_NS_COLUMNS = ("Timestamp",)
_NS_ARRAY_COLUMNS = ("Events.Timestamp",)
# Decimal(38, 12) holds fewer than 26 integer digits; a larger value would make ClickHouse refuse the insert.
_DECIMAL_LIMIT = Decimal(10) ** 26


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


def process_body(stages: Sequence[Stage], body: bytes, is_json: bool, tenant: str | None) -> Processed:
    """Parse, decode, run the stages and encode one request; raises errors.Invalid for a body that does not
    parse. `tenant` is the API key's (None when no keys are configured)."""
    decoded = decode_request(parse_request(body, is_json))
    batch = process_batch(stages, decoded.batch, tenant)
    header, payload = encode_rows(batch) if len(batch) else (b"", b"")
    redacted: dict[str, int] = {}
    for counts in batch.columns.get(REDACTION_COUNTS, ()):
        if counts:
            for kind, n in counts.items():
                redacted[kind] = redacted.get(kind, 0) + n
    sources = batch.columns.get(COST_SOURCE)
    unpriced = sources.count(COST_UNKNOWN) if sources else 0
    return Processed(header, payload, len(batch), decoded.rejected, decoded.message, redacted, unpriced)


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


def _ns_text(ns: int) -> str:
    """DateTime64(9) as JSON text: ten digits of seconds, then nine of nanoseconds.

    The width matters: ClickHouse reads a string of ten digits as a Unix timestamp, but a shorter
    one (any time before 1973-03-03) as a date ("5.000000001": day 5 of month 000000001) and refuses
    it. Every time decode lets through (0 < ns < 2**63) has at most ten digits of seconds.
    """
    return f"{ns // 1_000_000_000:010d}.{ns % 1_000_000_000:09d}"


def _json_default(value: object) -> str | None:
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
            columns[name] = [_ns_text(ns) for ns in columns[name]]
    for name in _NS_ARRAY_COLUMNS:
        if name in columns:
            columns[name] = [[_ns_text(ns) for ns in values] if values else values for values in columns[name]]
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    rows = zip(*columns.values(), strict=True)
    payload = b"".join([dumps(row, default=_json_default, option=option) for row in rows])
    return ",".join(columns).encode(), payload
