"""Spans sent over OTLP to a running collector and read back from llm_calls: GenAI spans in the current and the
deprecated forms give the same model, provider, tokens and messages; content an instrumentation writes twice is
stored once."""

from __future__ import annotations

import math

import orjson
from collector_process import sql_rows
from normalize_support import ANTHROPIC_TOOL_TURN
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

SYSTEM = "Answer in one word."
QUESTION = "Weather in Paris?"
CALL = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}


def _dumps(value) -> str:
    return orjson.dumps(value).decode()


CURRENT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.request.temperature": 0.3,
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 15,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.system_instructions": _dumps([{"type": "text", "content": SYSTEM}]),
    "gen_ai.input.messages": _dumps([{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
    "gen_ai.output.messages": _dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
                "finish_reason": "tool_call",
            }
        ]
    ),
    "gen_ai.response.finish_reasons": ("tool_call",),
    "gen_ai.conversation.id": "session-1",
    "user.id": "user-1",
    "tracehouse.feature": "weather",
}

DEPRECATED = {
    "gen_ai.system": "OpenAI",
    "llm.request.type": "chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.request.temperature": 0.3,
    "gen_ai.usage.prompt_tokens": 1200,
    "gen_ai.usage.completion_tokens": 15,
    "gen_ai.usage.cache_read_input_tokens": 1024,
    "llm.usage.total_tokens": 1215,
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": SYSTEM,
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": QUESTION,
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.finish_reason": "tool_calls",
    "gen_ai.completion.0.tool_calls.0.id": "call_1",
    "gen_ai.completion.0.tool_calls.0.name": "get_weather",
    "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
    "traceloop.association.properties.session_id": "session-1",
    "traceloop.association.properties.user_id": "user-1",
    "traceloop.association.properties.feature": "weather",
}


