"""Token semantics, in one place.

InputTokens includes cached tokens (as OpenAI and the GenAI convention count them); CacheReadTokens
and CacheWriteTokens are breakdowns of InputTokens, ReasoningTokens of OutputTokens; TotalTokens is
InputTokens + OutputTokens when the span does not give it.

Every supported convention defines its input count that way, but instrumentations of providers that
report input without the cache (Anthropic's `input_tokens`) have shipped exclusive counts under those
names. An input count smaller than its own cache breakdown cannot be inclusive, so it is converted:
the cache tokens are added, and the total is recomputed from the converted input.
"""

from __future__ import annotations

from tracehouse.collector.stages.normalize.mapper import Fields

UINT64_MAX = 2**64 - 1


def input_and_total(fields: Fields) -> tuple[int | None, int | None]:
    """InputTokens and TotalTokens as stored, from a span's fields (the other counts are stored as they are):
    an exclusive input count is converted, and a missing or invalidated total is Input + Output."""
    input_tokens = fields.get("InputTokens")
    total_tokens = fields.get("TotalTokens")
    if input_tokens is None:
        return None, total_tokens
    cached = fields.get("CacheReadTokens", 0) + fields.get("CacheWriteTokens", 0)
    if input_tokens < cached:
        input_tokens = min(input_tokens + cached, UINT64_MAX)
        total_tokens = None
    if total_tokens is None:
        output_tokens = fields.get("OutputTokens")
        if output_tokens is not None:
            total_tokens = min(input_tokens + output_tokens, UINT64_MAX)
    return input_tokens, total_tokens
