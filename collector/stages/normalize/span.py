"""SpanView: what a mapper may read of one span, gathered from the batch columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple


class SpanView(NamedTuple):
    """One span's inputs. Attribute dicts are shared with the batch: read them, never write them.

    A named tuple: built for every LLM span, and a tuple is built in C where a class runs an __init__."""

    attrs: Mapping[str, str]
    resource: Mapping[str, str]
    start: int
    event_names: Sequence[str]
    event_attrs: Sequence[Mapping[str, str]]
    event_times: Sequence[int]
    keys: str  # mapper.key_text(attrs), for cheap prefix tests
    event_keys: str  # the same over event names

    def event(self, name: str) -> Mapping[str, str] | None:
        """Attributes of the first event called `name`."""
        for index, event_name in enumerate(self.event_names):
            if event_name == name:
                return self.event_attrs[index] if index < len(self.event_attrs) else {}
        return None

    def event_offset(self, name: str) -> int | None:
        """Nanoseconds from span start to the first event called `name` (None if absent or before start)."""
        return event_offset(self.event_names, self.event_times, self.start, name)


def event_offset(names: Sequence[str], times: Sequence[int], start: int, name: str) -> int | None:
    """SpanView.event_offset for a caller that has not built a view (the normalize fast path)."""
    for index, event_name in enumerate(names):
        if event_name == name and index < len(times):
            offset = times[index] - start
            return offset if offset >= 0 else None
    return None
