"""Tolerant readers for attribute strings: input that cannot be read gives None, never an exception.

Attribute values arrive as the decode stage renders them (ints in decimal, doubles ES6-style, bools
true/false, arrays and maps as compact JSON), so every reader here starts from a string.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import orjson

from tracehouse.collector.stages.normalize import limits

# What a value goes through before normalization cuts it: the redactor's scan of the whole value, set by the
# stage (stage.RedactedCuts) when redaction is on. Redaction runs last, on the row, and sees only what is left
# after a cut: a secret across the cut would keep its first characters there, which no detector recognizes.
BEFORE_CUT: ContextVar[Callable[[str], str] | None] = ContextVar("before_cut", default=None)

_UINT64_MAX = 2**64 - 1
_JSON_CONTAINER_START = frozenset("[{")


def to_int(text: str | None) -> int | None:
    """A count that fits UInt64, from '42' or '42.0'-like text; None for anything else ('abc', -1, 1.5)."""
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        number = to_float(text)
        if number is None or not number.is_integer():
            return None
        value = int(number)
    return value if 0 <= value <= _UINT64_MAX else None


def to_float(text: str | None) -> float | None:
    """A finite float, or None (NaN and infinities are not values a column should hold)."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def number_to_int(value: Any) -> int | None:
    """The same rule as to_int for a value already parsed out of JSON."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _UINT64_MAX else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() and 0 <= value <= _UINT64_MAX else None
    if isinstance(value, str):
        return to_int(value)
    return None


def number_to_float(value: Any) -> float | None:
    """The same rule as to_float for a value already parsed out of JSON."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return to_float(value)
    return None


def parse_json(text: str | None) -> Any:
    """The JSON array or object in `text`, or None; scalars are not parsed (no attribute here needs one)."""
    if not text:
        return None
    stripped = text.lstrip()
    if not stripped or stripped[0] not in _JSON_CONTAINER_START:
        return None
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None


def json_object(text: str | None) -> dict[str, Any] | None:
    value = parse_json(text)
    return value if isinstance(value, dict) else None


def json_list(text: str | None) -> list[Any] | None:
    value = parse_json(text)
    return value if isinstance(value, list) else None


def cut(text: str, limit: int) -> str:
    """`text`'s first `limit` characters, from the text as redaction leaves it (BEFORE_CUT): the part kept
    holds no piece of a secret the whole would have shown."""
    if len(text) <= limit:
        return text
    redact = BEFORE_CUT.get()
    return (text if redact is None else redact(text))[:limit]


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut so nobody mistakes it for the whole."""
    if len(text) <= limit:
        return text
    redact = BEFORE_CUT.get()
    if redact is not None:
        text = redact(text)
        if len(text) <= limit:
            return text
    return f"{text[:limit]}…[{len(text) - limit} chars truncated]"


def short(value: Any) -> str:
    """A value for an id or LowCardinality column: a bounded string, '' when absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json_text(value)
    return value if len(value) <= limits.MAX_SHORT_CHARS else cut(value, limits.MAX_SHORT_CHARS)


def json_text(value: Any) -> str:
    """Compact JSON text for a parsed value; strings stay as they are."""
    if isinstance(value, str):
        return value
    return dumps(value)


UNRENDERABLE = "[unrenderable: JSON nested deeper than 255 levels]"


def dumps(value: Any) -> str:
    """JSON text; orjson reads 1024 levels but writes only 255, and such a value has no useful text."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError, RecursionError):
        try:
            return str(value)
        except RecursionError:
            return UNRENDERABLE


def string_list(text: str | None) -> list[str]:
    """A list of strings from a JSON array ('["a","b"]', how decode renders array attributes) or one plain string."""
    if not text:
        return []
    parsed = json_list(text)
    if parsed is None:
        return [clip(text, limits.MAX_SHORT_CHARS)]
    items = [item if isinstance(item, str) else json_text(item) for item in parsed[: limits.MAX_TAGS]]
    return [clip(item, limits.MAX_SHORT_CHARS) for item in items if item]


def typed_value(text: str) -> Any:
    """An attribute string back as the value it most likely was before decode rendered it: a number, a
    bool, a JSON array or object, else the string itself."""
    if text == "true" or text == "false":
        return text == "true"
    if "." not in text and "e" not in text and "E" not in text:  # int() takes none of these: skip its exception
        try:
            return int(text)
        except ValueError:
            pass
    number = to_float(text)
    if number is not None:
        return number
    parsed = parse_json(text)
    return parsed if parsed is not None else text
