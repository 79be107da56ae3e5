"""What a mapper is: a convention's name, how to spot it cheaply, and how to read a span into fields.

`extract` returns only the fields it found, keyed by the otel_traces column they end in, with Python
values the finalize step turns into column values: str, int, float, messages/tools/tool calls as
lists of canonical dicts, Metadata as a dict, Tags as a list of str.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracehouse.collector.stages.normalize.span import SpanView

Fields = dict[str, Any]
_EMPTY = (None, "", [], {})

# Keys are tested for a prefix as substrings of one joined string (`key_text`): a handful of C-level
# searches per span instead of a Python-level call per key.
KEY_SEPARATOR = "\x00"


def key_text(names: Sequence[str] | Any) -> str:
    """All attribute keys (or event names), each preceded by KEY_SEPARATOR."""
    return KEY_SEPARATOR + KEY_SEPARATOR.join(names)


def needles(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(KEY_SEPARATOR + prefix for prefix in prefixes)


def has_prefix(text: str, searched: tuple[str, ...]) -> bool:
    return any(needle in text for needle in searched)


@dataclass(frozen=True, slots=True)
class Mapper:
    name: str
    extract: Callable[[SpanView], Fields]
    prefixes: tuple[str, ...]  # attribute-key prefixes whose presence means the convention may be there
    event_prefixes: tuple[str, ...] = ()  # the same for event names
    _needles: tuple[str, ...] = field(init=False, repr=False)
    _event_needles: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_needles", needles(self.prefixes))
        object.__setattr__(self, "_event_needles", needles(self.event_prefixes))

    def applies(self, span: SpanView) -> bool:
        return has_prefix(span.keys, self._needles) or (
            bool(self._event_needles and span.event_names) and has_prefix(span.event_keys, self._event_needles)
        )


def compact(fields: Fields) -> Fields:
    """The fields that hold a value (a later mapper may fill the others)."""
    return {key: value for key, value in fields.items() if value not in _EMPTY}
