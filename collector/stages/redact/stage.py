"""The redaction stage: the last stage before encoding, it sees the final row. Every column of the batch
is scanned, whichever stage wrote it (see columns: only a short allow-list is not), so a column added
later cannot be forgotten: text columns, lists of text (event names, link trace states, tags) and
attribute maps, keys and values both. Policies apply per attribute key and per column; each span gets
its RedactionCounts."""

from __future__ import annotations

from fnmatch import fnmatchcase
from itertools import chain
from typing import TYPE_CHECKING, Any

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import CONTENT_COLUMNS, CONTENT_SAMPLED, REDACTION_COUNTS, SAMPLED_DROPPED
from tracehouse.collector.stages.redact.columns import MAP, MAPS, TEXT, TEXT_COLUMNS, TEXTS, UNSCANNED, column_kind
from tracehouse.collector.stages.redact.detectors import BUILTINS
from tracehouse.collector.stages.redact.policy import DROP, HASH, KEEP, REDACT, SCAN, KeyPolicies
from tracehouse.collector.stages.redact.scanner import Counts, Result, Scanner, UserRule
from tracehouse.collector.stages.redact.settings import RedactionSettings
from tracehouse.collector.stages.redact.tokens import Hasher

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

MASK = "[REDACTED]"
# Count keys for whole values handled by a policy rather than found by a detector.
DROPPED, HASHED, MASKED, CONTENT_DROPPED = "dropped", "hashed", "masked", "content_dropped"
_POLICY_COUNTS = {DROP: DROPPED, HASH: HASHED, REDACT: MASKED}
# Attribute keys known to hold nothing, remembered across batches (keys repeat in every span): at most this many
# characters of them, a key no longer than the second figure (a client that sends ever new, long keys must not
# grow the collector); when full, the memory starts again.
_MAX_CLEAN_KEY_CHARS = 4 << 20
_MAX_REMEMBERED_KEY_CHARS = 256
# Characters of clean values the scanner remembers across batches (see scanner.CleanValues): ~8 MB of ASCII text.
_REMEMBER_CLEAN_CHARS = 8 << 20
# Key sets remembered with their policies (see _Shape): at most this many, of at most this many key characters
# in all; when either is reached, the memory starts again.
_MAX_SHAPES = 10_000
_MAX_SHAPE_CHARS = 8 << 20


def _add(target: Counts | None, counts: Counts) -> Counts:
    if target is None:
        return dict(counts)
    for key, n in counts.items():
        target[key] = target.get(key, 0) + n
    return target


class _Shape:
    """What the key policies make of one key set, in order. Spans of one instrumentation share their key
    set, so this is worked out once (kept on the Redactor) and a map then costs one tuple and one dict
    look-up instead of a policy look-up per key."""

    __slots__ = ("scan", "fixed", "scanned_keys", "keys_clean")

    def __init__(self, keys: tuple[str, ...], policies: KeyPolicies, content_free: bool) -> None:
        scan: list[str] = []
        fixed: list[tuple[str, str | None]] = []  # (key, policy), None: a content key dropped (content-free)
        for key in keys:
            if content_free and policies.is_content(key):
                fixed.append((key, None))
                continue
            policy = policies.policy(key)
            if policy == SCAN:
                scan.append(key)
            elif policy != KEEP:
                fixed.append((key, policy))
        self.scan = tuple(scan)  # keys whose values are scanned
        self.fixed = tuple(fixed)  # keys whose values a policy replaces or drops
        # Keys that are scanned themselves: a dropped entry's key goes with it.
        dropped = {key for key, policy in fixed if policy is None or policy == DROP}
        self.scanned_keys = tuple(key for key in keys if key not in dropped)
        self.keys_clean = False  # every scanned key is known clean (a property of the keys' text)


