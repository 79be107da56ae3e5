"""The normalize stage: every span of a batch gets the typed LLM columns.

Spans without an attribute key (or event name) of any convention take the plain path: their LLM
columns keep the empty values, and only the identity and error columns, which every span has, are
looked up. An LLM span too writes only the columns it has a value for (`finalize.write_llm_columns`).

This runs on every span, in Python, so its cost is counted in calls and lookups per span
(bench/bench_normalize.py). What depends on the set of keys alone (which mappers apply, where the
indexed lists are) is worked out once per distinct key set (`dispatch`, `flat.IndexedFamilies`); mappers
read present attributes and build only the fields they find; finalize converts only those.
tests/test_normalize_fast_paths.py holds these shortcuts to the results of the long way round.

A bug in a mapper costs the span its LLM fields, not the batch: the span is stored with empty LLM
columns (its identity and error columns still set) and the error is logged with the span's id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import TENANT_ID
from tracehouse.collector.stages.normalize.columns import clear_row, empty_columns
from tracehouse.collector.stages.normalize.dispatch import Dispatch
from tracehouse.collector.stages.normalize.errors import error_fields
from tracehouse.collector.stages.normalize.fast import NOT_TAKEN, FastPath
from tracehouse.collector.stages.normalize.finalize import write_llm_columns
from tracehouse.collector.stages.normalize.identity import resolve_identity
from tracehouse.collector.stages.normalize.mapper import Fields, Mapper, key_text
from tracehouse.collector.stages.normalize.openinference import MAPPER as OPENINFERENCE
from tracehouse.collector.stages.normalize.registry import MAPPERS
from tracehouse.collector.stages.normalize.span import SpanView
from tracehouse.collector.stages.normalize.values import BEFORE_CUT

log = logging.getLogger(__name__)

_DISPATCH = Dispatch()
_FAST = FastPath(OPENINFERENCE)


def merged_fields(span: SpanView, mappers: Sequence[Mapper]) -> Fields:
    """The fields of `mappers` (those that apply, in precedence order); per field, the first mapper wins.
    With one mapper (the usual case), its dict, fresh from extract, is the result."""
    merged = mappers[0].extract(span)
    for mapper in mappers[1:]:
        for name, value in mapper.extract(span).items():
            merged.setdefault(name, value)
    return merged


def normalize(batch: SpanBatch) -> SpanBatch:
    """Add the columns of schema/0002_llm_columns.sql to `batch` (one value per span) and return it."""
    source = batch.columns
    rows = len(batch)
    out = empty_columns(rows)
    span_attrs, resource_attrs = source["SpanAttributes"], source["ResourceAttributes"]
    starts, status_codes, status_messages = source["Timestamp"], source["StatusCode"], source["StatusMessage"]
    event_names, event_attrs = source["Events.Name"], source["Events.Attributes"]
    event_times = source["Events.Timestamp"]
    users, sessions, tenants, features = out["UserId"], out["SessionId"], out[TENANT_ID], out["Feature"]
    error_types, error_messages = out["ErrorType"], out["ErrorMessage"]

    for row in range(rows):
        attrs = span_attrs[row]
        resource = resource_attrs[row]
        names = event_names[row]
        metadata: Mapping[str, Any] | None = None
        keys = key_text(attrs)
        event_keys = key_text(names) if names else ""
        mappers = _DISPATCH.applicable(MAPPERS, keys, event_keys)
        if mappers:
            try:
                # A plain OpenInference chat span: written straight into the columns (fast.py).
                plan = _FAST.plan(keys) if len(mappers) == 1 and mappers[0] is _FAST.mapper else None
                taken = (
                    NOT_TAKEN
                    if plan is None
                    else _FAST.write(plan, attrs, out, row, names, event_times[row], starts[row])
                )
                if taken is not NOT_TAKEN:
                    metadata = taken  # type: ignore[assignment]
                else:
                    span = SpanView(
                        attrs, resource, starts[row], names, event_attrs[row], event_times[row], keys, event_keys
                    )
                    fields = mappers[0].extract(span) if len(mappers) == 1 else merged_fields(span, mappers)
                    metadata = fields.get("Metadata")
                    write_llm_columns(fields, out, row)
            except Exception:  # a bug here must cost one span its LLM fields, not the batch
                log.exception("normalize: could not read the LLM fields of span %s", source["SpanId"][row])
                metadata = None
                clear_row(out, row)
        users[row], sessions[row], tenants[row], features[row] = resolve_identity(attrs, resource, metadata)
        status = status_codes[row]
        if status == "Error" or names or "error.type" in attrs:
            error_types[row], error_messages[row] = error_fields(
                status, status_messages[row], names, event_attrs[row], attrs
            )
    source.update(out)
    return batch


class RedactedCuts:
    """normalize, with every value it cuts redacted whole first (values.BEFORE_CUT): the stage when redaction
    is on. Cuts are rare (a text past 128 K characters, an id past 256), so the hot path pays nothing."""

    __name__ = "normalize"

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        token = BEFORE_CUT.set(self._redact)
        try:
            return normalize(batch)
        finally:
            BEFORE_CUT.reset(token)
