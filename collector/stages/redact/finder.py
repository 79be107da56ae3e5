"""Candidate starts for the built-in detectors: one RE2 program over all triggers, run over bytes.

RE2 finds the leftmost match of all triggers at once in linear time. Only the match span is asked
for (no capture groups), which keeps RE2 on its DFA; where the detector starts inside that span is
recomputed here from the boundary rules. The wrapper's per-call cost dominates for short gaps
between candidates, so the extension's Match is called directly when this google-re2 has it.
"""

from __future__ import annotations

from collections.abc import Callable

import re2

from tracehouse.collector.stages.redact.detectors import Detector

# Where a candidate may start: the start of the text, after a non-word byte, or right after a JSON
# escape (`\n`, `\u00a0`), whose letters are not part of the text the escape stands for.
BOUNDARY = r"""(?:^|\\u[0-9A-Fa-f]{4}|\\[nrtbf"/]|[^A-Za-z0-9_])"""

_HEX = frozenset(b"0123456789abcdefABCDEF")
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ESCAPES = frozenset(b'nrtbf"/')


def finder_pattern(detectors: tuple[Detector, ...]) -> str:
    pattern = BOUNDARY + "(?:" + "|".join(f"(?:{d.trigger})" for d in detectors) + ")"
    glued = [d for d in detectors if d.glued]  # also right after `_` (Detector.glued)
    if glued:
        pattern += "|_(?:" + "|".join(f"(?:{d.trigger})" for d in glued) + ")"
    return pattern


def options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False
    return opts


# Memory for the trigger program's DFA. At RE2's default (8 MB) the DFA of all the triggers fills up and
# is rebuilt again and again over a large batch: the pass runs at ~370 MB/s instead of ~525 (bench_redact,
# one core). 16 MB holds it; growing to it costs ~6 MB of RSS. Results do not depend on it, only speed.
FINDER_MAX_MEM = 16 << 20


class Finder:
    def __init__(self, detectors: tuple[Detector, ...]) -> None:
        opts = options()
        opts.never_capture = True
        opts.max_mem = FINDER_MAX_MEM
        self._regex = re2.compile(finder_pattern(detectors).encode(), opts)
        self._span = self._fast_span() or self._public_span

    def _fast_span(self) -> Callable[[bytes, int], tuple[int, int]] | None:
        try:
            from re2 import _re2

            match = self._regex._regexp.Match
            unanchored = _re2.RE2.Anchor.UNANCHORED
        except (ImportError, AttributeError):
            return None

        def span(buf: bytes, pos: int) -> tuple[int, int]:
            return match(unanchored, buf, pos, len(buf))[0]

        return span

    def _public_span(self, buf: bytes, pos: int) -> tuple[int, int]:
        m = self._regex.search(buf, pos)
        return (-1, -1) if m is None else m.span()

    def starts(self, buf: bytes, pos: int) -> tuple[int, ...]:
        """Where detectors should be tried for the next match at or after pos, or () when none is left.

        At the very start of the text the boundary may be empty or a non-word byte, so both are returned.
        """
        start = self._span(buf, pos)[0]
        if start < 0:
            return ()
        return starts_at(buf, start)


def starts_at(buf: bytes, start: int) -> tuple[int, ...]:
    """Where detectors start for a boundary match at `start` (Finder.starts; the prefilter bench reuses it)."""
    first = buf[start]
    if start == 0 and first in _WORD:
        return (0,)  # the boundary was the start of the text
    if first == 92:  # backslash: a JSON escape is the boundary
        nxt = buf[start + 1] if start + 1 < len(buf) else 0
        if nxt == 117 and all(b in _HEX for b in buf[start + 2 : start + 6]) and start + 6 <= len(buf):
            after = start + 6
        elif nxt in _ESCAPES:
            after = start + 2
        else:
            after = start + 1
    elif first >= 0xC0:  # a non-ASCII character (one code point, 2-4 bytes) is the boundary
        after = start + (2 if first < 0xE0 else 3 if first < 0xF0 else 4)
    else:
        after = start + 1
    if start == 0:
        return (0, after) if after < len(buf) else (0,)
    return (after,) if after < len(buf) else ()