class _MapJob:
    """One distinct attribute dict of the batch (shared dicts are done once) and what changes in it."""

    __slots__ = ("source", "shape", "start", "changes", "renames", "counts", "out")

    def __init__(self, source: dict[str, str], shape: _Shape, start: int) -> None:
        self.source = source
        self.shape = shape
        self.start = start  # index of its first scanned value (shape.scan order) in the batch's values
        self.changes: dict[str, str | None] | None = None  # None as a value: drop the key
        self.renames: dict[str, str] | None = None  # key -> its redacted text (shared by the shape's maps)
        self.counts: Counts | None = None
        self.out: dict[str, str] | None = None  # the rewritten map, when something changed

    def result(self) -> dict[str, str]:
        changes, renames = self.changes or {}, self.renames
        if not renames:
            if not changes:
                return self.source
            return {k: changes.get(k, v) for k, v in self.source.items() if k not in changes or changes[k] is not None}
        # A redacted key must not overwrite another: "a.[EMAIL]" taken becomes "a.[EMAIL]#2".
        taken = {k for k in self.source if k not in renames and changes.get(k, "") is not None}
        out: dict[str, str] = {}
        for key, value in self.source.items():
            if key in changes:
                value = changes[key]
                if value is None:
                    continue
            new = renames.get(key)
            if new is not None:
                key, n = new, 2
                while key in taken:
                    key, n = f"{new}#{n}", n + 1
                taken.add(key)
            out[key] = value
        return out


class Redactor:
    """The stage callable: `redactor(batch) -> batch`. Built once at start-up; per batch it only remembers
    which attribute keys were clean."""

    def __init__(self, settings: RedactionSettings) -> None:
        if not settings.enabled:
            raise ValueError("redaction is disabled; build() returns None in that case")
        self.settings = settings
        self._hasher = Hasher(settings.hash_secret) if settings.hash_secret else None
        rules = [UserRule(r.name, r.regex, r.replacement, r.per_value) for r in settings.rules]
        self._scanner = Scanner(
            detectors=tuple(d for d in BUILTINS if d.type in settings.detectors),
            rules=rules,
            allow_values=settings.allow,
            allow_patterns=settings.allow_patterns,
            hash_builtins=settings.hash_builtins,
            hasher=self._hasher,
            remember_clean=_REMEMBER_CLEAN_CHARS,
        )
        self._min_len = self._scanner.min_len
        self._policies = KeyPolicies(settings.attributes, settings.default_policies, settings.content_keys)
        explicit = dict(settings.columns)
        self._column_policies = {c: self._policies.column_policy(c, explicit) for c in TEXT_COLUMNS}
        self._cf_services = settings.content_free_services
        self._cf_features = settings.content_free_features
        self._clean_keys: set[str] = set()
        self._clean_key_chars = 0
        self._shapes: dict[tuple[tuple[str, ...], bool], _Shape] = {}
        self._shape_chars = 0

    def remember_clean_key(self, key: str) -> None:
        if len(key) > _MAX_REMEMBERED_KEY_CHARS:
            return
        if self._clean_key_chars + len(key) > _MAX_CLEAN_KEY_CHARS:
            self._clean_keys.clear()
            self._clean_key_chars = 0
        self._clean_keys.add(key)
        self._clean_key_chars += len(key)

    def remember_shape(self, keys: tuple[str, ...], content_free: bool, shape: _Shape) -> None:
        chars = sum(map(len, keys))
        if chars > _MAX_SHAPE_CHARS:
            return
        if len(self._shapes) >= _MAX_SHAPES or self._shape_chars + chars > _MAX_SHAPE_CHARS:
            self._forget_shapes()
        self._shapes[(keys, content_free)] = shape
        self._shape_chars += chars

    def _forget_shapes(self) -> None:
        self._shapes.clear()
        self._shape_chars = 0

    def redact_text(self, text: str) -> tuple[str, Counts]:
        """Built-in detectors and user rules over one string (no key policies)."""
        result = self._scanner.scan(text)
        return (text, {}) if result is None else result

    def redacted(self, text: str) -> str:
        return self.redact_text(text)[0]

    def kinds_in(self, text: str) -> str:
        """What redact_text would replace in `text`, its kinds comma-separated ('' for nothing): for messages
        that refuse a value without showing it."""
        return ", ".join(sorted(self.redact_text(text)[1])) if text else ""

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        return _Run(self, batch).run()

    def scans_column(self, column: str) -> bool:
        """Whether `column`'s values are scanned (not kept, hashed, masked or dropped whole by a policy)."""
        return self._column_policies.get(column, SCAN) == SCAN

    def masks_column(self, column: str) -> bool:
        """Whether `column` keeps no trace of its values (masked or dropped whole)."""
        return self._column_policies.get(column, SCAN) in (REDACT, DROP)

    def stored_forms(self, column: str, value: str) -> set[str]:
        """The values `value` may have been stored as in `column` (`tracehouse forget` looks for each):
        as sent, and as this redactor rewrites it (a hash token, or the text with its findings replaced).
        A masked or dropped column keeps nothing that identifies the value, so only the raw form is given."""
        forms = {value}
        policy = self._column_policies.get(column, SCAN)
        if policy == HASH and self._hasher is not None:
            forms.add(self._hasher.token(value.encode("utf-8", "surrogatepass")))
        elif policy == SCAN:
            forms.add(self.redact_text(value)[0])
        return forms

    def _apply(self, policy: str, value: str) -> tuple[str, str]:
        """A whole-value policy: the replacement (unused for drop) and its count key."""
        if policy == DROP:
            return "", DROPPED
        if policy == HASH:
            return self._hasher.token(value.encode("utf-8", "surrogatepass")), HASHED
        return MASK, MASKED

    def _content_free(self, cols: dict[str, list[Any]], n: int) -> list[bool]:
        sampled = cols.get(CONTENT_SAMPLED)
        # Content sampling (the stage before) marks the spans whose content is not kept.
        flags = [decision == SAMPLED_DROPPED for decision in sampled] if sampled else [False] * n
        if not self._cf_services and not self._cf_features:
            return flags
        for column, selectors in (("ServiceName", self._cf_services), ("Feature", self._cf_features)):
            data = cols.get(column)
            if not selectors or data is None:
                continue
            decided: dict[str, bool] = {}
            for i, value in enumerate(data):
                hit = decided.get(value)
                if hit is None:
                    hit = decided[value] = any(fnmatchcase(value, s) for s in selectors)
                if hit:
                    flags[i] = True
        return flags


