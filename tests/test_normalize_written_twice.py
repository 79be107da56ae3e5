"""A message an instrumentation writes in two forms side by side is stored once; what was written once, however
alike (two equal parts, two calls with the same name and arguments), is stored as written.

The attribute shapes are those the instrumentations write: the Anthropic one captured from
openinference-instrumentation-anthropic 3.1.0 (anthropic 2.16.0, a local fake server); the others transcribed
from the instrumentors' source (openinference-vercel, agno, openai-agents, pydantic-ai) where each is cited.
"""

from __future__ import annotations

import orjson
from normalize_support import ANTHROPIC_TOOL_TURN, loads, normalized

WEATHER_PARIS = {"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}
WEATHER_LYON = {"id": "toolu_0", "name": "get_weather", "arguments": {"city": "Lyon"}}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _output(attrs: dict) -> list[dict]:
    return loads(normalized({"openinference.span.kind": "LLM", **attrs})["OutputMessages"])


def test_anthropic_tool_calls_in_contents_and_tool_calls_are_kept_once():
    row = normalized(ANTHROPIC_TOOL_TURN)
    assert loads(row["OutputMessages"]) == [
        {"role": "assistant", "content": [_text("Let me check.")], "tool_calls": [WEATHER_PARIS]}
    ]
    assert loads(row["ToolCalls"]) == [WEATHER_PARIS]
    assert loads(row["InputMessages"]) == [  # the next call's history: the earlier call once too
        {"role": "user", "content": [_text("Weather in Paris?")]},
        {"role": "assistant", "content": [_text("Checking.")], "tool_calls": [WEATHER_LYON]},
        {"role": "tool", "content": [_text("sunny")], "tool_call_id": "toolu_0"},
    ]


def test_text_in_content_and_in_a_contents_part_is_kept_once():
    # agno (_model_wrapper._message_content_attributes): reasoning and text as contents, the text again as content.
    assert _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.contents.0.message_content.type": "reasoning",
            "llm.output_messages.0.message.contents.0.message_content.text": "The user wants the weather.",
            "llm.output_messages.0.message.contents.1.message_content.type": "text",
            "llm.output_messages.0.message.contents.1.message_content.text": "It is sunny.",
            "llm.output_messages.0.message.content": "It is sunny.",
        }
    ) == [
        {
            "role": "assistant",
            "content": [{"type": "reasoning", "text": "The user wants the weather."}, _text("It is sunny.")],
        }
    ]
    # openinference-vercel (getGenAIInputMessageAttributes): a tool response as content and as contents.0.
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "tool",
            "llm.input_messages.0.message.tool_call_id": "call_1",
            "llm.input_messages.0.message.content": '{"temp":21}',
            "llm.input_messages.0.message.contents.0.message_content.type": "text",
            "llm.input_messages.0.message.contents.0.message_content.text": '{"temp":21}',
        }
    )
    assert loads(row["InputMessages"]) == [
        {"role": "tool", "content": [_text('{"temp":21}')], "tool_call_id": "call_1"}
    ]


def test_content_that_joins_the_contents_texts_is_kept_once():
    # openai-agents (_get_attributes_from_message): each output text as a part, and "\n".join of them as content.
    assert _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.contents.0.message_content.type": "text",
            "llm.output_messages.0.message.contents.0.message_content.text": "It is sunny.",
            "llm.output_messages.0.message.contents.1.message_content.type": "text",
            "llm.output_messages.0.message.contents.1.message_content.text": "Take a hat.",
            "llm.output_messages.0.message.content": "It is sunny.\nTake a hat.",
        }
    ) == [{"role": "assistant", "content": [_text("It is sunny."), _text("Take a hat.")]}]


def test_content_that_differs_from_the_contents_is_kept():
    # Anthropic: a user turn with a tool_result block (its content goes to message.content) and a text block.
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.tool_call_id": "toolu_0",
            "llm.input_messages.0.message.content": "sunny",
            "llm.input_messages.0.message.contents.1.message_content.type": "text",
            "llm.input_messages.0.message.contents.1.message_content.text": "Now Lyon, please.",
        }
    )
    assert loads(row["InputMessages"])[0]["content"] == [_text("sunny"), _text("Now Lyon, please.")]


def test_equal_parts_written_once_each_are_all_kept():
    assert _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.contents.0.message_content.type": "text",
            "llm.output_messages.0.message.contents.0.message_content.text": "Yes.",
            "llm.output_messages.0.message.contents.1.message_content.type": "text",
            "llm.output_messages.0.message.contents.1.message_content.text": "Yes.",
        }
    )[0]["content"] == [_text("Yes."), _text("Yes.")]
    # ...and written twice, the pair is still a pair: the flat text repeats one of them, not the pair's count.
    assert _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.contents.0.message_content.type": "text",
            "llm.output_messages.0.message.contents.0.message_content.text": "Yes.",
            "llm.output_messages.0.message.contents.1.message_content.type": "text",
            "llm.output_messages.0.message.contents.1.message_content.text": "Yes.",
            "llm.output_messages.0.message.content": "Yes.\nYes.",
        }
    )[0]["content"] == [_text("Yes."), _text("Yes.")]


