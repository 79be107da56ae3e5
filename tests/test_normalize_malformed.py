"""Malformed LLM attributes are stored with what could be read; nothing the app sends crashes the stage."""

from __future__ import annotations

import math
import random
import time

import orjson
from normalize_support import loads, mapper_failures, normalized

from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.columns import (
    LLM_ARRAY_COLUMNS,
    LLM_COLUMNS,
    LLM_FLOAT_COLUMNS,
    LLM_STRING_COLUMNS,
    LLM_UINT_COLUMNS,
)
from tracehouse.collector.stages.normalize import limits, normalize

JSON_COLUMNS = ("InputMessages", "OutputMessages", "Tools", "ToolCalls")


def test_unreadable_token_counts_are_null_and_the_rest_is_kept():
    row = normalized(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "abc",
            "gen_ai.usage.output_tokens": "-5",
            "gen_ai.usage.cache_read.input_tokens": "1e30",
            "gen_ai.usage.reasoning.output_tokens": "2.5",
            "gen_ai.request.temperature": "warm",
            "gen_ai.response.time_to_first_chunk": "NaN",
        }
    )
    assert row["LlmRequestModel"] == "gpt-4o"
    for column in ("InputTokens", "OutputTokens", "TotalTokens", "CacheReadTokens", "ReasoningTokens"):
        assert row[column] is None, column
    assert row["Temperature"] is None and row["TimeToFirstToken"] is None


def test_messages_that_are_not_json_become_one_text_message():
    row = normalized(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": "[{not json",
            "gen_ai.output.messages": "plain answer",
            "gen_ai.system_instructions": "You are terse.",
            "gen_ai.tool.definitions": "{{{",
        }
    )
    assert loads(row["InputMessages"]) == [{"role": "user", "content": [{"type": "text", "text": "[{not json"}]}]
    assert loads(row["OutputMessages"]) == [
        {"role": "assistant", "content": [{"type": "text", "text": "plain answer"}]}
    ]
    assert row["SystemPrompt"] == "You are terse."
    assert row["Tools"] == ""


def test_wrong_json_shapes_are_skipped_not_fatal():
    row = normalized(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": '[1, null, "hi", {"role": 5, "parts": "nope"}, {"parts": [{"type": 7}, 3]}]',
            "gen_ai.output.messages": '{"role": "assistant", "parts": [{"type": "tool_call", "name": {"x": 1}}]}',
            "gen_ai.response.finish_reasons": "[1, 2]",
        }
    )
    messages = loads(row["InputMessages"])
    assert messages[0] == {"role": "user", "content": [{"type": "text", "text": "1"}]}
    assert {"role": "user", "content": [{"type": "text", "text": "hi"}]} in messages
    assert loads(row["OutputMessages"])[0]["tool_calls"][0]["name"] == '{"x":1}'
    assert row["FinishReason"] == ""


def test_huge_message_list_is_truncated_keeping_the_first_and_latest():
    attrs = {"openinference.span.kind": "LLM"}
    for i in range(5_000):
        attrs[f"llm.input_messages.{i}.message.role"] = "user"
        attrs[f"llm.input_messages.{i}.message.content"] = f"m{i}"
    started = time.perf_counter()
    row = normalized(attrs)
    assert time.perf_counter() - started < 10
    messages = loads(row["InputMessages"])
    assert len(messages) == limits.MAX_MESSAGES + 1
    assert [m["content"][0]["text"] for m in messages[:2]] == ["m0", "m1"]
    marker = messages[limits.MESSAGES_HEAD]
    assert marker["role"] == "truncated" and "4744 messages omitted" in marker["content"][0]["text"]
    assert messages[-1]["content"][0]["text"] == "m4999"


def test_huge_text_and_inline_images_are_cut():
    big = "x" * (limits.MAX_TEXT_CHARS + 10)
    image = "data:image/png;base64," + "A" * 100_000
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": big,
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.type": "image",
            "llm.input_messages.1.message.contents.0.message_content.image.image.url": image,
        }
    )
    first, second = loads(row["InputMessages"])
    assert first["content"][0]["text"].endswith("…[10 chars truncated]")
    assert second["content"][0]["url"] == "data:image/png;base64,…[100000 chars omitted]"


def test_indices_that_are_not_numbers_are_ignored():
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.input_messages.x.message.content": "ignored",
            "llm.input_messages.٣.message.content": "ignored too",
            "llm.input_messages.99999999999999.message.content": "ignored, absurd index",
            "llm.input_messages.1.message.content": "kept",
        }
    )
    assert loads(row["InputMessages"]) == [{"role": "user", "content": [{"type": "text", "text": "kept"}]}]


# --- the shapes of issue 12: messages written twice, wrapped tool results, time to first chunk -------------


