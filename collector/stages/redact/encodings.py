"""Encoded forms of text the detectors must see through, and how each is handled.

- JSON `\\u00XX` escapes of printable ASCII (`alice\\u0040example.com`) and URL percent-encoding
  (`alice%40example.com`) are decoded into a *view* that is scanned instead of the value; the hits are
  mapped back onto the original bytes, so the replacement covers the escapes and the value keeps its
  form (JSON stays JSON, a URL stays a URL). Only a value holding such a sequence gets a view, and the
  check is one substring search over the joined batch. `"` and `\\` (and DEL) are never decoded: a view
  must not gain JSON syntax. One level only: `%2540` is seen as `%40`.
- Base64: a whole value that is base64 (standard or URL-safe alphabet, length a multiple of 4, which is
  how OTLP bytes values are stored) and decodes to printable UTF-8 text is scanned decoded; when that
  finds something the value becomes the base64 of the redacted text. Base64 that decodes to binary
  (images, random keys) is scanned as it is, so the secret detectors still see key-shaped values.
  Base64 runs inside longer text are not decoded (that would mean tokenizing every value); the secret
  detectors cover the common embedded forms (Basic credentials, JWTs, PEM bodies).
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable

import re2

from tracehouse.collector.stages.redact.finder import options

_ENCODED = re.compile(rb"\\u00([2-7][0-9A-Fa-f])|%([2-7][0-9A-Fa-f])")
_SEQUENCE = re.compile(rb"\\u00[2-7][0-9A-Fa-f]|%[2-7][0-9A-Fa-f]")
_NEVER_DECODED = frozenset((0x22, 0x5C, 0x7F))  # '"', '\', DEL
_HEX_BYTE = {f"{b:{case}}".encode(): b for b in range(0x20, 0x80) for case in ("02x", "02X")}
BASE64_SHAPE = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}|[A-Za-z0-9_-]{8,}={0,2}")
MIN_BASE64 = 8  # 6 bytes: the shortest text a built-in detector matches
MAX_BASE64 = 4 << 20


def _searcher(pattern: bytes) -> Callable[[bytes, int], int]:
    """(buf, pos) -> where pattern next occurs at or after pos, or -1. The extension's Match directly where
    this google-re2 has it: the wrapper's search costs microseconds per call, more than the search itself
    on short values."""
    opts = options()
    opts.never_capture = True
    regex = re2.compile(pattern, opts)
    try:
        from re2 import _re2

        match, unanchored = regex._regexp.Match, _re2.RE2.Anchor.UNANCHORED
    except (ImportError, AttributeError):

        def search(buf: bytes, pos: int) -> int:
            m = regex.search(buf, pos)
            return -1 if m is None else m.start()

        return search
    return lambda buf, pos: match(unanchored, buf, pos, len(buf))[0][0]


# RE2 skips to the literal first byte with memchr: ~20 GB/s where `b"\\u00" in buf` does ~1.5.
_U_ESCAPE = _searcher(rb"\\u00[2-7][0-9A-Fa-f]")
_PERCENT = _searcher(rb"%[2-7][0-9A-Fa-f]")


def may_have_escapes(buf: bytes) -> bool:
    """The cheap test over a whole joined buffer: can any value in it need a view?"""
    # memchr first (a fraction of a microsecond): an RE2 call costs ~1.5 µs even on a short value.
    return (b"%" in buf and _PERCENT(buf, 0) >= 0) or (b"\\" in buf and _U_ESCAPE(buf, 0) >= 0)


def values_with_escapes(buf: bytes, starts: list[int]) -> list[int]:
    """Which of the values joined in buf (value i starts at starts[i]; one more entry ends the last)
    hold a sequence view_of may decode: one RE2 call per such value, none for the others, instead of a
    test per value. Neither sequence holds the NUL separator, so each match lies inside one value."""
    found: set[int] = set()
    end = len(buf)
    for first, search in ((b"%", _PERCENT), (b"\\", _U_ESCAPE)):
        if first not in buf:
            continue
        pos = 0
        while pos < end:
            at = search(buf, pos)
            if at < 0:
                break
            i = bisect_right(starts, at) - 1
            found.add(i)
            pos = starts[i + 1]
    return sorted(found)


class View:
    """A value with its escapes decoded, and the way back from view offsets to value offsets (worked out
    only when the view had something to replace)."""

    __slots__ = ("data", "_value", "_view_marks", "_marks")

    def __init__(self, data: bytes, value: bytes) -> None:
        self.data = data
        self._value = value
        self._marks: list[tuple[int, int, int]] | None = None
        self._view_marks: list[int] = []

    def to_value(self, p: int) -> int:
        """The value offset of view offset p (p may be the end of the view)."""
        if self._marks is None:
            self._marks = _marks(self._value)
            self._view_marks = [m[0] for m in self._marks]
        i = bisect_right(self._view_marks, p) - 1
        if i < 0:
            return p
        vp, start, end = self._marks[i]
        return start if p == vp else end + (p - vp - 1)


def _decoded(m: re.Match[bytes]) -> bytes:
    start = m.start()
    buf = m.string
    if buf[start] == 92 and start and buf[start - 1] == 92 and not _escapes(buf, start):
        return m.group()  # an escaped backslash followed by "u00..": text, not an escape
    byte = _HEX_BYTE[m.group(1) or m.group(2)]
    return m.group() if byte in _NEVER_DECODED else bytes((byte,))


def _marks(value: bytes) -> list[tuple[int, int, int]]:
    """(view offset of each decoded byte, its escape's start, end in the value), as _decoded decides."""
    marks = []
    shrink = 0
    for m in _ENCODED.finditer(value):
        if len(_decoded(m)) == 1:
            start, end = m.span()
            marks.append((start - shrink, start, end))
            shrink += end - start - 1
    return marks


def view_of(value: bytes) -> View | None:
    """The decoded view of one value, or None when it holds no sequence worth decoding."""
    if not may_have_escapes(value):
        return None
    found = _SEQUENCE.findall(value)
    if not found:
        return None
    if b"\\\\u00" not in value:
        # One bytes.replace per distinct sequence (%20, %40, ...) instead of a call per match.
        data, shrink = value, 0
        for sequence, n in Counter(found).items():
            byte = _HEX_BYTE[sequence[-2:]]
            if byte not in _NEVER_DECODED:
                data = data.replace(sequence, bytes((byte,)))
                shrink += n * (len(sequence) - 1)
        if len(data) == len(value) - shrink:  # else a decoded byte formed a new sequence: decide one by one
            return View(data, value) if shrink else None
    data = _ENCODED.sub(_decoded, value)
    return View(data, value) if len(data) != len(value) else None


def _escapes(buf: bytes, j: int) -> bool:
    """True when the backslash at j starts an escape (it is not itself escaped)."""
    run = 1
    while j - run >= 0 and buf[j - run] == 92:
        run += 1
    return run % 2 == 1


class Base64Text:
    """A value that is base64 of printable text: the text, and how to encode a replacement the same way."""

    __slots__ = ("text", "_urlsafe")

    def __init__(self, text: str, urlsafe: bool) -> None:
        self.text = text
        self._urlsafe = urlsafe

    def encode(self, text: str) -> str:
        raw = text.encode("utf-8", "surrogatepass")
        return (base64.urlsafe_b64encode(raw) if self._urlsafe else base64.b64encode(raw)).decode()


def base64_text(value: str) -> Base64Text | None:
    """The decoded text when the whole value is base64 of printable UTF-8, else None."""
    n = len(value)
    if n < MIN_BASE64 or n > MAX_BASE64 or n % 4 or BASE64_SHAPE.fullmatch(value) is None:
        return None
    urlsafe = "-" in value or "_" in value
    try:
        raw = base64.urlsafe_b64decode(value) if urlsafe else base64.b64decode(value, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not text.isprintable() and not text.replace("\n", "").replace("\r", "").replace("\t", "").isprintable():
        return None
    return Base64Text(text, urlsafe)
