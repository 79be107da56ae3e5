"""Normalization fixes the conformance suite (tests/test_conformance.py) found, each pinned by the attribute
shape the instrumentation really writes (captured from the suite's run)."""

from __future__ import annotations

from normalize_support import normalized

# pydantic-ai-slim 2.68.0, a model request span against OpenAI Chat Completions (usage.py
# RequestUsage.opentelemetry_attributes: the provider's usage details as gen_ai.usage.details.*).
PYDANTIC_AI_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 88,
    "gen_ai.usage.output_tokens": 30,
    "gen_ai.usage.details.accepted_prediction_tokens": 0,
    "gen_ai.usage.details.audio_tokens": 0,
    "gen_ai.usage.details.rejected_prediction_tokens": 0,
}


def test_pydantic_ai_reasoning_tokens_are_read_from_its_usage_details():
    row = normalized({**PYDANTIC_AI_CHAT, "gen_ai.usage.details.reasoning_tokens": 12})
    assert (row["InputTokens"], row["OutputTokens"], row["ReasoningTokens"]) == (88, 30, 12)


def test_pydantic_ai_zero_reasoning_tokens_are_zero_not_unknown():
    assert normalized({**PYDANTIC_AI_CHAT, "gen_ai.usage.details.reasoning_tokens": 0})["ReasoningTokens"] == 0


def test_the_semconv_reasoning_count_wins_over_the_details():
    attrs = {**PYDANTIC_AI_CHAT, "gen_ai.usage.reasoning.output_tokens": 7, "gen_ai.usage.details.reasoning_tokens": 12}
    assert normalized(attrs)["ReasoningTokens"] == 7


def test_without_details_reasoning_stays_unknown():
    assert normalized(PYDANTIC_AI_CHAT)["ReasoningTokens"] is None
