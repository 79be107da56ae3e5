"""The normalize stage on spans built as OTLP and decoded for real, one convention at a time."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from normalize_support import START, loads, normalized, normalized_rows, request

from tracehouse.collector.columns import LLM_COLUMNS
from tracehouse.collector.config import Config
from tracehouse.collector.processing import process_batch
from tracehouse.collector.stages import default_stages
from tracehouse.collector.stages.decode import decode_request
from tracehouse.collector.stages.normalize import RedactedCuts, normalize
from tracehouse.collector.stages.normalize.registry import ATTRIBUTE_PREFIXES, MAPPERS

TOOLS_JSON = '{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}'  # noqa: E501
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather by city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_columns_are_exactly_the_migration_columns():
    sql = (Path(__file__).parent.parent / "schema" / "0002_llm_columns.sql").read_text()
    assert set(LLM_COLUMNS) == set(re.findall(r"ADD COLUMN IF NOT EXISTS (\w+)", sql))


def test_default_stages_run_normalize_first():
    first = default_stages(Config())[0]
    assert isinstance(first, RedactedCuts)  # redaction on: what normalize cuts is redacted whole first
    off = default_stages(Config(redaction=replace(Config().redaction, enabled=False)))[0]
    assert off is normalize


def test_coarse_prefixes_cover_every_mapper():
    for mapper in MAPPERS:
        for prefix in mapper.prefixes:
            assert prefix.startswith(ATTRIBUTE_PREFIXES), (mapper.name, prefix)


# --- OpenInference -------------------------------------------------------------------------------

OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "azure",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.invocation_parameters": '{"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 100, "top_p": 0.9}',
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Be brief.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "Weather in Paris?",
    "llm.input_messages.1.message.contents.1.message_content.type": "image",
    "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://x.test/p.png",
    "llm.input_messages.2.message.role": "assistant",
    "llm.input_messages.2.message.tool_calls.0.tool_call.id": "call_0",
    "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "get_weather",
    "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": '{"city": "Lyon"}',
    "llm.input_messages.3.message.role": "tool",
    "llm.input_messages.3.message.content": "sunny",
    "llm.input_messages.3.message.tool_call_id": "call_0",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
    "llm.tools.0.tool.json_schema": TOOLS_JSON,
    "llm.token_count.prompt": 50,
    "llm.token_count.completion": 10,
    "llm.token_count.prompt_details.cache_read": 20,
    "llm.token_count.prompt_details.cache_write": 5,
    "llm.token_count.completion_details.reasoning": 3,
    "llm.token_count.prompt_details.audio": 2,
    "llm.finish_reason": "tool_calls",
    "llm.prompt_template.template": "Weather in {city}?",
    "llm.prompt_template.variables": '{"city": "Paris"}',
    "llm.prompt_template.version": "v3",
    "session.id": "s-1",
    "user.id": "u-1",
    "metadata": '{"feature": "weather", "tenant_id": "acme", "plan": "pro"}',
    "tag.tags": ["prod", "beta"],
}


def test_openinference_llm_span():
    row = normalized(OPENINFERENCE_LLM, events=[("First Token Stream Event", 250_000_000, {})])
    assert row["LlmSpanKind"] == "LLM"
    assert row["LlmOperation"] == "chat"
    assert row["LlmProvider"] == "azure"  # llm.provider (the host) wins over llm.system
    assert row["LlmRequestModel"] == "gpt-4o-mini"
    assert row["LlmResponseModel"] == "gpt-4o-mini-2024-07-18"
    assert (row["InputTokens"], row["OutputTokens"], row["TotalTokens"]) == (50, 10, 60)
    assert (row["CacheReadTokens"], row["CacheWriteTokens"], row["ReasoningTokens"]) == (20, 5, 3)
    assert row["InputAudioTokens"] == 2 and row["OutputAudioTokens"] is None
    assert row["Temperature"] == 0.2 and row["TopP"] == 0.9 and row["MaxTokens"] == 100
    assert loads(row["InvocationParameters"])["model"] == "gpt-4o-mini"
    assert row["SystemPrompt"] == "Be brief."
    assert loads(row["InputMessages"]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image", "url": "https://x.test/p.png"},
            ],
        },
        {
            "role": "assistant",
            "content": [],
            "tool_calls": [{"id": "call_0", "name": "get_weather", "arguments": {"city": "Lyon"}}],
        },
        {"role": "tool", "content": [{"type": "text", "text": "sunny"}], "tool_call_id": "call_0"},
    ]
    call = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert loads(row["OutputMessages"]) == [{"role": "assistant", "content": [], "tool_calls": [call]}]
    assert loads(row["ToolCalls"]) == [call]
    assert loads(row["Tools"]) == [WEATHER_TOOL]
    assert row["FinishReason"] == "tool_call"
    assert row["TimeToFirstToken"] == 250_000_000
    assert (row["UserId"], row["SessionId"], row["Feature"], row["TenantId"]) == ("u-1", "s-1", "weather", "acme")
    assert row["PromptTemplate"] == "Weather in {city}?"
    assert row["PromptVersion"] == "v3"
    assert loads(row["PromptVariables"]) == {"city": "Paris"}
    assert row["Tags"] == ["prod", "beta"]
    assert loads(row["Metadata"]) == {"feature": "weather", "tenant_id": "acme", "plan": "pro"}


def test_openinference_anthropic_style_exclusive_prompt_count_is_converted():
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "llm.system": "anthropic",
            "llm.token_count.prompt": 12,  # input_tokens without the cache, as some instrumentations report it
            "llm.token_count.completion": 30,
            "llm.token_count.total": 42,
            "llm.token_count.prompt_details.cache_read": 1000,
            "llm.token_count.prompt_details.cache_write": 200,
        }
    )
    assert row["InputTokens"] == 1212
    assert row["TotalTokens"] == 1242
    assert (row["CacheReadTokens"], row["CacheWriteTokens"]) == (1000, 200)


def test_openinference_input_value_is_the_fallback_for_messages():
    row = normalized(
        {
            "openinference.span.kind": "LLM",
            "input.value": '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
            "input.mime_type": "application/json",
            "output.value": "hello there",
        }
    )
    assert loads(row["InputMessages"]) == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert loads(row["OutputMessages"]) == [{"role": "assistant", "content": [{"type": "text", "text": "hello there"}]}]


def test_openinference_tool_chain_retriever_embedding_spans():
    tool, chain, retriever, embedding = normalized_rows(
        [
            {
                "attrs": {
                    "openinference.span.kind": "TOOL",
                    "tool.name": "get_weather",
                    "tool.description": "Weather by city",
                    "tool.parameters": '{"type": "object"}',
                    "input.value": '{"city": "Paris"}',
                    "output.value": "sunny",
                }
            },
            {"attrs": {"openinference.span.kind": "CHAIN", "input.value": "question", "output.value": "answer"}},
            {
                "attrs": {
                    "openinference.span.kind": "RETRIEVER",
                    "input.value": "paris weather",
                    "retrieval.documents.0.document.id": "d1",
                    "retrieval.documents.0.document.content": "Paris is sunny",
                    "retrieval.documents.0.document.score": 0.9,
                }
            },
            {
                "attrs": {
                    "openinference.span.kind": "EMBEDDING",
                    "embedding.model_name": "text-embedding-3-small",
                    "embedding.embeddings.0.embedding.text": "hello",
                    "llm.token_count.prompt": 2,
                }
            },
        ]
    )
    assert (tool["LlmSpanKind"], tool["LlmOperation"]) == ("TOOL", "execute_tool")
    assert loads(tool["ToolCalls"]) == [{"id": "", "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert loads(tool["Tools"])[0]["name"] == "get_weather"
    assert loads(tool["OutputMessages"])[0]["content"] == [{"type": "text", "text": "sunny"}]
    assert (chain["LlmSpanKind"], chain["LlmOperation"], chain["InputMessages"]) == ("CHAIN", "", "")
    assert retriever["LlmOperation"] == "retrieval"
    assert loads(retriever["OutputMessages"]) == [
        {"role": "retriever", "content": [{"type": "document", "id": "d1", "text": "Paris is sunny", "score": 0.9}]}
    ]
    assert (embedding["LlmSpanKind"], embedding["LlmOperation"]) == ("EMBEDDING", "embeddings")
    assert embedding["LlmRequestModel"] == "text-embedding-3-small"
    assert embedding["InputTokens"] == 2 and embedding["TotalTokens"] is None


# --- OTel GenAI, current ---------------------------------------------------------------------------

GENAI_INPUT = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "Lyon"}}],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_0", "response": "sunny"}]},
]
GENAI_OUTPUT = [
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        "finish_reason": "tool_call",
    }
]
GENAI_SYSTEM = [{"type": "text", "content": "Be brief."}]
EXPECTED_INPUT = [
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "content": [],
        "tool_calls": [{"id": "call_0", "name": "get_weather", "arguments": {"city": "Lyon"}}],
    },
    {"role": "tool", "content": [{"type": "text", "text": "sunny"}], "tool_call_id": "call_0"},
]
EXPECTED_OUTPUT = [
    {
        "role": "assistant",
        "content": [],
        "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    }
]


def json_or_value(value):
    return loads(value) if isinstance(value, str) and value[:1] in ("[", "{") else value


def genai_current(structured: bool) -> dict:
    import orjson

    def encode(value):
        return value if structured else orjson.dumps(value).decode()

    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "gcp.vertex_ai",
        "gen_ai.request.model": "gemini-2.5-flash",
        "gen_ai.response.model": "gemini-2.5-flash-001",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 256,
        "gen_ai.request.top_p": 1.0,
        "gen_ai.request.stop_sequences": ["END"],
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 40,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.usage.cache_creation.input_tokens": 0,
        "gen_ai.usage.reasoning.output_tokens": 12,
        "gen_ai.input.messages": encode(GENAI_INPUT),
        "gen_ai.output.messages": encode(GENAI_OUTPUT),
        "gen_ai.system_instructions": encode(GENAI_SYSTEM),
        "gen_ai.tool.definitions": encode([WEATHER_TOOL]),
        "gen_ai.response.finish_reasons": ["tool_call"],
        "gen_ai.conversation.id": "conv-9",
        "gen_ai.response.time_to_first_chunk": 0.35,
    }


def test_genai_current_json_strings_and_structured_values_agree():
    as_json = normalized(genai_current(structured=False))
    structured = normalized(genai_current(structured=True))
    # Structured maps reach us with sorted keys (decode renders them as the exporter does): compare as JSON.
    assert {k: json_or_value(v) for k, v in as_json.items()} == {k: json_or_value(v) for k, v in structured.items()}
    row = as_json
    assert (row["LlmSpanKind"], row["LlmOperation"], row["LlmProvider"]) == ("LLM", "chat", "google")
    assert (row["LlmRequestModel"], row["LlmResponseModel"]) == ("gemini-2.5-flash", "gemini-2.5-flash-001")
    assert (row["InputTokens"], row["OutputTokens"], row["TotalTokens"]) == (120, 40, 160)
    assert (row["CacheReadTokens"], row["CacheWriteTokens"], row["ReasoningTokens"]) == (100, 0, 12)
    assert row["Temperature"] == 0.5 and row["TopP"] == 1.0 and row["MaxTokens"] == 256
    assert loads(row["InvocationParameters"]) == {
        "temperature": 0.5,
        "top_p": 1,
        "max_tokens": 256,
        "stop_sequences": ["END"],
    }
    assert row["SystemPrompt"] == "Be brief."
    assert loads(row["InputMessages"]) == EXPECTED_INPUT
    assert loads(row["OutputMessages"]) == EXPECTED_OUTPUT
    assert loads(row["ToolCalls"]) == EXPECTED_OUTPUT[0]["tool_calls"]
    assert loads(row["Tools"]) == [WEATHER_TOOL]
    assert row["FinishReason"] == "tool_call"
    assert row["SessionId"] == "conv-9"
    assert row["TimeToFirstToken"] == 350_000_000


def test_genai_operation_details_event_carries_the_content():
    row = normalized(
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
        events=[
            (
                "gen_ai.client.inference.operation.details",
                10,
                {"gen_ai.input.messages": GENAI_INPUT, "gen_ai.output.messages": GENAI_OUTPUT},
            )
        ],
    )
    assert loads(row["InputMessages"]) == EXPECTED_INPUT
    assert loads(row["OutputMessages"]) == EXPECTED_OUTPUT


def test_genai_execute_tool_and_agent_spans():
    tool, agent = normalized_rows(
        [
            {
                "attrs": {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": "call_1",
                    "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                    "gen_ai.tool.call.result": '{"forecast": "sunny"}',
                }
            },
            {"attrs": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}},
        ]
    )
    assert (tool["LlmSpanKind"], tool["LlmOperation"]) == ("TOOL", "execute_tool")
    assert loads(tool["ToolCalls"]) == [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert loads(tool["OutputMessages"]) == [
        {
            "role": "tool",
            "content": [{"type": "text", "text": '{"forecast":"sunny"}'}],
            "tool_call_id": "call_1",
            "name": "get_weather",
        }
    ]
    assert (agent["LlmSpanKind"], agent["LlmOperation"]) == ("AGENT", "invoke_agent")


# --- deprecated GenAI and OpenLLMetry -------------------------------------------------------------

OPENLLMETRY = {
    "gen_ai.system": "Anthropic",
    "llm.request.type": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.request.temperature": 0.5,
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "Be brief.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": '[{"type": "text", "text": "Weather in Paris?"}]',
    "gen_ai.prompt.2.role": "assistant",
    "gen_ai.prompt.2.tool_calls.0.id": "call_0",
    "gen_ai.prompt.2.tool_calls.0.name": "get_weather",
    "gen_ai.prompt.2.tool_calls.0.arguments": '{"city": "Lyon"}',
    "gen_ai.prompt.3.role": "tool",
    "gen_ai.prompt.3.content": "sunny",
    "gen_ai.prompt.3.tool_call_id": "call_0",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.finish_reason": "tool_use",
    "gen_ai.completion.0.tool_calls.0.id": "call_1",
    "gen_ai.completion.0.tool_calls.0.name": "get_weather",
    "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
    "gen_ai.usage.prompt_tokens": 120,
    "gen_ai.usage.completion_tokens": 40,
    "gen_ai.usage.cache_read_input_tokens": 100,
    "llm.usage.total_tokens": 160,
    "llm.request.functions.0.name": "get_weather",
    "llm.request.functions.0.description": "Weather by city",
    "llm.request.functions.0.parameters": '{"type": "object", "properties": {"city": {"type": "string"}}}',
    "traceloop.association.properties.user_id": "u-2",
    "traceloop.association.properties.session_id": "s-2",
    "traceloop.association.properties.feature": "weather",
    "traceloop.association.properties.tenant_id": "acme",
}


def test_openllmetry_indexed_attributes():
    row = normalized(OPENLLMETRY)
    assert (row["LlmSpanKind"], row["LlmOperation"], row["LlmProvider"]) == ("LLM", "chat", "anthropic")
    assert (row["LlmRequestModel"], row["LlmResponseModel"]) == ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")
    assert (row["InputTokens"], row["OutputTokens"], row["TotalTokens"], row["CacheReadTokens"]) == (120, 40, 160, 100)
    assert row["SystemPrompt"] == "Be brief."
    assert loads(row["InputMessages"]) == EXPECTED_INPUT
    assert loads(row["OutputMessages"]) == EXPECTED_OUTPUT
    assert loads(row["Tools"]) == [WEATHER_TOOL]
    assert row["FinishReason"] == "tool_call"
    assert row["Temperature"] == 0.5
    assert (row["UserId"], row["SessionId"], row["Feature"], row["TenantId"]) == ("u-2", "s-2", "weather", "acme")


def test_deprecated_genai_message_events():
    row = normalized(
        {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.prompt_tokens": 9},
        events=[
            ("gen_ai.system.message", 1, {"gen_ai.system": "openai", "content": "Be brief."}),
            ("gen_ai.user.message", 2, {"content": "Weather in Paris?"}),
            (
                "gen_ai.assistant.message",
                3,
                {
                    "tool_calls": [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                        }
                    ]
                },  # noqa: E501
            ),
            ("gen_ai.tool.message", 4, {"content": "sunny", "id": "call_0"}),
            (
                "gen_ai.choice",
                5,
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {"role": "assistant"},
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
            ),
        ],
    )
    assert row["LlmProvider"] == "openai"
    assert row["SystemPrompt"] == "Be brief."
    assert loads(row["InputMessages"]) == EXPECTED_INPUT
    assert loads(row["OutputMessages"]) == EXPECTED_OUTPUT
    assert row["FinishReason"] == "tool_call"
    assert row["InputTokens"] == 9


def test_older_content_events():
    row = normalized(
        {"gen_ai.system": "openai"},
        events=[
            ("gen_ai.content.prompt", 1, {"gen_ai.prompt": '[{"role": "user", "content": "hi"}]'}),
            ("gen_ai.content.completion", 2, {"gen_ai.completion": "hello"}),
        ],
    )
    assert loads(row["InputMessages"]) == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert loads(row["OutputMessages"]) == [{"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]


def test_traceloop_workflow_and_tool_kinds():
    workflow, tool = normalized_rows(
        [
            {"attrs": {"traceloop.span.kind": "workflow", "traceloop.entity.name": "answer"}},
            {
                "attrs": {
                    "traceloop.span.kind": "tool",
                    "traceloop.entity.name": "get_weather",
                    "traceloop.entity.input": '{"args": [], "kwargs": {"city": "Paris"}}',
                    "traceloop.entity.output": '"sunny"',
                }
            },
        ]
    )
    assert (workflow["LlmSpanKind"], workflow["LlmOperation"]) == ("CHAIN", "")
    assert (tool["LlmSpanKind"], tool["LlmOperation"]) == ("TOOL", "execute_tool")
    assert loads(tool["ToolCalls"])[0]["name"] == "get_weather"


# --- Vercel AI SDK ---------------------------------------------------------------------------------


def test_vercel_ai_sdk_do_generate_span():
    row = normalized(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": "openai.chat",
            "ai.model.id": "gpt-4o-mini",
            "ai.prompt.messages": '[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Weather in Paris?"}]}]',  # noqa: E501
            "ai.prompt.tools": [orjson_text(WEATHER_TOOL)],
            "ai.response.toolCalls": '[{"toolCallType":"function","toolCallId":"call_1","toolName":"get_weather","args":"{\\"city\\":\\"Paris\\"}"}]',  # noqa: E501
            "ai.response.finishReason": "tool-calls",
            "ai.usage.promptTokens": 20,
            "ai.usage.completionTokens": 5,
            "ai.settings.temperature": 0.1,
            "ai.telemetry.metadata.userId": "u-3",
            "ai.telemetry.metadata.feature": "weather",
            "ai.response.msToFirstChunk": 120.5,
        }
    )
    assert (row["LlmSpanKind"], row["LlmProvider"], row["LlmRequestModel"]) == ("LLM", "openai", "gpt-4o-mini")
    assert (row["InputTokens"], row["OutputTokens"], row["TotalTokens"]) == (20, 5, 25)
    assert row["SystemPrompt"] == "Be brief."
    assert loads(row["InputMessages"]) == [EXPECTED_INPUT[0]]
    assert loads(row["ToolCalls"]) == EXPECTED_OUTPUT[0]["tool_calls"]
    assert loads(row["Tools"]) == [WEATHER_TOOL]
    assert row["FinishReason"] == "tool_call"
    assert (row["UserId"], row["Feature"]) == ("u-3", "weather")
    assert row["TimeToFirstToken"] == 120_500_000


def orjson_text(value) -> str:
    import orjson

    return orjson.dumps(value).decode()


# --- identity, errors, plain spans -----------------------------------------------------------------


def test_tenant_and_feature_precedence():
    row = normalized(
        {"openinference.span.kind": "LLM", "metadata": '{"tenant_id": "from-metadata", "feature": "f-meta"}'},
        resource={"tracehouse.tenant": "from-resource", "tracehouse.feature": "f-res"},
    )
    assert (row["TenantId"], row["Feature"]) == ("from-metadata", "f-meta")
    row = normalized(
        {"openinference.span.kind": "LLM", "tracehouse.tenant": "from-span", "metadata": '{"tenant_id": "m"}'},
        resource={"tracehouse.tenant": "from-resource"},
    )
    assert row["TenantId"] == "from-span"
    plain = normalized({"http.route": "/x"}, resource={"tracehouse.tenant": "r", "tracehouse.feature": "f"})
    assert (plain["TenantId"], plain["Feature"]) == ("r", "f")


def test_api_key_tenant_overrides_everything():
    """Normalize reads the tenant the app claims; with an API key's tenant, the pipeline's processing stores
    that one instead, over the span's, its metadata's and its resource's claims."""
    claims = {"openinference.span.kind": "LLM", "tracehouse.tenant": "span", "metadata": '{"tenant_id": "meta"}'}
    spans = [{"attrs": claims}, {"attrs": {}}]

    def tenants(key_tenant: str | None) -> list[str]:
        batch = decode_request(request(spans, resource={"tracehouse.tenant": "resource"})).batch
        return process_batch([normalize], batch, key_tenant).columns["TenantId"]

    assert tenants(None) == ["span", "resource"]
    assert tenants("key") == ["key", "key"]
    assert [row["TenantId"] for row in normalized_rows([{"attrs": {}}])] == [""]


