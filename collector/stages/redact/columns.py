"""Which columns the redactor scans: every column of the batch, whatever stage added it, except the short
list below of columns that cannot carry user text. A column a future stage adds is scanned without anyone
having to remember it; one whose values the redactor cannot read stops the batch instead of passing.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import chain
from typing import Any

from tracehouse.collector.batch import OTEL_COLUMNS
from tracehouse.collector.columns import (
    CANONICAL_MODEL,
    CONTENT_SAMPLED,
    COST_SOURCE,
    LLM_ARRAY_COLUMNS,
    LLM_STRING_COLUMNS,
    PRICE_EFFECTIVE_FROM,
    PRICE_MODEL,
    PRICE_VARIANT,
    REDACTION_COUNTS,
)

# Column -> why it is never scanned. Keep it short: only validated ids, numbers, fixed vocabularies and
# values that come from configuration rather than from spans.
UNSCANNED: dict[str, str] = {
    "Timestamp": "a number (ns)",
    "Duration": "a number (ns)",
    "Events.Timestamp": "numbers (ns)",
    "TraceId": "hex of a 16-byte id checked by decode",
    "SpanId": "hex of an 8-byte id checked by decode",
    "ParentSpanId": "hex of an 8-byte id checked by decode, or ''",
    "Links.TraceId": "hex of the link's id bytes",
    "Links.SpanId": "hex of the link's id bytes",
    "SpanKind": "one of decode.SPAN_KINDS",
    "StatusCode": "one of decode.STATUS_CODES",
    CONTENT_SAMPLED: "one of the content sampler's decisions",
    COST_SOURCE: "one of the pricer's sources",
    CANONICAL_MODEL: "a model id from the price catalogue (configuration, not spans), or ''",
    PRICE_MODEL: "a model id from the price catalogue or the price file (configuration, not spans)",
    PRICE_EFFECTIVE_FROM: "a date from the price catalogue or the price file",
    PRICE_VARIANT: "'' or 'batch', set by the pricer",
    REDACTION_COUNTS: "written by the redactor: detector, rule and policy names",
}

# Attribute maps: policies are per key ([redaction.attributes]); keys and values are both scanned.
MAP_COLUMNS: tuple[str, ...] = ("ResourceAttributes", "SpanAttributes", "Events.Attributes", "Links.Attributes")

# The text columns a [redaction.columns] policy can name: every string or string-array column the
# decode, normalize and price stages write, less the unscanned ones and the attribute maps.
TEXT_COLUMNS: tuple[str, ...] = tuple(
    name
    for name in dict.fromkeys((*OTEL_COLUMNS, *LLM_STRING_COLUMNS, *LLM_ARRAY_COLUMNS))
    if name not in UNSCANNED and name not in MAP_COLUMNS
)

# How a column's values are read.
TEXT, TEXTS, MAP, MAPS, NOTHING = "text", "texts", "map", "maps", "nothing"

_NOT_TEXT = frozenset((int, float, bool, Decimal, type(None)))


class UnscannableColumn(TypeError):
    """A column holds values the redactor cannot read: writing it could store unscanned text."""


def column_kind(name: str, data: Sequence[Any]) -> str:
    """TEXT (str), TEXTS (lists of str), MAP (dicts), MAPS (lists of dicts) or NOTHING (numbers, empty)."""
    types = set(map(type, data))
    if types <= _NOT_TEXT:
        return NOTHING
    types.discard(type(None))
    if types == {str}:
        return TEXT
    if types == {dict}:
        return MAP
    if types <= {list, tuple}:
        inner = set(map(type, chain.from_iterable(data)))
        if inner <= _NOT_TEXT:
            return NOTHING
        inner.discard(type(None))
        if inner == {str}:
            return TEXTS
        if inner == {dict}:
            return MAPS
        types = inner
    names = ", ".join(sorted(t.__name__ for t in types))
    raise UnscannableColumn(f"redaction: column {name!r} holds {names}; the redactor cannot tell what to scan in it")