def test_current_and_deprecated_genai_spans_give_the_same_llm_calls(collector):
    provider = TracerProvider(resource=Resource.create({"service.name": "weather-app", "tracehouse.tenant": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, timeout=30)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("answer question") as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes=CURRENT):
            pass
        with tracer.start_as_current_span("openai.chat", attributes=DEPRECATED) as failing:
            failing.set_status(Status(StatusCode.ERROR, "upstream 500"))
    root_id = format(root.get_span_context().span_id, "016x")
    provider.shutdown()
    collector.stop()

    rows = sql_rows(
        collector.data_dir,
        "SELECT span_name, parent_id, provider, model, request_model, response_model, temperature, prompt_tokens,"
        " completion_tokens, cached_tokens, total_tokens, system_prompt, messages, response, tool_calls, finish_reason,"
        " user_id, session_id, tenant_id, feature, status, error, latency_ms_total, cost_usd"
        " FROM llm_calls ORDER BY span_name",
    )
    assert [r["span_name"] for r in rows] == ["chat gpt-4o-mini", "openai.chat"]
    current, deprecated = rows
    assert current["status"] == "Unset" and current["error"] == ""
    assert deprecated["status"] == "Error" and deprecated["error"] == "upstream 500"
    for row in rows:
        assert row["parent_id"] == root_id
        assert (row["provider"], row["model"], row["request_model"], row["response_model"]) == (
            "openai",
            "gpt-4o-mini",
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
        )
        assert row["temperature"] == 0.3
        assert [int(row[k]) for k in ("prompt_tokens", "completion_tokens", "cached_tokens", "total_tokens")] == [
            1200,
            15,
            1024,
            1215,
        ]
        assert row["system_prompt"] == SYSTEM
        assert orjson.loads(row["messages"]) == [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
        assert orjson.loads(row["response"]) == [{"role": "assistant", "content": [], "tool_calls": [CALL]}]
        assert orjson.loads(row["tool_calls"]) == [CALL]
        assert row["finish_reason"] == "tool_call"
        assert (row["user_id"], row["session_id"], row["tenant_id"], row["feature"]) == (
            "user-1",
            "session-1",
            "acme",
            "weather",
        )
        assert row["latency_ms_total"] >= 0
        assert "cost_usd" in row  # filled by the pricing stage, not here

    (trace,) = sql_rows(
        collector.data_dir,
        "SELECT root_name, service, span_count, llm_call_count, prompt_tokens, completion_tokens, has_error,"
        " user_id, session_id FROM traces",
    )
    assert (trace["root_name"], trace["service"]) == ("answer question", "weather-app")
    assert [int(trace[k]) for k in ("span_count", "llm_call_count", "prompt_tokens", "completion_tokens")] == [
        3,
        2,
        2400,
        30,
    ]
    assert trace["has_error"] in (True, 1)
    assert (trace["user_id"], trace["session_id"]) == ("user-1", "session-1")


def test_content_written_twice_is_stored_once_and_wrapped_results_unwrapped(collector):
    """Spans as the instrumentations write them, exported by the OTel SDK: the Anthropic OpenInference turn (each
    tool call twice), a final answer written as content and as a contents part next to pydantic-ai's own gen_ai.*
    keys (time to first chunk in seconds), and an AI SDK 6 call whose history holds a wrapped tool result."""
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, timeout=30)))
    tracer = provider.get_tracer("test")
    final_answer = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "It is sunny.",
        "llm.output_messages.0.message.contents.0.message_content.type": "text",
        "llm.output_messages.0.message.contents.0.message_content.text": "It is sunny.",
        "gen_ai.operation.name": "chat",
        "gen_ai.client.operation.time_to_first_chunk": 0.42,
    }
    history = [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool-call", "toolCallId": "call_1", "toolName": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "tool",
            "content": [
                {
                    "type": "tool-result",
                    "toolCallId": "call_1",
                    "toolName": "get_weather",
                    "output": {"type": "json", "value": {"sky": "clear", "temp": 21}},
                }
            ],
        },
    ]
    vercel = {
        "ai.operationId": "ai.generateText.doGenerate",
        "ai.model.provider": "openai.chat",
        "ai.model.id": "gpt-4o-mini",
        "ai.prompt.messages": _dumps(history),
        "ai.response.text": "It is sunny.",
    }
    # Times to first chunk that no column can hold: the largest UInt64 (not a wrapped 0), and NULL.
    huge = {"gen_ai.operation.name": "chat", "gen_ai.client.operation.time_to_first_chunk": 1e300}
    not_a_number = {"gen_ai.operation.name": "chat", "gen_ai.client.operation.time_to_first_chunk": math.nan}
    spans = {
        "anthropic": ANTHROPIC_TOOL_TURN,
        "final answer": final_answer,
        "vercel": vercel,
        "huge": huge,
        "not a number": not_a_number,
    }
    for name, attrs in spans.items():
        with tracer.start_as_current_span(name, attributes=attrs):
            pass
    provider.shutdown()
    collector.stop()

    rows = {
        row["span_name"]: row
        for row in sql_rows(
            collector.data_dir,
            "SELECT span_name, messages, response, tool_calls, latency_ms_first_token FROM llm_calls",
        )
    }
    assert set(rows) == set(spans)
    assert rows["huge"]["latency_ms_first_token"] == (2**64 - 1) / 1e6
    assert rows["not a number"]["latency_ms_first_token"] is None
    paris = {"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    anthropic = rows["anthropic"]
    assert orjson.loads(anthropic["response"]) == [
        {"role": "assistant", "content": [{"type": "text", "text": "Let me check."}], "tool_calls": [paris]}
    ]
    assert orjson.loads(anthropic["tool_calls"]) == [paris]
    assert [len(m.get("tool_calls", ())) for m in orjson.loads(anthropic["messages"])] == [0, 1, 0]

    answer = rows["final answer"]
    assert orjson.loads(answer["response"]) == [
        {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]}
    ]
    assert answer["latency_ms_first_token"] == 420.0

    tool_message = orjson.loads(rows["vercel"]["messages"])[2]
    assert tool_message == {
        "role": "tool",
        "content": [{"type": "text", "text": '{"sky":"clear","temp":21}'}],
        "tool_call_id": "call_1",
        "name": "get_weather",
    }