def test_errors_from_exception_events_error_type_and_status():
    failed, typed, status_only, handled = normalized_rows(
        [
            {
                "attrs": {"openinference.span.kind": "LLM"},
                "events": [("exception", 5, {"exception.type": "openai.RateLimitError", "exception.message": "429"})],
                "status": ("error", "Error code: 429"),
            },
            {"attrs": {"gen_ai.operation.name": "chat", "error.type": "timeout"}, "status": ("error", "timed out")},
            {"attrs": {"http.route": "/x"}, "status": ("error", "boom")},
            {"attrs": {"http.route": "/x"}, "events": [("exception", 5, {"exception.type": "KeyError"})]},
        ]
    )
    assert (failed["ErrorType"], failed["ErrorMessage"]) == ("openai.RateLimitError", "429")
    assert (typed["ErrorType"], typed["ErrorMessage"]) == ("timeout", "timed out")
    assert (status_only["ErrorType"], status_only["ErrorMessage"]) == ("", "boom")
    assert handled["ErrorType"] == "KeyError"  # status Unset: the exception escaped


def test_plain_span_stays_plain():
    row = normalized(
        {"http.route": "/items/{id}", "http.response.status_code": 200, "user.id": "u-9", "session.id": "s-9"},
        events=[("message", 1, {"message.type": "SENT"})],
    )
    assert row["UserId"] == "u-9" and row["SessionId"] == "s-9"
    rest = {k: v for k, v in row.items() if k not in ("UserId", "SessionId")}
    assert all(v in ("", None, []) for v in rest.values()), {k: v for k, v in rest.items() if v not in ("", None, [])}


def test_attribute_dicts_are_not_mutated():
    batch = decode_request(request([{"attrs": OPENINFERENCE_LLM}, {"attrs": OPENLLMETRY}])).batch
    before = [dict(a) for a in batch.columns["SpanAttributes"]], [dict(a) for a in batch.columns["ResourceAttributes"]]
    normalize(batch)
    after = [dict(a) for a in batch.columns["SpanAttributes"]], [dict(a) for a in batch.columns["ResourceAttributes"]]
    assert before == after
    assert all(len(batch.columns[name]) == len(batch) for name in LLM_COLUMNS)


def test_time_to_first_token_ignores_events_before_start():
    row = normalized({"openinference.span.kind": "LLM"}, events=[("First Token Stream Event", -5, {})])
    assert row["TimeToFirstToken"] is None
    assert START > 0
