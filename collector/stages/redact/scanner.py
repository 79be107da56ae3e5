"""Finds and replaces PII in many strings at once: built-in detectors plus user rules on RE2.

All strings of one call are joined with NUL bytes and encoded to UTF-8 once, so a batch with nothing
to redact costs one encode and one RE2 scan, whatever the number of strings; that RE2 pass is most of
the cost (bench/bench_redact.py). Values holding JSON `\\u00XX` or URL `%XX` escapes are scanned decoded,
whole base64 values of text are scanned decoded (see encodings). A scanner built with remember_clean
(the stage's is) does not scan again long values it recently found nothing in (see CleanValues).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

import re2

from tracehouse.collector.stages.redact.detectors import BUILTINS, Detector, dispatch_table
from tracehouse.collector.stages.redact.encodings import (
    BASE64_SHAPE,
    MIN_BASE64,
    View,
    base64_text,
    may_have_escapes,
    values_with_escapes,
    view_of,
)
from tracehouse.collector.stages.redact.finder import Finder, options
from tracehouse.collector.stages.redact.tokens import Hasher

SEP = b"\x00"
# No built-in detector matches fewer characters than this ("a@b.co"; "1.1.1.1" is 7).
MIN_MATCH = 6
Counts = dict[str, int]
Result = tuple[str, Counts] | None


def re2_options() -> re2.Options:
    """Options for user patterns: errors are raised with the rule's name instead of logged."""
    return options()


@dataclass(frozen=True)
class UserRule:
    """A configured pattern: every match is replaced and counted under the rule's name."""

    name: str
    regex: re2._Regexp
    replacement: str  # literal text, or "" for a hash token [NAME:<hex>]
    # Patterns with ^ $ \A \z mean "start/end of the value", so they are run on each value alone.
    per_value: bool


# Failed candidates allowed per scan before the text counts as adversarial (see _Overloaded).
FAILED_CANDIDATES_BASE = 256
FAILED_CANDIDATES_BYTES = 64
OVERLOAD = "overload"


class _Overloaded(Exception):
    """Too many candidates failed validation: scanning on would cost far more than the text is worth."""


class _Hit(NamedTuple):
    start: int
    end: int
    kind: str  # count key
    label: str  # hash-mode replacement label: [LABEL:<hex>]
    replacement: bytes | None  # literal replacement; None means hash mode
    order: int  # tie-break: built-ins (0) before user rules (1 + index)


# Values shorter than this are scanned again rather than remembered: cheap to scan, and many (numbers, ids).
MIN_REMEMBERED = 128


class CleanValues:
    """Long values a scanner found nothing in, not long ago, so they are not scanned again: chats resend
    their history on every call, system prompts and tool definitions repeat from batch to batch. The scanner
    is fixed once built, so a value's result cannot change. Two generations bound the memory: when the
    newer holds half the budget (characters) it becomes the older and the older is let go; a value found
    in the older is moved to the newer, so what keeps coming back stays."""

    __slots__ = ("_new", "_old", "_size", "_half")

    def __init__(self, budget_chars: int) -> None:
        self._new: dict[str, None] = {}
        self._old: dict[str, None] = {}
        self._size = 0
        self._half = budget_chars // 2

    def known(self, value: str) -> bool:
        if value in self._new:
            return True
        if value in self._old:
            self.add(value)
            return True
        return False

    def add(self, value: str) -> None:
        size = len(value)
        if size > self._half:
            return
        if self._size + size > self._half:
            self._old, self._new, self._size = self._new, {}, 0
        self._new[value] = None
        self._size += size

    def clear(self) -> None:
        self._new, self._old, self._size = {}, {}, 0

    @property
    def chars(self) -> int:
        """Characters held (both generations): at most the budget."""
        return sum(map(len, self._new)) + sum(map(len, self._old))


