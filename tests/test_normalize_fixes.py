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


# --- AI SDK tool results: the value, not its wrapper -------------------------------------------------


def _vercel_tool_message(output) -> dict:
    """The tool message an `ai.*.doGenerate` span's prompt gives for one tool-result part with `output`."""
    prompt = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool-call", "toolCallId": "call_1", "toolName": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "tool",
            "content": [{"type": "tool-result", "toolCallId": "call_1", "toolName": "get_weather", "output": output}],
        },
    ]
    row = normalized(
        {"ai.operationId": "ai.generateText.doGenerate", "ai.prompt.messages": orjson.dumps(prompt).decode()}
    )
    messages = loads(row["InputMessages"])
    assert messages[1]["tool_calls"] == [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert (messages[2]["role"], messages[2]["tool_call_id"], messages[2]["name"]) == ("tool", "call_1", "get_weather")
    return messages[2]


def _texts(message: dict) -> list[str]:
    return [part["text"] for part in message["content"]]


def test_a_vercel_tool_result_past_the_part_limit_says_so():
    """Its parts cut like any message's, with the note content_copies reads (drop mode keeps the raw copy)."""
    parts = [{"type": "text", "text": f"t{i}"} for i in range(70)]
    cut = _vercel_tool_message({"type": "content", "value": parts})["content"]
    assert _texts({"content": cut}) == [f"t{i}" for i in range(63)] + ["…[parts after the first 63 omitted]"]
    whole = _vercel_tool_message({"type": "content", "value": parts[:64]})["content"]
    assert _texts({"content": whole}) == [f"t{i}" for i in range(64)]


def test_vercel_wrapped_tool_results_hold_the_value():
    assert _texts(_vercel_tool_message({"type": "json", "value": {"temp": 21, "sky": "clear"}})) == [
        '{"temp":21,"sky":"clear"}'
    ]
    assert _texts(_vercel_tool_message({"type": "json", "value": "sunny"})) == ["sunny"]
    assert _texts(_vercel_tool_message({"type": "text", "value": "sunny"})) == ["sunny"]
    assert _texts(_vercel_tool_message({"type": "error-text", "value": "city not found"})) == ["city not found"]
    assert _texts(_vercel_tool_message({"type": "error-json", "value": {"code": 404}})) == ['{"code":404}']
    assert _texts(_vercel_tool_message({"type": "execution-denied", "reason": "not allowed"})) == [
        '{"denied":true,"reason":"not allowed"}'
    ]
    assert _texts(_vercel_tool_message({"type": "execution-denied"})) == ['{"denied":true}']
    # A JSON value that looks like parts is still the tool's JSON, not parts.
    assert _texts(_vercel_tool_message({"type": "json", "value": [{"type": "text", "text": "x"}]})) == [
        '[{"type":"text","text":"x"}]'
    ]


def test_vercel_content_tool_results_become_parts():
    output = {
        "type": "content",
        "value": [
            {"type": "text", "text": "Here is the chart."},
            {"type": "image-data", "data": "iVBORw0KGgo" * 1000, "mediaType": "image/png"},
            {"type": "image-url", "url": "https://x.test/chart.png"},
            {"type": "file-data", "data": "JVBERi0", "mediaType": "application/pdf", "filename": "r.pdf"},
            {"type": "file-url", "url": "https://x.test/clip.mp4", "mediaType": "video/mp4"},
            {"type": "media", "data": "AAAA", "mediaType": "audio/wav"},  # AI SDK 5
            {"type": "custom", "providerOptions": {"x": {}}},
        ],
    }
    assert _vercel_tool_message(output)["content"] == [
        {"type": "text", "text": "Here is the chart."},
        {"type": "image", "mime_type": "image/png"},
        {"type": "image", "url": "https://x.test/chart.png"},
        {"type": "file", "mime_type": "application/pdf"},
        {"type": "video", "url": "https://x.test/clip.mp4", "mime_type": "video/mp4"},
        {"type": "audio", "mime_type": "audio/wav"},
        {"type": "custom"},
    ]


def test_vercel_top_level_prompt_results_are_unwrapped_too():
    prompt = {
        "system": "Be brief.",
        "messages": [
            {
                "role": "tool",
                "content": [
                    {
                        "type": "tool-result",
                        "toolCallId": "c",
                        "toolName": "t",
                        "output": {"type": "text", "value": "ok"},
                    }
                ],
            }
        ],
    }
    row = normalized({"ai.operationId": "ai.generateText", "ai.prompt": orjson.dumps(prompt).decode()})
    assert loads(row["InputMessages"]) == [
        {"role": "tool", "content": [{"type": "text", "text": "ok"}], "tool_call_id": "c", "name": "t"}
    ]
    assert row["SystemPrompt"] == "Be brief."


def test_an_older_vercel_result_and_a_tool_span_result_stay_as_they_are():
    # AI SDK 4: `result`, the raw value; and the ai.toolCall span's own result, JSON.stringify of the raw output.
    assert _texts(_vercel_v4_tool_message({"temp": 21})) == ['{"temp":21}']
    tool = normalized(
        {
            "ai.operationId": "ai.toolCall",
            "ai.toolCall.name": "get_weather",
            "ai.toolCall.id": "call_1",
            "ai.toolCall.args": '{"city":"Paris"}',
            "ai.toolCall.result": '{"type":"json","value":1}',  # what this tool returned: not a wrapper
        }
    )
    assert _texts(loads(tool["OutputMessages"])[0]) == ['{"type":"json","value":1}']


def _vercel_v4_tool_message(result) -> dict:
    prompt = [
        {"role": "tool", "content": [{"type": "tool-result", "toolCallId": "c", "toolName": "t", "result": result}]}
    ]
    row = normalized(
        {"ai.operationId": "ai.generateText.doGenerate", "ai.prompt.messages": orjson.dumps(prompt).decode()}
    )
    return loads(row["InputMessages"])[0]


# --- time to first token as the GenAI streaming metric's name -----------------------------------------


def test_time_to_first_chunk_in_seconds_is_the_time_to_first_token():
    # pydantic-ai and @ai-sdk/otel: gen_ai.client.operation.time_to_first_chunk, seconds, a double, on the span.
    pydantic_ai = normalized(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.client.operation.time_to_first_chunk": 0.4215,
        }
    )
    assert pydantic_ai["TimeToFirstToken"] == 421_500_000
    # The response attribute, where both are written, wins.
    both = normalized(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.response.time_to_first_chunk": 0.25,
            "gen_ai.client.operation.time_to_first_chunk": 0.4,
        }
    )
    assert both["TimeToFirstToken"] == 250_000_000
    # The AI SDK 7 writes it next to the ai.* keys a doStream span keeps.
    vercel7 = normalized(
        {
            "ai.operationId": "ai.streamText.doStream",
            "gen_ai.operation.name": "chat",
            "gen_ai.client.operation.time_to_first_chunk": 1.5,
        }
    )
    assert (vercel7["TimeToFirstToken"], vercel7["LlmSpanKind"]) == (1_500_000_000, "LLM")


def test_stream_object_ms_to_first_chunk_is_read():
    # streamObject writes ai.stream.msToFirstChunk (streamText: ai.response.msToFirstChunk), on the span and its event.
    on_span = normalized({"ai.operationId": "ai.streamObject.doStream", "ai.stream.msToFirstChunk": 80})
    on_event = normalized(
        {"ai.operationId": "ai.streamObject.doStream"},
        events=[("ai.stream.firstChunk", 90_000_000, {"ai.stream.msToFirstChunk": 90.0})],
    )
    assert (on_span["TimeToFirstToken"], on_event["TimeToFirstToken"]) == (80_000_000, 90_000_000)
