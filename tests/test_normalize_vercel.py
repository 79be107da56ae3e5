"""The Vercel AI SDK's usage counts as its versions write them (issue 12): AI SDK 6's `inputTokenDetails` and
`outputTokenDetails`, AI SDK 7's `@ai-sdk/otel` supplemental usage beside gen_ai.*, and the cache writes older
versions leave only in `ai.response.providerMetadata`; and what malformed ones give (a row, never a crash).

The attribute sets are the ones the real SDKs wrote in tests/test_conformance.py's run (ai 6.0.326 with
@ai-sdk/anthropic 3.0.140 and @ai-sdk/openai 3.0.141; ai 7.0.173 with @ai-sdk/otel 1.0.173), cut to the keys
that matter here.
"""

from __future__ import annotations

import orjson
import pytest
from normalize_support import loads, mapper_failures, normalized

# An AI SDK 6 Anthropic call that wrote the system prompt to the cache (`ai.generateText.doGenerate`).
V6_ANTHROPIC_CACHE_WRITE = {
    "ai.operationId": "ai.generateText.doGenerate",
    "ai.model.id": "claude-haiku-4-5",
    "ai.model.provider": "anthropic.messages",
    "ai.prompt.messages": '[{"role":"system","content":"Be brief."},'
    '{"role":"user","content":[{"type":"text","text":"What is the capital of France?"}]}]',
    "ai.response.model": "claude-haiku-4-5-20251001",
    "ai.response.text": "Paris.",
    "ai.response.finishReason": "stop",
    "ai.response.providerMetadata": '{"anthropic":{"usage":{"input_tokens":11,"output_tokens":12,'
    '"cache_creation_input_tokens":1450,"cache_read_input_tokens":0},"cacheCreationInputTokens":1450}}',
    "ai.usage.cachedInputTokens": 0,
    "ai.usage.inputTokenDetails.cacheReadTokens": 0,
    "ai.usage.inputTokenDetails.cacheWriteTokens": 1450,
    "ai.usage.inputTokenDetails.noCacheTokens": 11,
    "ai.usage.inputTokens": 1461,
    "ai.usage.outputTokens": 12,
    "ai.usage.totalTokens": 1473,
    "gen_ai.request.model": "claude-haiku-4-5",
    "gen_ai.response.model": "claude-haiku-4-5-20251001",
    "gen_ai.system": "anthropic.messages",
    "gen_ai.usage.input_tokens": 1461,
    "gen_ai.usage.output_tokens": 12,
}
# AI SDK 7 with `registerTelemetry(new OpenTelemetry({usage: true}))`: gen_ai.* and the SDK's usage details.
V7_CHAT_WITH_USAGE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "gen_ai.usage.input_tokens": 40,
    "gen_ai.usage.output_tokens": 48,
    "ai.usage.inputTokenDetails.noCacheTokens": 40,
    "ai.usage.outputTokenDetails.textTokens": 12,
    "ai.usage.outputTokenDetails.reasoningTokens": 36,
}


def _usage(row: dict) -> tuple:
    return (
        row["InputTokens"],
        row["OutputTokens"],
        row["CacheReadTokens"],
        row["CacheWriteTokens"],
        row["ReasoningTokens"],
        row["TotalTokens"],
    )


def test_ai_sdk_6_cache_writes_and_reads_are_read_from_the_token_details():
    row = normalized(V6_ANTHROPIC_CACHE_WRITE)
    assert _usage(row) == (1461, 12, 0, 1450, None, 1473)
    assert (row["LlmSpanKind"], row["LlmProvider"], row["LlmResponseModel"]) == (
        "LLM",
        "anthropic",
        "claude-haiku-4-5-20251001",
    )
    read = {
        **V6_ANTHROPIC_CACHE_WRITE,
        "ai.usage.inputTokenDetails.cacheReadTokens": 1450,
        "ai.usage.inputTokenDetails.cacheWriteTokens": 0,
    }
    del read["ai.usage.cachedInputTokens"]  # the details alone are enough
    assert _usage(normalized(read))[2:4] == (1450, 0)  # a 0 write is a 0, not the metadata's 1450


def test_ai_sdk_6_reasoning_tokens_are_read_from_the_output_details_or_the_older_name():
    base = {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "o4-mini", "ai.usage.outputTokens": 48}
    assert normalized({**base, "ai.usage.outputTokenDetails.reasoningTokens": 36})["ReasoningTokens"] == 36
    assert normalized({**base, "ai.usage.reasoningTokens": 36})["ReasoningTokens"] == 36
    assert normalized(base)["ReasoningTokens"] is None


