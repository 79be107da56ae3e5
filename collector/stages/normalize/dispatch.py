"""Which mappers apply to a span, decided once per distinct set of attribute keys and event names.

An instrumentation writes the same keys on every span of one kind, so the prefix tests of every mapper
(a dozen substring searches) are repeated for nothing on span after span; one dict lookup on the span's
key text (`mapper.key_text`), whose hash the string keeps, replaces them.
"""

from __future__ import annotations

from tracehouse.collector.stages.normalize.mapper import Mapper, prefix_pattern
from tracehouse.collector.stages.normalize.memo import KeyTextMemo
from tracehouse.collector.stages.normalize.registry import ATTRIBUTE_PREFIXES, EVENT_PREFIXES

_ATTRIBUTE_PATTERN = prefix_pattern(ATTRIBUTE_PREFIXES)
_EVENT_PATTERN = prefix_pattern(EVENT_PREFIXES)


def has_llm_keys(keys: str, event_keys: str) -> bool:
    """Whether a key or event name has the prefix of some convention (coarser than the mappers' own tests)."""
    return (_ATTRIBUTE_PATTERN is not None and _ATTRIBUTE_PATTERN.search(keys) is not None) or (
        bool(event_keys) and _EVENT_PATTERN is not None and _EVENT_PATTERN.search(event_keys) is not None
    )


class Dispatch:
    """`applicable(mappers, keys, event_keys)`: the mappers, in order, whose `matches` is true (and, on a span
    without events, that may find something: `Mapper.may_find`)."""

    __slots__ = ("_mappers", "_memo", "_tuples")

    def __init__(self) -> None:
        self._mappers: tuple[Mapper, ...] = ()
        self._memo = KeyTextMemo()
        self._tuples: dict[tuple[Mapper, ...], tuple[Mapper, ...]] = {}  # one object per distinct answer

    def applicable(self, mappers: tuple[Mapper, ...], keys: str, event_keys: str) -> tuple[Mapper, ...]:
        if mappers is not self._mappers:  # another registry (tests swap it): what was remembered is stale
            self._mappers = mappers
            self._memo = KeyTextMemo()
            self._tuples = {}
        memo_key = (keys, event_keys) if event_keys else keys
        found = self._memo.get(memo_key)
        if found is None:
            found = (
                tuple(
                    mapper
                    for mapper in mappers
                    if mapper.matches(keys, event_keys) and (event_keys or mapper.may_find(keys))
                )
                if has_llm_keys(keys, event_keys)
                else ()
            )
            found = self._tuples.setdefault(found, found)
            self._memo.remember(memo_key, keys, found)
        return found
