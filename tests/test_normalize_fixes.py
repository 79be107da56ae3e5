"""Inputs that used to cost a span its LLM fields, or gave a message of the wrong shape."""

from __future__ import annotations

import orjson
from normalize_support import loads, mapper_failures, normalized

from tracehouse.collector.stages.normalize.tokens import UINT64_MAX


def test_a_part_whose_modality_is_not_a_string_is_a_file(caplog):
    messages = [{"role": "user", "parts": [{"type": "blob", "modality": {"x": 1}, "mime_type": "image/png"}]}]
    row = normalized({"gen_ai.operation.name": "chat", "gen_ai.input.messages": orjson.dumps(messages).decode()})
    assert mapper_failures(caplog) == []
    assert loads(row["InputMessages"]) == [{"role": "user", "content": [{"type": "file", "mime_type": "image/png"}]}]


def test_a_huge_time_to_first_token_is_capped_not_fatal(caplog):
    genai = normalized({"gen_ai.operation.name": "chat", "gen_ai.response.time_to_first_chunk": "1e300"})
    vercel = normalized({"ai.operationId": "ai.streamText.doStream", "ai.response.msToFirstChunk": "1e303"})
    assert mapper_failures(caplog) == []
    assert genai["TimeToFirstToken"] == vercel["TimeToFirstToken"] == UINT64_MAX
    assert (genai["LlmOperation"], vercel["LlmSpanKind"]) == ("chat", "LLM")


def test_gemini_function_response_is_a_tool_message():
    contents = [
        {"role": "user", "parts": [{"functionResponse": {"id": "call_1", "name": "get_weather", "response": "sunny"}}]}
    ]
    row = normalized({"gen_ai.operation.name": "chat", "gen_ai.input.messages": orjson.dumps(contents).decode()})
    assert loads(row["InputMessages"]) == [
        {
            "role": "tool",
            "content": [{"type": "text", "text": "sunny"}],
            "tool_call_id": "call_1",
            "name": "get_weather",
        }
    ]
