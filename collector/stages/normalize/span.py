"""SpanView: what a mapper may read of one span, gathered from the batch columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class SpanView:
    """One span's inputs. Attribute dicts are shared with the batch: read them, never write them."""

    __slots__ = ("attrs", "keys", "event_keys", "resource", "start", "event_names", "event_attrs", "event_times")

    def __init__(
        self,
        attrs: Mapping[str, str],
        resource: Mapping[str, str],
        start: int,
        event_names: Sequence[str],
        event_attrs: Sequence[Mapping[str, str]],
        event_times: Sequence[int],
        keys: str,
        event_keys: str,
    ) -> None:
        self.attrs = attrs
        self.keys = keys  # mapper.key_text(attrs), for cheap prefix tests
        self.event_keys = event_keys  # the same over event names
        self.resource = resource
        self.start = start
        self.event_names = event_names
        self.event_attrs = event_attrs
        self.event_times = event_times

    def event(self, name: str) -> Mapping[str, str] | None:
        """Attributes of the first event called `name`."""
        for index, event_name in enumerate(self.event_names):
            if event_name == name:
                return self.event_attrs[index] if index < len(self.event_attrs) else {}
        return None

    def event_offset(self, name: str) -> int | None:
        """Nanoseconds from span start to the first event called `name` (None if absent or before start)."""
        for index, event_name in enumerate(self.event_names):
            if event_name == name and index < len(self.event_times):
                offset = self.event_times[index] - self.start
                return offset if offset >= 0 else None
        return None