def test_a_cut_off_or_gapped_message_list_keeps_what_reads():
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-sonnet-4-5",
            "llm.token_count.prompt": "12abc",
            "llm.token_count.completion": 7,
            "input.value": '{"messages": [{"role": "user", "content": "Weather in Par',  # cut off
            # messages 0 and 2, no 1; contents 0 and 3; a tool_use item cut down to its type; a call id only
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.contents.0.message_content.type": "text",
            "llm.output_messages.0.message.contents.0.message_content.text": "It is sunny.",
            "llm.output_messages.0.message.contents.3.message_content.type": "tool_use",
            "llm.output_messages.0.message.content": "It is sunny.",
            "llm.output_messages.0.message.tool_calls.5.tool_call.id": "toolu_1",
            "llm.output_messages.2.message.role": "assistant",
            "llm.output_messages.2.message.contents.1.message_content.text": "Anything else?",
            "llm.output_messages.2.message.contents.1.tool_call.function.arguments": "{cut",
        }
    )
    assert (row["LlmResponseModel"], row["InputTokens"], row["OutputTokens"]) == ("claude-sonnet-4-5", None, 7)
    text = '{"messages": [{"role": "user", "content": "Weather in Par'
    assert loads(row["InputMessages"]) == [{"role": "user", "content": [{"type": "text", "text": text}]}]
    assert loads(row["OutputMessages"]) == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "It is sunny."}],
            "tool_calls": [{"id": "toolu_1", "name": "", "arguments": None}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Anything else?"}]},
    ]