def _listed_call(index: int, call_id: str | None, city: str) -> dict[str, str]:
    prefix = f"llm.output_messages.0.message.tool_calls.{index}.tool_call."
    attrs = {prefix + "function.name": "get_weather", prefix + "function.arguments": f'{{"city": "{city}"}}'}
    if call_id:
        attrs[prefix + "id"] = call_id
    return attrs


def _content_call(index: int, call_id: str | None, city: str) -> dict[str, str]:
    prefix = f"llm.output_messages.0.message.contents.{index}."
    attrs = {prefix + "message_content.type": "tool_use"}
    attrs.update(
        {
            k.replace("message.tool_calls.0.", f"message.contents.{index}."): v
            for k, v in _listed_call(0, call_id, city).items()
        }
    )
    return attrs


def test_alike_calls_with_different_ids_are_all_kept():
    calls = _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            **_listed_call(0, "call_a", "Paris"),
            **_listed_call(1, "call_b", "Paris"),
            **_content_call(0, "call_a", "Paris"),
            **_content_call(1, "call_b", "Paris"),
        }
    )[0]["tool_calls"]
    assert [call["id"] for call in calls] == ["call_a", "call_b"]


def test_calls_without_ids_are_matched_one_for_one():
    # Written once in each list: one call each. Two alike calls written twice: still two.
    once = _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            **_content_call(0, None, "Paris"),
            **_listed_call(0, None, "Paris"),
        }
    )
    assert once[0]["tool_calls"] == [{"id": "", "name": "get_weather", "arguments": {"city": "Paris"}}]
    twice = _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            **_content_call(0, None, "Paris"),
            **_content_call(1, None, "Paris"),
            **_listed_call(0, None, "Paris"),
            **_listed_call(1, None, "Paris"),
        }
    )
    assert len(twice[0]["tool_calls"]) == 2
    # Two alike calls in one list only (Gemini gives no ids): both kept.
    listed_only = _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            **_listed_call(0, None, "Paris"),
            **_listed_call(1, None, "Paris"),
        }
    )
    assert len(listed_only[0]["tool_calls"]) == 2
    # A listed call that differs from the one in the contents is its own call.
    different = _output(
        {
            "llm.output_messages.0.message.role": "assistant",
            **_content_call(0, None, "Paris"),
            **_listed_call(0, None, "Lyon"),
        }
    )
    assert [call["arguments"]["city"] for call in different[0]["tool_calls"]] == ["Paris", "Lyon"]


def test_vercel_tool_call_placeholders_in_contents_add_nothing():
    # openinference-vercel (getInputMessageAttributes): each AI SDK part as contents.{i} (a tool-call part keeps only
    # its type there) and its call as tool_calls.{i}, the same index, so the calls' indices have gaps.
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "assistant",
            "llm.input_messages.0.message.contents.0.message_content.type": "text",
            "llm.input_messages.0.message.contents.0.message_content.text": "Checking.",
            "llm.input_messages.0.message.contents.1.message_content.type": "tool-call",
            "llm.input_messages.0.message.tool_calls.1.tool_call.id": "call_1",
            "llm.input_messages.0.message.tool_calls.1.tool_call.function.name": "get_weather",
            "llm.input_messages.0.message.tool_calls.1.tool_call.function.arguments": '{"city":"Paris"}',
        }
    )
    assert loads(row["InputMessages"]) == [
        {
            "role": "assistant",
            "content": [_text("Checking.")],
            "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        }
    ]


def test_json_messages_written_twice_are_kept_once():
    # A LangChain AIMessage as JSON: Anthropic tool_use blocks in content, the same calls in tool_calls.
    ai_message = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "tool_calls": [{"id": "toolu_1", "name": "get_weather", "args": {"city": "Paris"}}],
    }
    both_forms = {
        "role": "assistant",
        "parts": [{"type": "text", "content": "It is sunny."}],
        "content": "It is sunny.",
    }
    row = normalized(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": orjson.dumps([ai_message]).decode(),
            "gen_ai.output.messages": orjson.dumps([both_forms]).decode(),
        }
    )
    assert loads(row["InputMessages"]) == [
        {"role": "assistant", "content": [_text("Checking.")], "tool_calls": [WEATHER_PARIS]}
    ]
    assert loads(row["OutputMessages"]) == [{"role": "assistant", "content": [_text("It is sunny.")]}]


def test_openai_style_calls_alike_but_for_their_ids_are_all_kept():
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "roll", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "roll", "arguments": "{}"}},
        ],
    }
    row = normalized({"gen_ai.operation.name": "chat", "gen_ai.output.messages": orjson.dumps([message]).decode()})
    assert [call["id"] for call in loads(row["ToolCalls"])] == ["call_a", "call_b"]