class _Run:
    """One batch: plan every column (collecting the strings to scan), scan them in one call, apply."""

    def __init__(self, redactor: Redactor, batch: SpanBatch) -> None:
        self.r = redactor
        self.cols = batch.columns
        self.n = len(batch)
        self.content_free = redactor._content_free(self.cols, self.n)
        self.any_content_free = any(self.content_free)
        self.values: list[str] = []  # every string to scan; equal ones are scanned once
        self.counts: list[Counts | None] = [None] * self.n
        self.new_columns: dict[str, list[Any]] = {}
        self.jobs: dict[int, _MapJob] = {}
        self.jobs_cf: dict[int, _MapJob] = {}
        # (column, nested, per span its job, or its list of jobs for nested columns, or None)
        self.map_jobs: list[tuple[str, bool, list[Any]]] = []
        self.shape_keys: dict[_Shape, list[tuple[str, int]]] = {}  # the keys each shape has queued
        self.key_slots: dict[str, int] = {}  # key -> its index in values
        self.text_sinks: list[tuple[str, bool, dict[str, int]]] = []  # (column, lists of str, value -> index)

    def run(self) -> SpanBatch:
        for name, data in self.cols.items():
            if name in UNSCANNED or not data:
                continue
            kind = column_kind(name, data)
            if kind == TEXT:
                self._plan_text(name, data)
            elif kind == TEXTS:
                self._plan_texts(name, data)
            elif kind in (MAP, MAPS):
                self._plan_maps(name, data, kind == MAPS)
        results = self.r._scanner.scan_values(self.values)
        for name, nested, distinct in self.text_sinks:
            self._apply_texts(name, nested, distinct, results)
        if self.map_jobs:
            self._apply_maps(results)
        columns = dict(self.cols)
        columns.update(self.new_columns)
        columns[REDACTION_COUNTS] = [c if c is not None else {} for c in self.counts]
        return SpanBatch(columns)

    # --- text columns -----------------------------------------------------------------------------

    def _count(self, i: int, counts: Counts) -> None:
        self.counts[i] = _add(self.counts[i], counts)

    def _policy(self, name: str) -> str:
        return self.r._column_policies.get(name, SCAN)

    def _plan_text(self, name: str, data: list[str | None]) -> None:
        policy = self._policy(name)
        drop_content = self.any_content_free and name in CONTENT_COLUMNS
        if policy == SCAN and not drop_content:
            self._queue(name, False, set(data))
            return
        if policy == KEEP and not drop_content:
            return
        out = list(data)
        changed = False
        queued: set[str] = set()
        content_free = self.content_free
        for i, text in enumerate(data):
            if not text:
                continue
            if drop_content and content_free[i]:
                out[i], key = "", CONTENT_DROPPED
            elif policy == SCAN:
                queued.add(text)
                continue
            elif policy == KEEP:
                continue
            else:
                out[i], key = self.r._apply(policy, text)
            changed = True
            self._count(i, {key: 1})
        if changed:
            self.new_columns[name] = out
        if queued:
            self._queue(name, False, queued)

    def _plan_texts(self, name: str, data: list[list[str]]) -> None:
        policy = self._policy(name)
        if policy == SCAN:
            self._queue(name, True, set(chain.from_iterable(data)))
            return
        if policy == KEEP:
            return
        # Nested columns (Events.*, Links.*) must keep one entry per event or link: drop empties them.
        nested = "." in name
        count_key = _POLICY_COUNTS[policy]
        out: list[list[str]] = []
        for i, texts in enumerate(data):
            present = sum(1 for text in texts if text) if texts else 0
            if not present:
                out.append(texts)
                continue
            if policy == DROP:
                out.append([""] * len(texts) if nested else [])
            else:
                out.append([self.r._apply(policy, text)[0] if text else text for text in texts])
            self._count(i, {count_key: present})
        self.new_columns[name] = out

    def _queue(self, name: str, lists: bool, texts: set[Any]) -> None:
        min_len = self.r._min_len
        values = self.values
        distinct: dict[str, int] = {}
        for text in texts:
            if text and len(text) >= min_len:
                distinct[text] = len(values)
                values.append(text)
        if distinct:
            self.text_sinks.append((name, lists, distinct))

    def _apply_texts(self, name: str, lists: bool, distinct: dict[str, int], results: list[Result]) -> None:
        found = {text: result for text, index in distinct.items() if (result := results[index]) is not None}
        if not found:
            return
        data = self.new_columns.get(name) or self.cols[name]
        out = list(data)
        for i, value in enumerate(data):
            if not value:
                continue
            if lists:
                if found.keys().isdisjoint(value):
                    continue
                replaced = []
                for text in value:
                    result = found.get(text)
                    if result is None:
                        replaced.append(text)
                    else:
                        replaced.append(result[0])
                        self._count(i, result[1])
                out[i] = replaced
            else:
                result = found.get(value)
                if result is not None:
                    out[i] = result[0]
                    self._count(i, result[1])
        self.new_columns[name] = out

    # --- attribute maps ---------------------------------------------------------------------------

    def _plan_maps(self, name: str, data: list[Any], nested: bool) -> None:
        job_for = self._job_for
        if not self.any_content_free:
            if nested:
                planned = [[job_for(s, False) for s in item if s] if item else None for item in data]
            else:
                planned = [job_for(item, False) if item else None for item in data]
        else:
            cf = self.content_free
            if nested:
                planned = [[job_for(s, cf[i]) for s in item if s] if item else None for i, item in enumerate(data)]
            else:
                planned = [job_for(item, cf[i]) if item else None for i, item in enumerate(data)]
        self.map_jobs.append((name, nested, planned))

    def _job_for(self, source: dict[str, str], content_free: bool) -> _MapJob:
        cache = self.jobs_cf if content_free else self.jobs
        job = cache.get(id(source))
        if job is None:
            job = cache[id(source)] = self._plan_map(source, content_free)
        return job

    def _shape(self, keys: tuple[str, ...], content_free: bool) -> _Shape:
        shapes = self.r._shapes
        shape = shapes.get((keys, content_free))
        if shape is None:
            shape = _Shape(keys, self.r._policies, content_free)
            self.r.remember_shape(keys, content_free, shape)
        return shape

    def _plan_map(self, source: dict[str, str], content_free: bool) -> _MapJob:
        shape = self._shape(tuple(source), content_free)
        values = self.values
        job = _MapJob(source, shape, len(values))
        # Every value of a scanned key is queued, short ones too (one C-level extend rather than a test per
        # value): the scanner skips values too short to hold a finding after removing duplicates.
        values.extend(map(source.__getitem__, shape.scan))
        if shape.fixed:
            apply, changes, counts = self.r._apply, {}, None
            for key, policy in shape.fixed:
                if policy is None:
                    changes[key], count_key = None, CONTENT_DROPPED
                else:
                    replaced, count_key = apply(policy, source[key])
                    changes[key] = None if policy == DROP else replaced
                counts = _add(counts, {count_key: 1})
            job.changes, job.counts = changes, counts
        if not shape.keys_clean and shape not in self.shape_keys:
            self.shape_keys[shape] = self._queue_keys(shape)
        return job

    def _queue_keys(self, shape: _Shape) -> list[tuple[str, int]]:
        """The keys of a shape not yet known clean, queued once per batch whatever the number of maps."""
        r, values, slots = self.r, self.values, self.key_slots
        clean, min_len = r._clean_keys, r._min_len
        pending = []
        for key in shape.scanned_keys:
            if key in clean:
                continue
            if len(key) >= min_len:
                index = slots.get(key)
                if index is None:
                    index = slots[key] = len(values)
                    values.append(key)
                pending.append((key, index))
            else:
                r.remember_clean_key(key)
        if not pending:
            shape.keys_clean = True
        return pending

    def _apply_maps(self, results: list[Result]) -> None:
        key_results: dict[_Shape, tuple[dict[str, str], Counts | None]] = {}
        for shape, pending in self.shape_keys.items():
            renames: dict[str, str] = {}
            counts: Counts | None = None
            for key, index in pending:
                result = results[index]
                if result is None:
                    self.r.remember_clean_key(key)
                else:
                    renames[key] = result[0]
                    counts = _add(counts, result[1])
            if renames:
                key_results[shape] = (renames, counts)

        counted = False
        for job in (*self.jobs.values(), *self.jobs_cf.values()):
            shape = job.shape
            n = len(shape.scan)
            if n:
                found = results[job.start : job.start + n]
                if any(found):
                    changes = job.changes if job.changes is not None else {}
                    for key, result in zip(shape.scan, found, strict=True):
                        if result is not None:
                            changes[key] = result[0]
                            job.counts = _add(job.counts, result[1])
                    job.changes = changes
            renamed = key_results.get(shape)
            if renamed is not None:
                job.renames = renamed[0]
                job.counts = _add(job.counts, renamed[1])
            if job.changes or job.renames:
                job.out = job.result()
            counted = counted or job.counts is not None

        for name, nested, planned in self.map_jobs:
            if nested:
                if any(job.out is not None for jobs in planned if jobs for job in jobs):
                    self.new_columns[name] = [
                        _replaced_list(sources, jobs) for sources, jobs in zip(self.cols[name], planned, strict=True)
                    ]
            elif any(job is not None and job.out is not None for job in planned):
                self.new_columns[name] = [
                    source if job is None or job.out is None else job.out
                    for source, job in zip(self.cols[name], planned, strict=True)
                ]
            if counted:
                for i, jobs in enumerate(planned):
                    if jobs is None:
                        continue
                    for job in jobs if nested else (jobs,):
                        if job.counts:
                            self._count(i, job.counts)


def _replaced_list(sources: list[dict[str, str]], jobs: list[_MapJob] | None) -> list[dict[str, str]]:
    """A span's list of maps (events, links) with the rewritten ones in place; empty maps have no job."""
    if not jobs or all(job.out is None for job in jobs):
        return sources
    out = iter(job.out if job.out is not None else job.source for job in jobs)
    return [next(out) if source else source for source in sources]


def build(config: Config) -> Redactor | None:
    """The stage for this config, or None when redaction is off and nothing else needs it.

    With redaction off but content sampling on, dropped content must still go: the stage then runs
    with nothing to detect and only removes what sampling dropped."""
    if config.redaction.enabled:
        return Redactor(config.redaction)
    if config.sampling.active:
        return Redactor(RedactionSettings(detectors=(), default_policies=False))
    return None
