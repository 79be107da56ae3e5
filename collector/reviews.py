"""Reviews (POST /v1/reviews, `tracehouse review set`): parse and check a request's reviews, redact their free
text, give each its id and encode the rows of the `reviews` table. Pure, like `scores`: the pipeline runs it
in its pipeline thread, then spools (or inserts) the rows and acknowledges with the ids.

The body is JSON, one review object or a list of them (at most MAX_REVIEWS per request):

- `trace_id` and `span_id` (required): the reviewed call, in hex as OTLP/JSON writes ids.
- `state` (required): `approved`, `flagged`, `rejected`, or `pending` (reopened: back in the queue).
- `reason` (optional): at most MAX_REASON_CHARS; `reviewer` (optional): at most MAX_REVIEWER_CHARS.
- `timestamp` (optional, default: when the collector received it), `id` (optional: without it, a digest of
  the tenant and the review's content, so a retried request names the same review) and `tenant_id` (only
  without API keys), as for scores.

Any other field, or a field of the wrong type, is refused naming it (`reviews[1].state`). `reason` and
`reviewer` go through the redactor like score comments and authors.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from tracehouse.collector.errors import Invalid
from tracehouse.collector.scores import (
    HEX_SPAN,
    HEX_TRACE,
    JsonRowsProcessor,
    client_id_of,
    clip,
    hex_id,
    redacted_texts,
    tenant_of,
    timestamp_ns,
)

if TYPE_CHECKING:
    pass

REVIEWS_TABLE = "reviews"
REVIEW_ROUTE = "/reviews"  # on the local query endpoint: `tracehouse review set` through the collector
# There too: OTLP/JSON spans the collector's own commands make (`tracehouse replay`), into the pipeline.
SPANS_ROUTE = "/spans"
MAX_REVIEWS = 1000
MAX_REASON_CHARS = 2048
MAX_REVIEWER_CHARS = 256
STATES = ("approved", "flagged", "rejected", "pending")
FIELDS = ("id", "trace_id", "span_id", "state", "reason", "reviewer", "timestamp", "tenant_id")
TEXT_FIELDS = {"reason": MAX_REASON_CHARS, "reviewer": MAX_REVIEWER_CHARS}
COLUMNS = (
    "Timestamp",
    "TenantId",
    "TraceId",
    "SpanId",
    "ReviewId",
    "State",
    "Reason",
    "Reviewer",
    "RedactionCounts",
)


class ReviewProcessor(JsonRowsProcessor):
    noun = "review"
    limit = MAX_REVIEWS
    fields = FIELDS
    columns = COLUMNS
    id_column = "ReviewId"

    def _row(self, item: dict[str, Any], where: str, key_tenant: str | None, now_ns: int) -> dict[str, Any]:
        trace_id = hex_id(item, "trace_id", where, HEX_TRACE, 32, required=True)
        span_id = hex_id(item, "span_id", where, HEX_SPAN, 16, required=True)
        state = item.get("state")
        if state is None:
            raise Invalid(f"{where}state: required, one of {', '.join(STATES)}")
        if state not in STATES:
            shown = clip(state) if isinstance(state, str) else type(state).__name__
            raise Invalid(f"{where}state: unknown state {shown}; one of {', '.join(STATES)}")
        timestamp = timestamp_ns(item.get("timestamp"), where)
        client_id = client_id_of(item, where, self._redactor)
        tenant = tenant_of(item, where, key_tenant, self._tenant_check)
        texts, counts = redacted_texts(item, where, TEXT_FIELDS, self._redactor)
        if client_id is None:
            content = [tenant, trace_id, span_id, state, timestamp, *texts.values()]
            client_id = hashlib.sha256(orjson.dumps(content)).hexdigest()[:32]
        return {
            "Timestamp": now_ns if timestamp is None else timestamp,
            "TenantId": tenant,
            "TraceId": trace_id,
            "SpanId": span_id,
            "ReviewId": client_id,
            "State": state,
            "Reason": texts["reason"],
            "Reviewer": texts["reviewer"],
            "RedactionCounts": counts,
        }
