"""A memo keyed by a span's key text (`mapper.key_text`), for what depends on the set of keys alone.

An instrumentation writes the same keys on span after span, so work that reads only the keys (which mappers
apply, where the indexed lists are) can be done once per distinct key set. The memo is bounded in entries
and in characters: key texts come from the network, and one huge or ever-changing key set must neither pin
memory nor grow it.
"""

from __future__ import annotations

from typing import Any

MAX_ENTRIES = 4_096
MAX_CHARS = 4_000_000  # key-text characters held, all entries together (values hold about as much again)
MAX_TEXT_CHARS = 65_536  # a longer key text is not remembered: its value is computed every time


class KeyTextMemo(dict[Any, Any]):
    """A dict (read it with `get`, at C speed) that `remember` fills and empties when it is full."""

    __slots__ = ("chars",)

    def __init__(self) -> None:
        super().__init__()
        self.chars = 0

    def remember(self, key: str | tuple[str, str], keys: str, value: Any) -> None:
        """Store `value` under `key`, which stands for the key text `keys` (and possibly event names)."""
        size = len(keys) + (len(key[1]) if isinstance(key, tuple) else 0)
        if size > MAX_TEXT_CHARS:
            return
        if len(self) >= MAX_ENTRIES or self.chars + size > MAX_CHARS:
            self.clear()
            self.chars = 0
        self[key] = value
        self.chars += size
