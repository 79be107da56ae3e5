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

from typing import Any

from tracehouse.collector.stages.normalize.mapper import Fields

UINT64_MAX = 2**64 - 1


def token_columns(fields: Fields) -> dict[str, Any]:
    input_tokens = fields.get("InputTokens")
    output_tokens = fields.get("OutputTokens")
    total_tokens = fields.get("TotalTokens")
    cache_read = fields.get("CacheReadTokens")
    cache_write = fields.get("CacheWriteTokens")
    cached = (cache_read or 0) + (cache_write or 0)
    if input_tokens is not None and input_tokens < cached:
        input_tokens = min(input_tokens + cached, UINT64_MAX)
        total_tokens = None
    if total_tokens is None and input_tokens is not None and output_tokens is not None:
        total_tokens = min(input_tokens + output_tokens, UINT64_MAX)
    return {
        "InputTokens": input_tokens,
        "OutputTokens": output_tokens,
        "TotalTokens": total_tokens,
        "CacheReadTokens": cache_read,
        "CacheWriteTokens": cache_write,
        "ReasoningTokens": fields.get("ReasoningTokens"),
        "InputAudioTokens": fields.get("InputAudioTokens"),
        "OutputAudioTokens": fields.get("OutputAudioTokens"),
    }