def test_unreadable_time_to_first_chunk_is_null_and_a_huge_one_is_capped(caplog):
    key = "gen_ai.client.operation.time_to_first_chunk"
    for value in ("soon", "NaN", "inf", "-1", "1e400", "", "[0.5]", True):
        row = normalized({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", key: value})
        assert (row["TimeToFirstToken"], row["LlmRequestModel"]) == (None, "m"), value
    # Finite but past what UInt64 nanoseconds hold: the cap, as for gen_ai.response.time_to_first_chunk.
    assert normalized({"gen_ai.operation.name": "chat", key: 1e300})["TimeToFirstToken"] == 2**64 - 1
    assert normalized({"gen_ai.operation.name": "chat", key: 0})["TimeToFirstToken"] == 0
    assert mapper_failures(caplog) == []


def _vercel_tool_contents(output) -> list:
    prompt = [
        {"role": "tool", "content": [{"type": "tool-result", "toolCallId": "c", "toolName": "t", "output": output}]}
    ]
    row = normalized(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.id": "gpt-4o-mini",
            "ai.prompt.messages": orjson.dumps(prompt).decode(),
        }
    )
    assert row["LlmRequestModel"] == "gpt-4o-mini"
    (tool,) = loads(row["InputMessages"])
    assert (tool["role"], tool["tool_call_id"], tool["name"]) == ("tool", "c", "t")
    return tool["content"]


def test_malformed_vercel_tool_result_wrappers_are_plain_values(caplog):
    # Without its value, a wrapper is not one: the object itself is the result.
    assert _vercel_tool_contents({"type": "json"}) == [{"type": "text", "text": '{"type":"json"}'}]
    assert _vercel_tool_contents({"type": "content", "value": "not a list"}) == [
        {"type": "text", "text": '{"type":"content","value":"not a list"}'}
    ]
    assert _vercel_tool_contents({"type": 7, "value": 1}) == [{"type": "text", "text": '{"type":7,"value":1}'}]
    # Values of the wrong kind: text that is not a string, content items that are not parts.
    assert _vercel_tool_contents({"type": "text", "value": {"a": 1}}) == [{"type": "text", "text": '{"a":1}'}]
    assert _vercel_tool_contents({"type": "error-text", "value": None}) == [{"type": "text", "text": "null"}]
    assert _vercel_tool_contents(
        {
            "type": "content",
            "value": [1, None, "loose text", {"type": 5}, {"type": "text"}, {"type": "text", "text": 3}],
        }
    ) == [{"type": "text", "text": "loose text"}, {"type": "text", "text": "3"}]
    assert _vercel_tool_contents(
        {
            "type": "content",
            "value": [
                {"type": "image-url", "url": {"x": 1}, "mediaType": 5},
                {"type": "file-id", "fileId": {"openai": "f"}},
            ],
        }
    ) == [{"type": "image"}, {"type": "file"}]
    assert _vercel_tool_contents({"type": "content", "value": []}) == []
    assert mapper_failures(caplog) == []


def test_a_wrapped_value_that_will_not_serialize_still_gives_the_row(caplog):
    # Nested deeper than orjson writes (255 levels), and a number past 64 bits (parsed as a float).
    deep = "[" * 400 + "]" * 400
    prompt = (
        '[{"role":"tool","content":[{"type":"tool-result","toolCallId":"c","toolName":"t",'
        '"output":{"type":"json","value":' + deep + "}},"
        '{"type":"tool-result","toolCallId":"d","toolName":"t","output":{"type":"error-json","value":18446744073709551616}}]}]'
    )
    row = normalized({"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "m", "ai.prompt.messages": prompt})
    assert mapper_failures(caplog) == []
    first, second = loads(row["InputMessages"])
    assert (first["tool_call_id"], second["tool_call_id"]) == ("c", "d")
    assert first["content"][0]["text"].startswith("[[[")
    assert second["content"] == [{"type": "text", "text": "1.8446744073709552e+19"}]
    # Cut off: the messages are lost, the call's other fields are not.
    cut = normalized(
        {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "m", "ai.prompt.messages": prompt[:90]}
    )
    assert (cut["LlmRequestModel"], cut["LlmSpanKind"], cut["InputMessages"]) == ("m", "LLM", "")


# --- garbage in, typed columns out ------------------------------------------------------------------

KNOWN_KEYS = [
    "openinference.span.kind",
    "llm.model_name",
    "llm.provider",
    "llm.system",
    "llm.invocation_parameters",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.token_count.total",
    "llm.token_count.prompt_details.cache_read",
    "llm.token_count.prompt_details.cache_write",
    "llm.finish_reason",
    "llm.function_call",
    "llm.prompt_template.variables",
    "llm.tools.0.tool.json_schema",
    "llm.input_messages.0.message.role",
    "llm.input_messages.0.message.content",
    "llm.input_messages.1.message.contents.0.message_content.type",
    "llm.input_messages.1.message.contents.0.message_content.text",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
    "llm.output_messages.0.message.function_call_name",
    "llm.output_messages.0.message.content",
    "llm.output_messages.0.message.contents.0.message_content.type",
    "llm.output_messages.0.message.contents.0.message_content.text",
    "llm.output_messages.0.message.contents.1.tool_call.id",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id",
    "llm.prompts.0.prompt.text",
    "input.value",
    "output.value",
    "metadata",
    "tag.tags",
    "tool.name",
    "retrieval.documents.0.document.score",
    "embedding.embeddings.0.embedding.text",
    "session.id",
    "user.id",
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.request.temperature",
    "gen_ai.request.max_tokens",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.name",
    "gen_ai.tool.call.result",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.client.operation.time_to_first_chunk",
    "gen_ai.prompt.0.role",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.0.tool_calls.0.arguments",
    "gen_ai.completion.0.content",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.total_tokens",
    "llm.request.type",
    "llm.request.functions.0.name",
    "traceloop.span.kind",
    "traceloop.entity.name",
    "traceloop.association.properties.tenant_id",
    "ai.operationId",
    "ai.model.provider",
    "ai.prompt",
    "ai.prompt.messages",
    "ai.prompt.tools",
    "ai.response.toolCalls",
    "ai.toolCall.name",
    "ai.stream.msToFirstChunk",
    "ai.usage.inputTokens",
    "ai.telemetry.metadata.userId",
    "tracehouse.tenant",
    "tracehouse.feature",
    "error.type",
]
EVENT_NAMES = [
    "exception",
    "First Token Stream Event",
    "gen_ai.client.inference.operation.details",
    "gen_ai.user.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "gen_ai.content.prompt",
    "ai.stream.firstChunk",
]


SPECIAL_VALUES = ["NaN", "inf", "-inf", "1e400", "0x10", "١٢", "true", "LLM", "tool", "chat", "execute_tool"]


def _garbage_value(rnd: random.Random) -> str:
    choices = [
        lambda: "",
        lambda: "null",
        lambda: "[]",
        lambda: "{}",
        lambda: str(rnd.randint(-(2**70), 2**70)),
        lambda: repr(rnd.uniform(-1e20, 1e20)),
        lambda: rnd.choice(
            ["NaN", "inf", "-inf", "1e400", "0x10", "١٢", "true", "LLM", "tool", "chat", "execute_tool"]
        ),
        lambda: "[" * rnd.randint(1, 3000),
        lambda: "[" * 2000 + "]" * 2000,
        lambda: (
            "".join(chr(rnd.randint(0, 0x10FFFF)) for _ in range(rnd.randint(0, 40)))
            .encode("utf-8", "replace")
            .decode("utf-8", "replace")
        ),
        lambda: orjson.dumps(_garbage_json(rnd, 3)).decode(),
        lambda: orjson.dumps([_garbage_json(rnd, 3) for _ in range(rnd.randint(0, 5))]).decode(),
        lambda: "x" * rnd.randint(0, 300_000),
    ]
    return rnd.choice(choices)()


def _garbage_json(rnd: random.Random, depth: int):
    if depth == 0:
        return rnd.choice(
            [None, True, 1, -1, 2.5, "", "text", "tool_call", "function", "image", "tool-result", "json", "content"]
        )
    kind = rnd.randrange(4)
    if kind == 0:
        return [_garbage_json(rnd, depth - 1) for _ in range(rnd.randint(0, 4))]
    if kind == 1:
        keys = [
            "role",
            "content",
            "parts",
            "type",
            "text",
            "tool_calls",
            "function",
            "name",
            "arguments",
            "id",
            "response",
            "source",
            "image_url",
            "functionCall",
            "messages",
            "choices",
            "message",
            "finish_reason",
            "feature",
            "tenant_id",
            "model",
            "temperature",
            "output",
            "value",
            "toolCallId",
        ]
        return {rnd.choice(keys): _garbage_json(rnd, depth - 1) for _ in range(rnd.randint(0, 5))}
    return _garbage_json(rnd, 0)


def _garbage_batch(rnd: random.Random, rows: int) -> SpanBatch:
    columns: dict[str, list] = {name: [] for name in OTEL_COLUMNS}
    for i in range(rows):
        attrs = {}
        for _ in range(rnd.randint(0, 12)):
            key = rnd.choice(KNOWN_KEYS)
            if rnd.random() < 0.2:
                key = key + rnd.choice([".0", ".x", "..", ".0.message.role", ""])
            attrs[key] = _garbage_value(rnd)
        events = [rnd.choice(EVENT_NAMES) for _ in range(rnd.randint(0, 3))]
        event_attrs = [
            {rnd.choice(KNOWN_KEYS + ["content", "message", "exception.type"]): _garbage_value(rnd)} for _ in events
        ]
        start = rnd.randint(0, 2**63)
        values = {
            "Timestamp": start,
            "TraceId": f"{i:032x}",
            "SpanId": f"{i:016x}",
            "ParentSpanId": "",
            "TraceState": "",
            "SpanName": "s",
            "SpanKind": "Internal",
            "ServiceName": "svc",
            "ResourceAttributes": {rnd.choice(["tracehouse.tenant", "tracehouse.feature"]): _garbage_value(rnd)},
            "ScopeName": "",
            "ScopeVersion": "",
            "SpanAttributes": attrs,
            "Duration": rnd.randint(0, 2**40),
            "StatusCode": rnd.choice(["Unset", "Ok", "Error"]),
            "StatusMessage": _garbage_value(rnd),
            "Events.Timestamp": [rnd.randint(0, 2**63) for _ in events],
            "Events.Name": events,
            "Events.Attributes": event_attrs,
            "Links.TraceId": [],
            "Links.SpanId": [],
            "Links.TraceState": [],
            "Links.Attributes": [],
        }
        for name, value in values.items():
            columns[name].append(value)
    return SpanBatch(columns)


def _assert_typed(batch: SpanBatch) -> None:
    rows = len(batch)
    for name in LLM_COLUMNS:
        assert len(batch.columns[name]) == rows, name
    for name in LLM_STRING_COLUMNS:
        assert all(isinstance(v, str) for v in batch.columns[name]), name
    for name in LLM_UINT_COLUMNS:
        assert all(v is None or (type(v) is int and 0 <= v < 2**64) for v in batch.columns[name]), name
    for name in LLM_FLOAT_COLUMNS:
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in batch.columns[name]), name
    for name in LLM_ARRAY_COLUMNS:
        assert all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in batch.columns[name]), name
    for name in JSON_COLUMNS:
        for value in batch.columns[name]:
            if value:
                assert isinstance(orjson.loads(value), list), name
    for name in ("LlmSpanKind", "LlmProvider", "LlmRequestModel", "TenantId", "Feature", "UserId", "FinishReason"):
        assert all(len(v) <= limits.MAX_SHORT_CHARS for v in batch.columns[name]), name


def test_garbage_attributes_never_crash_and_columns_stay_typed(caplog):
    rnd = random.Random(20240611)
    for _ in range(12):
        batch = normalize(_garbage_batch(rnd, 60))
        _assert_typed(batch)
    assert mapper_failures(caplog) == [], "a mapper raised on garbage input (see the log)"


def test_a_mapper_bug_costs_one_span_its_llm_fields_not_the_batch(monkeypatch, caplog):
    from tracehouse.collector.stages.normalize import stage
    from tracehouse.collector.stages.normalize.mapper import Mapper

    def broken(span):
        raise RuntimeError("bug")

    monkeypatch.setattr(stage, "MAPPERS", (Mapper(name="broken", extract=broken, prefixes=("gen_ai.",)),))
    row = normalized({"gen_ai.operation.name": "chat", "user.id": "u"}, resource={"tracehouse.tenant": "t"})
    assert len(mapper_failures(caplog)) == 1
    assert (row["LlmOperation"], row["UserId"], row["TenantId"]) == ("", "u", "t")
