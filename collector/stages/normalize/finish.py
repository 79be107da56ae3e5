"""Finish reasons: the OTel GenAI values (stop, length, content_filter, tool_call, error) for every provider."""

from __future__ import annotations

import re

from tracehouse.collector.stages.normalize import limits
from tracehouse.collector.stages.normalize.values import cut

_REASONS: dict[str, str] = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "complete": "stop",
    "completed": "stop",
    "finish": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_length": "length",
    "token_limit": "length",
    "tool_call": "tool_call",
    "tool_calls": "tool_call",
    "tool-calls": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "content_filter": "content_filter",
    "content-filter": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "blocklist": "content_filter",
    "prohibited_content": "content_filter",
    "spii": "content_filter",
    "refusal": "content_filter",
    "guardrail_intervened": "content_filter",
    "error": "error",
}


_WORD_LIKE = re.compile(r"[A-Za-z][a-z_]{0,31}|[A-Z][A-Z_]{0,31}")


def normalize_finish_reason(raw: str | None) -> str:
    """'end_turn' -> stop, 'tool_calls' -> tool_call, 'SAFETY' -> content_filter; unknown ones lower-cased
    when short and word-like ('MAX_TOKENS'-style), else as sent, cut like every short column: a lower-cased
    key or e-mail would pass redaction, which runs later and matches case."""
    if not raw:
        return ""
    stripped = raw.strip()
    reason = stripped.lower()
    known = _REASONS.get(reason)
    if known is not None:
        return known
    return reason if _WORD_LIKE.fullmatch(stripped) else cut(stripped, limits.MAX_SHORT_CHARS)
