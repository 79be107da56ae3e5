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


# openinference-instrumentation-llama-index 4.6.1 with llama-index-llms-openai 0.8.3, a FunctionAgent step: the LLM
# object's `_prepare_chat_with_tools` is traced as an LLM span (its output the kwargs of the chat call that follows),
# then `astream_chat` makes the provider call.
LLAMA_INDEX_SETTINGS = {
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.system": "openai",
    "llm.model_name": "gpt-4o-mini",
    "llm.invocation_parameters": '{"context_window":128000,"num_output":-1,"is_chat_model":true,'
    '"is_function_calling_model":true,"model_name":"gpt-4o-mini","system_role":"system"}',
}
LLAMA_INDEX_PREPARE = {
    **LLAMA_INDEX_SETTINGS,
    "input.mime_type": "application/json",
    "input.value": '{"tools": ["<FunctionTool object>"], "user_msg": null, "chat_history": ["ChatMessage(role=<Mes'
    "sageRole.USER: 'user'>, additional_kwargs={}, blocks=[TextBlock(block_type='text', text='Weather?')])\"]}",
    "output.mime_type": "application/json",
    "output.value": '{"messages": ["ChatMessage(role=<MessageRole.USER: \'user\'>, additional_kwargs={}, blocks=[Tex'
    'tBlock(block_type=\'text\', text=\'Weather?\')])"], "tools": [{"type": "function"}]}',
}
LLAMA_INDEX_CHAT = {
    **LLAMA_INDEX_SETTINGS,
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Weather?",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "Sunny.",
    "llm.token_count.prompt": 10,
    "llm.token_count.completion": 2,
    "llm.token_count.total": 12,
    "output.value": "assistant: Sunny.",
}


def test_a_llama_index_llm_span_that_only_builds_the_request_is_not_an_llm_call():
    assert normalized(LLAMA_INDEX_PREPARE)["LlmSpanKind"] == "CHAIN"


def test_the_llama_index_llm_span_that_calls_the_provider_stays_an_llm_call():
    row = normalized(LLAMA_INDEX_CHAT)
    assert (row["LlmSpanKind"], row["InputTokens"], row["OutputTokens"]) == ("LLM", 10, 2)


def test_an_llm_span_with_only_a_json_answer_stays_an_llm_call():
    """Only a request (a `messages` list) in output.value marks a preparing step: an answer in JSON is a call."""
    answer = {**LLAMA_INDEX_SETTINGS, "output.mime_type": "application/json", "output.value": '{"answer": "Sunny."}'}
    assert normalized(answer)["LlmSpanKind"] == "LLM"
    assert normalized({**LLAMA_INDEX_PREPARE, "llm.token_count.prompt": 5})["LlmSpanKind"] == "LLM"


def test_a_cut_off_request_output_keeps_the_llm_span_and_its_row():
    """A malformed output.value (cut off mid-JSON) is not read as a request: the span stays what it said it is."""
    cut = {**LLAMA_INDEX_PREPARE, "output.value": LLAMA_INDEX_PREPARE["output.value"][:40]}
    row = normalized(cut)
    assert (row["LlmSpanKind"], row["LlmRequestModel"]) == ("LLM", "gpt-4o-mini")
    assert normalized({**LLAMA_INDEX_PREPARE, "output.mime_type": "text/plain"})["LlmSpanKind"] == "LLM"