class Scanner:
    def __init__(
        self,
        detectors: Sequence[Detector] = BUILTINS,
        rules: Sequence[UserRule] = (),
        allow_values: Sequence[str] = (),
        allow_patterns: Sequence[re2._Regexp] = (),
        hash_builtins: bool = False,
        hasher: Hasher | None = None,
        remember_clean: int = 0,
    ) -> None:
        """remember_clean: how many characters of clean values to remember across calls (0: none)."""
        self._detectors = tuple(detectors)
        self._clean = CleanValues(remember_clean) if remember_clean > 0 else None
        self._finder = Finder(self._detectors) if detectors else None
        self._dispatch = dispatch_table(self._detectors)
        self._rules = tuple(rules)
        # One RE2 pass tells which rules match anywhere; rules about whole values always run per value.
        self._rule_set: re2.Set | None = None
        self._set_rules = [i for i, rule in enumerate(self._rules) if not rule.per_value]
        self._per_value_rules = [i for i, rule in enumerate(self._rules) if rule.per_value]
        if self._set_rules:
            self._rule_set = re2.Set.SearchSet(re2_options())
            for i in self._set_rules:
                self._rule_set.Add(self._rules[i].regex.pattern)
            self._rule_set.Compile()
        self._allow = frozenset(value.encode() for value in allow_values)
        self._allow_patterns = tuple(allow_patterns)
        if (hash_builtins or any(not r.replacement for r in self._rules)) and hasher is None:
            raise ValueError("hash-mode replacements need a Hasher")
        self._hash_builtins = hash_builtins
        self._hasher = hasher
        self._labels = {d.type: f"[{d.type.upper()}]".encode() for d in self._detectors}
        # Shorter values cannot hold a finding: no built-in detector matches fewer characters.
        self.min_len = 1 if self._rules else MIN_MATCH

    @property
    def active(self) -> bool:
        return self._finder is not None or bool(self._rules)

    def detect(self, text: str) -> list[tuple[str, int, int]]:
        """What would be replaced in text: (kind, start, end) in characters. For evaluation and tests."""
        value = text.encode("utf-8", "surrogatepass")
        view = view_of(value)
        buf = view.data if view is not None else value
        try:
            hits = self._builtin_hits(buf) if self._finder is not None else []
        except _Overloaded:
            return [(OVERLOAD, 0, len(text))]
        if self._rules:
            hits.extend(self._rule_hits(buf, [len(buf)]))
        hits.sort(key=lambda h: (h.start, -(h.end - h.start), h.order))
        found = []
        last_end = -1
        for hit in hits:
            if hit.start >= last_end:
                s, e = (hit.start, hit.end) if view is None else (view.to_value(hit.start), view.to_value(hit.end))
                start = len(value[:s].decode("utf-8", "surrogatepass"))
                end = start + len(value[s:e].decode("utf-8", "surrogatepass"))
                found.append((hit.kind, start, end))
                last_end = hit.end
        return found

    def scan(self, text: str) -> Result:
        return self.scan_values([text])[0]

    def scan_values(self, values: Sequence[str]) -> list[Result]:
        """For each value: None when nothing was found, else the redacted text and counts by kind.

        Equal values are scanned once: system prompts and tool definitions repeat in every call of a batch.
        Values too short to hold any finding are not scanned at all, nor long ones this scanner found clean
        in a recent call (see CleanValues).
        """
        min_len, clean = self.min_len, self._clean
        if len(values) == 1:  # redact_text and the like: nothing to deduplicate
            value = values[0]
            if len(value) < min_len:
                return [None]
            remember = clean is not None and len(value) >= MIN_REMEMBERED
            if remember and clean.known(value):
                return [None]
            scanned = self._scan_distinct(values)
            if remember and scanned[0] is None:
                clean.add(value)
            return scanned
        distinct = dict.fromkeys(values)
        if clean is not None:
            known = clean.known
            todo = [v for v in distinct if len(v) >= min_len and (len(v) < MIN_REMEMBERED or not known(v))]
        elif min_len > 1:
            todo = [value for value in distinct if len(value) >= min_len]
        else:
            todo = list(distinct)
        scanned = self._scan_distinct(todo)
        if clean is not None:
            for value, result in zip(todo, scanned, strict=True):
                if result is None and len(value) >= MIN_REMEMBERED:
                    clean.add(value)
        if len(todo) == len(values):
            return scanned
        found = dict(zip(todo, scanned, strict=True))
        return list(map(found.get, values))

    def _scan_distinct(self, values: Sequence[str], decoded: bool = False) -> list[Result]:
        results: list[Result] = [None] * len(values)
        if not values or not self.active:
            return results
        # One join and one encode (a copy each) for the whole batch. Each value's bytes are only needed
        # where something is found or decoded; for ASCII text (the usual case) they are slices of buf.
        joined = "\x00".join(values)
        original = buf = joined.encode("utf-8", "surrogatepass")
        encoded: list[bytes] | None = None if len(buf) == len(joined) else _encode_each(values)
        # Byte sizes of the values as scanned (None: their lengths, ASCII without views) and where each
        # value starts in `original`.
        sizes: list[int] | None = None if encoded is None else list(map(len, encoded))
        starts: list[int] | None = None
        views: dict[int, View] = {}
        if may_have_escapes(buf):
            if sizes is None:
                sizes = list(map(len, values))
            starts = [0, *accumulate(size + 1 for size in sizes)]
            # Only the values holding an escape sequence are looked at, each once (view_of is exact on them).
            for i in values_with_escapes(buf, starts):
                view = view_of(original[starts[i] : starts[i + 1] - 1])
                if view is not None:
                    views[i] = view
            if views:
                # The views spliced into the joined text: one copy, the rest of the values as they are.
                whole, parts, pos = memoryview(original), [], 0
                for i, view in views.items():
                    parts += (whole[pos : starts[i]], view.data)
                    pos = starts[i + 1] - 1
                    sizes[i] = len(view.data)
                parts.append(whole[pos:])
                buf = b"".join(parts)
        try:
            hits = self._builtin_hits(buf) if self._finder is not None else []
        except _Overloaded:
            if len(values) > 1:
                return [self._scan_distinct([value], decoded)[0] for value in values]
            # Text made of failing candidates costs more than it is worth: mask it whole, never pass it.
            value = values[0].encode("utf-8", "surrogatepass")
            return [('"[REDACTED]"' if _is_json(value) else "[REDACTED]", {OVERLOAD: 1})]
        if self._rules:
            hits.extend(self._rule_hits(buf, list(map(len, values)) if sizes is None else sizes))
        if hits:
            hits.sort(key=lambda h: (h.start, -(h.end - h.start), h.order))
            offsets = [0, *accumulate(size + 1 for size in (map(len, values) if sizes is None else sizes))]
            if starts is None:
                starts = offsets  # no views: the scanned text is the original
            index = 0
            last_end = -1
            per_value: dict[int, list[_Hit]] = {}
            for hit in hits:
                if hit.start < last_end:
                    continue  # overlaps an earlier, longer or higher-priority hit
                while offsets[index + 1] <= hit.start:
                    index += 1
                per_value.setdefault(index, []).append(hit)
                last_end = hit.end
            for i, value_hits in per_value.items():
                value = original[starts[i] : starts[i + 1] - 1] if encoded is None else encoded[i]
                results[i] = self._rewrite(value, offsets[i], value_hits, views.get(i))
        if not decoded:
            self._scan_base64(values, results)
        return results

    def _scan_base64(self, values: Sequence[str], results: list[Result]) -> None:
        """Whole values that are base64 of text are scanned decoded (see encodings)."""
        looks = BASE64_SHAPE.fullmatch
        # The length and end tests first: most values fail them without a call (base64 comes in 4-character
        # groups; JSON and prose start or end with a byte outside its alphabet).
        found = [
            (i, b)
            for i, value in enumerate(values)
            if not len(value) & 3
            and len(value) >= MIN_BASE64
            and value[0] in _BASE64_FIRST
            and value[-1] in _BASE64_LAST
            and looks(value) is not None
            and (b := base64_text(value)) is not None
        ]
        if not found:
            return
        inner = self._scan_distinct([b.text for _, b in found], decoded=True)
        for (i, b), result in zip(found, inner, strict=True):
            if result is not None:
                results[i] = (b.encode(result[0]), result[1])

    def _builtin_hits(self, buf: bytes) -> list[_Hit]:
        hits: list[_Hit] = []
        starts = self._finder.starts
        dispatch = self._dispatch
        budget = FAILED_CANDIDATES_BASE + len(buf) // FAILED_CANDIDATES_BYTES
        candidates = starts(buf, 0)
        while candidates:
            found = None
            for p in candidates:
                # "\n@x" in JSON: the n belongs to the escape, so nothing can start there.
                if p > 0 and buf[p - 1] == 92 and buf[p] in _ESCAPE_LETTERS and _odd_backslashes(buf, p - 1):
                    continue
                for detector in dispatch[buf[p]]:
                    m = detector.pattern.match(buf, p)
                    if m is not None:
                        span = detector.validate(buf, m, p)
                        if span is not None:
                            found = detector, span
                            break
                if found is not None:
                    break
            if found is None:
                pos = candidates[-1] + 1
                budget -= 1
                if budget < 0:
                    raise _Overloaded
            else:
                detector, (start, end) = found
                if not self._allowed(buf[start:end]):
                    kind = detector.type
                    literal = None if self._hash_builtins else self._labels[kind]
                    hits.append(_Hit(start, end, kind, kind.upper(), literal, 0))
                pos = end
            candidates = starts(buf, pos) if pos < len(buf) else ()
        return hits

    def _rule_hits(self, buf: bytes, lengths: list[int]) -> list[_Hit]:
        """Hits of the user rules in buf, the values of the given byte lengths joined with SEP."""
        matched = [self._set_rules[i] for i in self._rule_set.Match(buf) or ()] if self._rule_set else []
        matched += self._per_value_rules
        if not matched:
            return []
        hits: list[_Hit] = []
        bounds = []
        pos = 0
        for length in lengths:
            bounds.append((pos, pos + length))
            pos += length + 1
        for index in sorted(matched):
            rule = self._rules[index]
            spans: list[tuple[int, int]] = []
            if rule.per_value:
                for start, end in bounds:
                    spans.extend((start + s, start + e) for s, e in _finditer(rule.regex, buf[start:end]))
            else:
                rescan: set[int] = set()
                joined = list(_finditer(rule.regex, buf))
                for s, e in joined:
                    if SEP in buf[s:e]:
                        rescan.update(i for i, (bs, be) in enumerate(bounds) if bs <= e and s <= be)
                for s, e in joined:
                    if SEP not in buf[s:e] and not any(bounds[i][0] <= s <= bounds[i][1] for i in rescan):
                        spans.append((s, e))
                for i in sorted(rescan):
                    start, end = bounds[i]
                    spans.extend((start + s, start + e) for s, e in _finditer(rule.regex, buf[start:end]))
            for s, e in spans:
                s, e = clip_to_escapes(buf, s, e)
                if s < e and not self._allowed(buf[s:e]):
                    literal = rule.replacement.encode() if rule.replacement else None
                    hits.append(_Hit(s, e, rule.name, rule.name.upper(), literal, 1 + index))
        return hits

    def _allowed(self, value: bytes) -> bool:
        if value in self._allow:
            return True
        return any(p.fullmatch(value) is not None for p in self._allow_patterns)

    def _rewrite(self, value: bytes, offset: int, hits: list[_Hit], view: View | None = None) -> Result:
        """Replace the hits (offsets in the joined buffer, of the view when the value has one) in value."""
        parts: list[bytes] = []
        counts: Counts = {}
        pos = 0
        risky = False
        for hit in hits:
            start, end = hit.start - offset, hit.end - offset
            if view is not None:
                start, end = view.to_value(start), view.to_value(end)
            original = value[start:end] if view is None else view.data[hit.start - offset : hit.end - offset]
            risky = risky or b'"' in value[start:end] or b"\\" in value[start:end]
            parts.append(value[pos:start])
            parts.append(self._replacement(hit, original))
            counts[hit.kind] = counts.get(hit.kind, 0) + 1
            pos = end
        parts.append(value[pos:])
        text = b"".join(parts).decode("utf-8", "surrogatepass")
        if risky and _is_json(value) and not _is_json(text.encode("utf-8", "surrogatepass")):
            # A user pattern cut across JSON syntax; keep the value valid JSON, drop its content.
            text = '"[REDACTED]"'
        return text, counts

    def _replacement(self, hit: _Hit, original: bytes) -> bytes:
        if hit.replacement is not None:
            return hit.replacement
        return f"[{hit.label}:{self._hasher.short(original)}]".encode()


