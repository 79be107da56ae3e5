"""What a mapper is: a convention's name, how to spot it cheaply, and how to read a span into fields.

`extract` returns only the fields it found, keyed by the otel_traces column they end in, with Python
values the finalize step turns into column values: str, int, float, messages/tools/tool calls as
lists of canonical dicts, Metadata as a dict, Tags as a list of str.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracehouse.collector.stages.normalize.span import SpanView

Fields = dict[str, Any]
_EMPTY = (None, "", [], {})

# Keys are tested for a prefix in one joined string (`key_text`), with one C-level scan per convention instead
# of a Python-level test per key; the stage remembers the outcome per distinct key text (`dispatch`).
KEY_SEPARATOR = "\x00"


def key_text(names: Sequence[str] | Any) -> str:
    """All attribute keys (or event names), each preceded by KEY_SEPARATOR."""
    return KEY_SEPARATOR + KEY_SEPARATOR.join(names)


def prefix_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern that finds, in a key text, a key starting with one of `prefixes`: one scan, rather than a
    substring search per prefix. None for no prefixes (nothing matches)."""
    if not prefixes:
        return None
    return re.compile(KEY_SEPARATOR + "(?:" + "|".join(re.escape(prefix) for prefix in prefixes) + ")")


@dataclass(frozen=True, slots=True)
class Mapper:
    name: str
    extract: Callable[[SpanView], Fields]
    prefixes: tuple[str, ...]  # attribute-key prefixes whose presence means the convention may be there
    event_prefixes: tuple[str, ...] = ()  # the same for event names
    # Every attribute key extract reads, by name and by prefix, when the mapper declares them (None: not declared).
    # On a span without events and none of these keys, extract finds nothing: dispatch skips it (a mapper whose
    # prefix matches a convention it only shares a namespace with, as GenAI's deprecated forms do the current ones).
    reads: frozenset[str] | None = None
    read_prefixes: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _event_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", prefix_pattern(self.prefixes))
        object.__setattr__(self, "_event_pattern", prefix_pattern(self.event_prefixes))

    def applies(self, span: SpanView) -> bool:
        return self.matches(span.keys, span.event_keys)

    def may_find(self, keys: str) -> bool:
        """Whether a span with this key text and no events has a key extract reads (True when not declared). A key
        holding the separator splits into pieces, the first of which starts as the key does: never a false no."""
        reads = self.reads
        if reads is None:
            return True
        prefixes = self.read_prefixes
        return any(name in reads or name.startswith(prefixes) for name in keys.split(KEY_SEPARATOR))

    def matches(self, keys: str, event_keys: str) -> bool:
        """`applies`, from the span's key text and event-name text ('' when it has no events)."""
        if self._pattern is not None and self._pattern.search(keys) is not None:
            return True
        return (
            bool(event_keys) and self._event_pattern is not None and self._event_pattern.search(event_keys) is not None
        )


def compact(fields: Fields) -> Fields:
    """The fields that hold a value (a later mapper may fill the others): not None, '', [] or {}; 0 is a value."""
    # A true value is never one of _EMPTY: only false ones need the comparisons.
    return {key: value for key, value in fields.items() if value or value not in _EMPTY}