def test_ai_sdk_7_supplemental_usage_beside_gen_ai_gives_reasoning_tokens():
    row = normalized(V7_CHAT_WITH_USAGE)
    assert _usage(row) == (40, 48, None, None, 36, 88)
    assert (row["LlmOperation"], row["LlmSpanKind"], row["LlmRequestModel"]) == ("chat", "LLM", "o4-mini")


def test_an_older_sdks_anthropic_cache_write_is_read_from_the_provider_metadata():
    """Before AI SDK 6 the write count was only in the provider's metadata, and Anthropic's input count left the
    cache out: the row's input count includes it, as every other row's does (tokens.py)."""
    v5 = {
        "ai.operationId": "ai.generateText.doGenerate",
        "ai.model.id": "claude-haiku-4-5",
        "ai.model.provider": "anthropic.messages",
        "ai.response.providerMetadata": '{"anthropic":{"cacheCreationInputTokens":1450,"cacheReadInputTokens":0}}',
        "ai.usage.inputTokens": 11,
        "ai.usage.outputTokens": 12,
        "ai.usage.cachedInputTokens": 0,
    }
    assert _usage(normalized(v5)) == (1461, 12, 0, 1450, None, 1473)


@pytest.mark.parametrize(
    "metadata",
    [
        '{"anthropic":{"cacheCreationInputTokens":-3}}',  # negative
        '{"anthropic":{"cacheCreationInputTokens":"many"}}',  # not a number
        '{"anthropic":{"cacheCreationInputTokens":true}}',  # a boolean is no count
        '{"anthropic":["cacheCreationInputTokens"]}',  # not an object
        '{"anthropic":{"cacheCreationInputTokens":14',  # cut off
        '["cacheCreationInputTokens"]',
        '{"openai":{"cachedPromptTokens":1408}}',  # another provider's
    ],
)
def test_unreadable_provider_metadata_gives_no_cache_write_and_keeps_the_row(metadata, caplog):
    row = normalized(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.id": "claude-haiku-4-5",
            "ai.response.text": "Paris.",
            "ai.response.providerMetadata": metadata,
            "ai.usage.inputTokens": 11,
            "ai.usage.outputTokens": 12,
        }
    )
    assert mapper_failures(caplog) == []
    assert _usage(row) == (11, 12, None, None, None, 23)
    assert loads(row["OutputMessages"]) == [{"role": "assistant", "content": [{"type": "text", "text": "Paris."}]}]


def test_a_malformed_or_negative_count_is_passed_over_for_the_next_name_else_null(caplog):
    """Each count's names are tried newest first; a value that is no count (negative, text, a list, a
    fraction) is not read as 0 and does not hide an older name's readable value."""
    base = {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o-mini"}
    row = normalized(
        {
            **base,
            "ai.usage.inputTokens": -5,
            "ai.usage.promptTokens": 30,
            "ai.usage.outputTokens": "twelve",
            "ai.usage.completionTokens": 12,
            "ai.usage.inputTokenDetails.cacheReadTokens": [1, 2],
            "ai.usage.cachedInputTokens": 16,
            "ai.usage.inputTokenDetails.cacheWriteTokens": 2.5,
            "ai.usage.outputTokenDetails.reasoningTokens": "-1",
            "ai.usage.reasoningTokens": "NaN",
        }
    )
    assert mapper_failures(caplog) == []
    assert _usage(row) == (30, 12, 16, None, None, 42)
    assert (row["LlmRequestModel"], row["LlmSpanKind"]) == ("gpt-4o-mini", "LLM")
    nothing = normalized({**base, "ai.usage.inputTokens": -1, "ai.usage.inputTokenDetails.cacheWriteTokens": -1})
    assert _usage(nothing) == (None, None, None, None, None, None)


def test_cut_off_prompt_messages_keep_the_calls_other_fields(caplog):
    """A cut-off `ai.prompt.messages` has no message to read (the raw text stays in SpanAttributes); the call's
    model, counts, cache writes and answer are still the row's."""
    cut = {**V6_ANTHROPIC_CACHE_WRITE, "ai.prompt.messages": V6_ANTHROPIC_CACHE_WRITE["ai.prompt.messages"][:60]}
    row = normalized(cut)
    assert mapper_failures(caplog) == []
    assert row["InputMessages"] == "" and row["SystemPrompt"] == ""
    assert _usage(row) == (1461, 12, 0, 1450, None, 1473)
    assert loads(row["OutputMessages"])[0]["content"] == [{"type": "text", "text": "Paris."}]
    # A list whose items are not messages: the readable ones are kept.
    mixed = orjson.dumps([42, "loose text", None, {"role": "user", "content": "Hi"}]).decode()
    kept = loads(normalized({**V6_ANTHROPIC_CACHE_WRITE, "ai.prompt.messages": mixed})["InputMessages"])
    assert {"role": "user", "content": [{"type": "text", "text": "Hi"}]} in kept
