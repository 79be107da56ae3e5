"""The normalize stage: every span of a batch gets the typed LLM columns.

Spans without an attribute key (or event name) of any convention take the plain path: their LLM
columns keep the empty values, and only the identity and error columns, which every span has, are
looked up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.stages.normalize.columns import empty_columns
from tracehouse.collector.stages.normalize.errors import error_fields
from tracehouse.collector.stages.normalize.finalize import llm_columns
from tracehouse.collector.stages.normalize.identity import (
    SPAN_KEYS,
    resolve_feature,
    resolve_session,
    resolve_tenant,
    resolve_user,
)
from tracehouse.collector.stages.normalize.mapper import Fields, has_prefix, key_text, needles
from tracehouse.collector.stages.normalize.registry import ATTRIBUTE_PREFIXES, EVENT_PREFIXES, MAPPERS
from tracehouse.collector.stages.normalize.span import SpanView

log = logging.getLogger(__name__)

_ATTRIBUTE_NEEDLES = needles(ATTRIBUTE_PREFIXES)
_EVENT_NEEDLES = needles(EVENT_PREFIXES)


class StageStats:
    """Spans whose LLM fields could not be read because of a bug here; they are stored with empty fields."""

    failures = 0


def has_llm_keys(keys: str, event_keys: str) -> bool:
    return has_prefix(keys, _ATTRIBUTE_NEEDLES) or (bool(event_keys) and has_prefix(event_keys, _EVENT_NEEDLES))


def merged_fields(span: SpanView) -> Fields:
    """Every applicable mapper's fields; per field, the first mapper in precedence order wins."""
    merged: Fields = {}
    for mapper in MAPPERS:
        if mapper.applies(span):
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
    users, sessions, tenants, features = out["UserId"], out["SessionId"], out["TenantId"], out["Feature"]
    error_types, error_messages = out["ErrorType"], out["ErrorMessage"]

    for row in range(rows):
        attrs = span_attrs[row]
        resource = resource_attrs[row]
        names = event_names[row]
        metadata: Mapping[str, Any] | None = None
        keys = key_text(attrs)
        event_keys = key_text(names) if names else ""
        if has_llm_keys(keys, event_keys):
            try:
                span = SpanView(
                    attrs, resource, starts[row], names, event_attrs[row], event_times[row], keys, event_keys
                )
                fields = merged_fields(span)
                metadata = fields.get("Metadata")
                for name, value in llm_columns(fields).items():
                    out[name][row] = value
            except Exception:  # a bug here must cost one span its LLM fields, not the batch
                StageStats.failures += 1
                log.exception("normalize: could not read the LLM fields of span %s", source["SpanId"][row])
                metadata = None
        if metadata is not None or not SPAN_KEYS.isdisjoint(attrs):
            users[row] = resolve_user(attrs, metadata)
            sessions[row] = resolve_session(attrs, metadata)
        tenants[row] = resolve_tenant(attrs, resource, metadata)
        features[row] = resolve_feature(attrs, resource, metadata)
        status = status_codes[row]
        if status == "Error" or names or "error.type" in attrs:
            error_types[row], error_messages[row] = error_fields(
                status, status_messages[row], names, event_attrs[row], attrs
            )
    source.update(out)
    return batch