_ESCAPE_LETTERS = frozenset(b'nrtbfu"/')
# Where a value BASE64_SHAPE matches can start and end (both alphabets, and the padding).
_BASE64_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
_BASE64_LAST = _BASE64_FIRST | {"="}


def _encode_each(values: Sequence[str]) -> list[bytes]:
    return [value.encode("utf-8", "surrogatepass") for value in values]


def _odd_backslashes(buf: bytes, j: int) -> bool:
    """True when the backslash at j starts an escape (it is not itself escaped)."""
    run = 1
    while j - run >= 0 and buf[j - run] == 92:
        run += 1
    return run % 2 == 1


def _finditer(regex: re2._Regexp, data: bytes):
    for m in regex.finditer(data):
        s, e = m.span()
        if e > s:
            yield _snap(data, s, e)


def _snap(data: bytes, s: int, e: int) -> tuple[int, int]:
    """Widen a byte span to whole UTF-8 characters."""
    while s > 0 and 0x80 <= data[s] < 0xC0:
        s -= 1
    while e < len(data) and 0x80 <= data[e] < 0xC0:
        e += 1
    return s, e


def _escape_at(buf: bytes, s: int) -> tuple[int, int] | None:
    """The JSON escape sequence (start, end) that covers position s strictly inside, if any."""
    for j in range(s - 1, max(-1, s - 6), -1):
        if buf[j] != 92:
            continue
        run = 1
        while j - run >= 0 and buf[j - run] == 92:
            run += 1
        if run % 2 == 0:
            return None
        length = 6 if j + 1 < len(buf) and buf[j + 1] == 117 else 2
        return (j, j + length) if j < s < j + length else None
    return None


def clip_to_escapes(buf: bytes, s: int, e: int) -> tuple[int, int]:
    """Shrink a span so it neither starts nor ends inside a JSON escape like \\n or \\u00e9."""
    escape = _escape_at(buf, s)
    if escape is not None:
        s = escape[1]
    escape = _escape_at(buf, e)
    if escape is not None:
        e = escape[0]
    if e > s and buf[e - 1] == 92:
        run = 1
        while e - 1 - run >= s and buf[e - 1 - run] == 92:
            run += 1
        if run % 2:
            e -= 1
    return s, e


def _is_json(data: bytes) -> bool:
    stripped = data.strip()
    if not stripped or stripped[:1] not in b"{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True
