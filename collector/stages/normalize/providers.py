"""LlmProvider: the provider id of a span, one spelling per company or platform (columns.provider_id,
the one alias table, which pricing also folds names with)."""

from __future__ import annotations

from tracehouse.collector.columns import provider_id
from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.values import cut


def normalize_provider(raw: str | None) -> str:
    """The provider id for a raw name ('openai.chat' -> openai, 'Anthropic' -> anthropic, 'acme' -> acme),
    bounded like every short column; '' for none."""
    if not raw:
        return ""
    return cut(provider_id(raw), limits.MAX_SHORT_CHARS)
