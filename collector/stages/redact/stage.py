"""The redaction stage: every string a span carries goes through policies and the scanner, and each
span gets its RedactionCounts. Runs after normalize and price, before anything is spooled or stored."""

from __future__ import annotations

import os
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import Config
from tracehouse.collector.stages.redact.detectors import BUILTINS
from tracehouse.collector.stages.redact.policy import CONTENT_COLUMNS, DROP, HASH, KEEP, REDACT, KeyPolicies
from tracehouse.collector.stages.redact.scanner import Counts, Scanner, UserRule
from tracehouse.collector.stages.redact.settings import TEXT_COLUMNS, RedactionSettings, parse_settings
from tracehouse.collector.stages.redact.tokens import Hasher

COUNTS_COLUMN = "RedactionCounts"
SAMPLED_COLUMN, DROPPED_BY_SAMPLING = "ContentSampled", "dropped"
MASK = "[REDACTED]"
# Count keys for whole values handled by a policy rather than found by a detector.
DROPPED, HASHED, MASKED, CONTENT_DROPPED = "dropped", "hashed", "masked", "content_dropped"

_MAP_COLUMNS = ("SpanAttributes", "ResourceAttributes")
_NESTED_MAP_COLUMNS = ("Events.Attributes", "Links.Attributes")
# No built-in detector matches fewer bytes than this ("a@b.co", "1.1.1.1" is 7).
_MIN_SCAN_LEN = 6


def _add(target: Counts | None, counts: Counts) -> Counts:
    if target is None:
        return dict(counts)
    for key, n in counts.items():
        target[key] = target.get(key, 0) + n
    return target


class _MapJob:
    """One distinct attribute dict of the batch (shared dicts are done once) and what changes in it."""

    __slots__ = ("source", "content_free", "changes", "counts", "pending")

    def __init__(self, source: dict[str, str], content_free: bool) -> None:
        self.source = source
        self.content_free = content_free
        self.changes: dict[str, str | None] = {}  # None: drop the key
        self.counts: Counts | None = None
        self.pending: list[tuple[str, int]] = []  # (key, index into the scanned values)

    def result(self) -> dict[str, str]:
        if not self.changes:
            return self.source
        changes = self.changes
        return {k: changes.get(k, v) for k, v in self.source.items() if k not in changes or changes[k] is not None}


