"""Retain: while content retention is on, give each span a copy of its attributes without the content
keys (SpanMetadataAttributes), which SpanAttributes falls back to when its content expires
(schema/0015_content_retention.sql): custom metadata attributes outlive the prompts beside them.

It runs after redaction and only copies what redaction left in SpanAttributes (the content keys, the
one place for which is columns.CONTENT_KEYS plus `[redaction.content_free] keys`, are left out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.columns import SPAN_METADATA_ATTRIBUTES, ContentKeys

if TYPE_CHECKING:
    from tracehouse.collector.config import Config


class MetadataAttributes:
    """The stage: the SpanMetadataAttributes column."""

    def __init__(self, extra_content_keys: tuple[str, ...] = ()) -> None:
        self.is_content = ContentKeys(extra_content_keys)

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        attributes = batch.columns.get("SpanAttributes") or [{}] * len(batch)
        is_content = self.is_content
        batch.columns[SPAN_METADATA_ATTRIBUTES] = [
            {key: value for key, value in attrs.items() if not is_content(key)} if attrs else {} for attrs in attributes
        ]
        return batch


def build(config: Config) -> MetadataAttributes | None:
    """The stage while some span's content may expire; None otherwise (nothing to fall back to)."""
    if not config.retention.content_expires:
        return None
    return MetadataAttributes(config.redaction.content_keys)
