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
# No built-in detector matches fewer bytes than this ("a@b.co", "1.1.1.1" is 7).
_MIN_SCAN_LEN = 6
# Attribute keys known to hold nothing, remembered across batches (keys repeat in every span).
_MAX_CLEAN_KEYS = 100_000


def _add(target: Counts | None, counts: Counts) -> Counts:
    if target is None:
        return dict(counts)
    for key, n in counts.items():
        target[key] = target.get(key, 0) + n
    return target


class _MapJob:
    """One distinct attribute dict of the batch (shared dicts are done once) and what changes in it."""

    __slots__ = ("source", "content_free", "changes", "renames", "counts", "pending", "pending_keys")

    def __init__(self, source: dict[str, str], content_free: bool) -> None:
        self.source = source
        self.content_free = content_free
        self.changes: dict[str, str | None] = {}  # None: drop the key
        self.renames: dict[str, str] = {}  # key -> its redacted text
        self.counts: Counts | None = None
        self.pending: list[tuple[str, int]] = []  # (key, index into the scanned values) of values
        self.pending_keys: list[tuple[str, int]] = []  # the same for keys

    def result(self) -> dict[str, str]:
        changes, renames = self.changes, self.renames
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
        )
        self._min_len = 1 if rules else _MIN_SCAN_LEN
        self._policies = KeyPolicies(settings.attributes, settings.default_policies, settings.content_keys)
        explicit = dict(settings.columns)
        self._column_policies = {c: self._policies.column_policy(c, explicit) for c in TEXT_COLUMNS}
        self._cf_services = settings.content_free_services
        self._cf_features = settings.content_free_features
        self._clean_keys: set[str] = set()

    def redact_text(self, text: str) -> tuple[str, Counts]:
        """Built-in detectors and user rules over one string (no key policies)."""
        result = self._scanner.scan(text)
        return (text, {}) if result is None else result

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        return _Run(self, batch).run()

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
        self.span_jobs: list[list[_MapJob]] | None = None
        self.map_columns: list[tuple[str, bool]] = []  # (column, nested lists of maps)
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
        if self.span_jobs is not None:
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
        if self.span_jobs is None:
            self.span_jobs = [[] for _ in range(self.n)]
        self.map_columns.append((name, nested))
        span_jobs, content_free = self.span_jobs, self.content_free
        for i, item in enumerate(data):
            if not item:
                continue
            for source in item if nested else (item,):
                if source:
                    span_jobs[i].append(self._job_for(source, content_free[i]))

    def _job_for(self, source: dict[str, str], content_free: bool) -> _MapJob:
        cache = self.jobs_cf if content_free else self.jobs
        job = cache.get(id(source))
        if job is None:
            job = cache[id(source)] = self._plan_map(source, content_free)
        return job

    def _plan_map(self, source: dict[str, str], content_free: bool) -> _MapJob:
        job = _MapJob(source, content_free)
        r = self.r
        policies, min_len, values = r._policies, r._min_len, self.values
        for key, value in source.items():
            if content_free and policies.is_content(key):
                job.changes[key] = None
                job.counts = _add(job.counts, {CONTENT_DROPPED: 1})
                continue
            policy = policies.policy(key)
            if policy == SCAN:
                if len(value) >= min_len:
                    job.pending.append((key, len(values)))
                    values.append(value)
            elif policy != KEEP:
                replaced, count_key = r._apply(policy, value)
                job.changes[key] = None if policy == DROP else replaced
                job.counts = _add(job.counts, {count_key: 1})
        clean = r._clean_keys
        if not clean.issuperset(source):
            for key in source.keys() - clean:
                if job.changes.get(key, "") is None:
                    continue  # dropped: its key goes with it
                if len(key) >= min_len:
                    job.pending_keys.append((key, len(values)))
                    values.append(key)
                elif len(clean) < _MAX_CLEAN_KEYS:
                    clean.add(key)
        return job

    def _apply_maps(self, results: list[Result]) -> None:
        clean = self.r._clean_keys
        changed_jobs = []
        for job in (*self.jobs.values(), *self.jobs_cf.values()):
            for key, index in job.pending:
                result = results[index]
                if result is not None:
                    job.changes[key] = result[0]
                    job.counts = _add(job.counts, result[1])
            for key, index in job.pending_keys:
                result = results[index]
                if result is None:
                    if len(clean) < _MAX_CLEAN_KEYS:
                        clean.add(key)
                else:
                    job.renames[key] = result[0]
                    job.counts = _add(job.counts, result[1])
            if job.changes or job.renames:
                changed_jobs.append(job)

        if changed_jobs:
            replaced_maps = {id(job.source): job.result() for job in changed_jobs if not job.content_free}
            replaced_cf = {id(job.source): job.result() for job in changed_jobs if job.content_free}
            content_free = self.content_free
            for name, nested in self.map_columns:
                data = self.cols[name]
                if nested:
                    self.new_columns[name] = [
                        [(replaced_cf if content_free[i] else replaced_maps).get(id(s), s) for s in sources]
                        if sources
                        else sources
                        for i, sources in enumerate(data)
                    ]
                else:
                    self.new_columns[name] = [
                        (replaced_cf if content_free[i] else replaced_maps).get(id(source), source)
                        for i, source in enumerate(data)
                    ]

        for i, span_job_list in enumerate(self.span_jobs):
            for job in span_job_list:
                if job.counts:
                    self._count(i, job.counts)


def build(config: Config) -> Redactor | None:
    """The stage for this config, or None when redaction is off and nothing else needs it.

    With redaction off but content sampling on, dropped content must still go: the stage then runs
    with nothing to detect and only removes what sampling dropped."""
    if config.redaction.enabled:
        return Redactor(config.redaction)
    if config.sampling.active:
        return Redactor(RedactionSettings(detectors=(), default_policies=False))
    return None