class Redactor:
    """The stage callable: `redactor(batch) -> batch`. Built once at start-up; holds no per-batch state."""

    def __init__(self, settings: RedactionSettings) -> None:
        if not settings.enabled:
            raise ValueError("redaction is disabled; build_redactor() returns None in that case")
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
        self._column_policies = {c: self._policies.column_policy(c, dict(settings.columns)) for c in TEXT_COLUMNS}
        self._cf_services = settings.content_free_services
        self._cf_features = settings.content_free_features

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Redactor | None:
        return build_redactor(config, environ)

    def redact_text(self, text: str) -> tuple[str, Counts]:
        """Built-in detectors and user rules over one string (no key policies)."""
        result = self._scanner.scan(text)
        return (text, {}) if result is None else result

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        cols = batch.columns
        n = len(batch)
        content_free = self._content_free(cols, n)
        values: list[str] = []
        jobs: dict[int, _MapJob] = {}
        jobs_cf: dict[int, _MapJob] = {}
        span_jobs: list[list[_MapJob]] = [[] for _ in range(n)]

        def job_for(source: dict[str, str], cf: bool) -> _MapJob:
            cache = jobs_cf if cf else jobs
            job = cache.get(id(source))
            if job is None:
                job = cache[id(source)] = self._plan_map(source, cf, values)
            return job

        for name in _MAP_COLUMNS:
            for i, source in enumerate(cols.get(name, ())):
                if source:
                    span_jobs[i].append(job_for(source, content_free[i]))
        for name in _NESTED_MAP_COLUMNS:
            for i, sources in enumerate(cols.get(name, ())):
                for source in sources:
                    if source:
                        span_jobs[i].append(job_for(source, content_free[i]))

        counts: list[Counts | None] = [None] * n
        column_sinks: list[tuple[str, int, int]] = []  # (column, span, value index)
        new_columns: dict[str, list[Any]] = {}
        for column in TEXT_COLUMNS:
            data = cols.get(column)
            if data is None:
                continue
            policy = self._column_policies[column]
            if policy == KEEP and column not in CONTENT_COLUMNS:
                continue
            out = None
            for i, text in enumerate(data):
                if not text:
                    continue
                if content_free[i] and column in CONTENT_COLUMNS:
                    replaced, key = "", CONTENT_DROPPED
                elif policy == KEEP:
                    continue
                elif policy in (DROP, REDACT, HASH):
                    replaced, key = self._apply(policy, text)
                elif len(text) >= self._min_len:
                    column_sinks.append((column, i, len(values)))
                    values.append(text)
                    continue
                else:
                    continue
                if out is None:
                    out = new_columns[column] = list(data)
                out[i] = replaced
                counts[i] = _add(counts[i], {key: 1})

        results = self._scanner.scan_values(values)

        for column, i, index in column_sinks:
            result = results[index]
            if result is not None:
                out = new_columns.get(column)
                if out is None:
                    out = new_columns[column] = list(cols[column])
                out[i] = result[0]
                counts[i] = _add(counts[i], result[1])

        changed_jobs = []
        for job in (*jobs.values(), *jobs_cf.values()):
            for key, index in job.pending:
                result = results[index]
                if result is not None:
                    job.changes[key] = result[0]
                    job.counts = _add(job.counts, result[1])
            if job.changes:
                changed_jobs.append(job)

        if changed_jobs:
            replaced_maps = {id(job.source): job.result() for job in changed_jobs if not job.content_free}
            replaced_cf = {id(job.source): job.result() for job in changed_jobs if job.content_free}
            for name in _MAP_COLUMNS:
                data = cols.get(name)
                if data is not None:
                    new_columns[name] = [
                        (replaced_cf if content_free[i] else replaced_maps).get(id(source), source)
                        for i, source in enumerate(data)
                    ]
            for name in _NESTED_MAP_COLUMNS:
                data = cols.get(name)
                if data is not None:
                    new_columns[name] = [
                        [(replaced_cf if content_free[i] else replaced_maps).get(id(s), s) for s in sources]
                        if sources
                        else sources
                        for i, sources in enumerate(data)
                    ]

        for i, span_job_list in enumerate(span_jobs):
            for job in span_job_list:
                if job.counts:
                    counts[i] = _add(counts[i], job.counts)

        columns = dict(cols)
        columns.update(new_columns)
        columns[COUNTS_COLUMN] = [c if c is not None else {} for c in counts]
        return SpanBatch(columns)

    def _plan_map(self, source: dict[str, str], content_free: bool, values: list[str]) -> _MapJob:
        job = _MapJob(source, content_free)
        policies = self._policies
        min_len = self._min_len
        for key, value in source.items():
            if content_free and policies.is_content(key):
                job.changes[key] = None
                job.counts = _add(job.counts, {CONTENT_DROPPED: 1})
                continue
            policy = policies.policy(key)
            if policy == "scan":
                if len(value) >= min_len:
                    job.pending.append((key, len(values)))
                    values.append(value)
            elif policy != KEEP:
                replaced, count_key = self._apply(policy, value)
                job.changes[key] = None if policy == DROP else replaced
                job.counts = _add(job.counts, {count_key: 1})
        return job

    def _apply(self, policy: str, value: str) -> tuple[str, str]:
        """A whole-value policy: the replacement (unused for drop) and its count key."""
        if policy == DROP:
            return "", DROPPED
        if policy == HASH:
            return self._hasher.token(value.encode("utf-8", "surrogatepass")), HASHED
        return MASK, MASKED

    def _content_free(self, cols: dict[str, list[Any]], n: int) -> list[bool]:
        sampled = cols.get(SAMPLED_COLUMN)
        # Content sampling (the stage before) marks the spans whose content is not kept.
        flags = [decision == DROPPED_BY_SAMPLING for decision in sampled] if sampled else [False] * n
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


def build_redactor(config: Config, environ: Mapping[str, str] | None = None) -> Redactor | None:
    """The stage for this config, or None when redaction is turned off."""
    settings = parse_settings(config.extra.get("redaction"), os.environ if environ is None else environ)
    return Redactor(settings) if settings.enabled else None
