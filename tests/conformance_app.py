"""The conformance suite's app: one instrumentation, set up the way its users do, runs the suite's cases
against the local fake providers and exports its spans over OTLP/HTTP with the OTel SDK's own exporter.

    python conformance_app.py INSTRUMENTATION OTLP_TRACES_URL FAKE_BASE_URL

Run by tests/test_conformance.py, one process per instrumentation (instrumentors patch the SDKs globally).
Each case runs under a root span of its own, and its clients send the header `X-Conformance-Case`, so the
test can pair the fake's recorded exchanges with the collector's llm_calls rows. The script prints JSON
{case: trace id}; a missing framework is an ImportError, so its cases fail (CI installs them all).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SYSTEM_PROMPT = "You are a travel assistant. Answer in one short sentence. " * 100  # > 1024 tokens: cached
QUESTION = "What is the capital of France?"
WEATHER_QUESTION = "What's the weather in Paris?"
WEATHER = "18 degrees and sunny"
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CASE_HEADER = "X-Conformance-Case"
API_KEY = "sk-fake-conformance"


def get_weather(city: str) -> str:
    """Current weather for a city"""
    return WEATHER


# -- OpenAI SDK cases (OpenInference and OpenLLMetry instrument the same calls) ------------------------------


def _openai(base_url: str, case: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key=API_KEY, default_headers={CASE_HEADER: case}, max_retries=0)


def openai_chat(base_url: str) -> None:
    _openai(base_url, "chat").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}],
        temperature=0.2,
        max_tokens=100,
    )


def openai_chat_stream(base_url: str) -> None:
    stream = _openai(base_url, "chat_stream").chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}],
        temperature=0.2,
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass


def openai_tools(base_url: str) -> None:
    client = _openai(base_url, "tools")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER_PARAMETERS,
            },
        }
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    message = first.choices[0].message
    messages.append(message.model_dump(exclude_none=True, exclude={"annotations", "refusal"}))
    for call in message.tool_calls or []:
        arguments = json.loads(call.function.arguments)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)})
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)


def openai_responses(base_url: str) -> None:
    _openai(base_url, "responses").responses.create(
        model="gpt-4o-mini", instructions=SYSTEM_PROMPT, input=QUESTION, temperature=0.2, max_output_tokens=100
    )


def openai_responses_stream(base_url: str) -> None:
    stream = _openai(base_url, "responses_stream").responses.create(
        model="gpt-4o-mini", instructions=SYSTEM_PROMPT, input=QUESTION, stream=True
    )
    for _ in stream:
        pass


def openai_responses_tools(base_url: str) -> None:
    client = _openai(base_url, "responses_tools")
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": WEATHER_PARAMETERS,
        }
    ]
    items: list[Any] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = client.responses.create(model="gpt-4o-mini", input=items, tools=tools)
    for item in first.output:
        if item.type == "function_call":
            items.append(
                {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments}
            )
            output = get_weather(**json.loads(item.arguments))
            items.append({"type": "function_call_output", "call_id": item.call_id, "output": output})
    client.responses.create(model="gpt-4o-mini", input=items, tools=tools)


OPENAI_CASES: dict[str, Callable[[str], None]] = {
    "chat": openai_chat,
    "chat_stream": openai_chat_stream,
    "tools": openai_tools,
    "responses": openai_responses,
    "responses_stream": openai_responses_stream,
    "responses_tools": openai_responses_tools,
}


# -- Anthropic SDK cases ----------------------------------------------------------------------------------


def _anthropic(base_url: str, case: str) -> Any:
    import anthropic

    return anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key=API_KEY, default_headers={CASE_HEADER: case}, max_retries=0
    )


CACHED_SYSTEM = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]


def anthropic_messages(base_url: str) -> None:
    """The long system prompt is marked for caching: this first call writes it to the cache."""
    _anthropic(base_url, "messages").messages.create(
        model="claude-haiku-4-5",
        max_tokens=200,
        system=CACHED_SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    )


def anthropic_messages_stream(base_url: str) -> None:
    """The same prompt again, streamed the way the SDK's docs show: a cache read."""
    with _anthropic(base_url, "messages_stream").messages.stream(
        model="claude-haiku-4-5",
        max_tokens=200,
        system=CACHED_SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        for _ in stream.text_stream:
            pass


def anthropic_tools(base_url: str) -> None:
    client = _anthropic(base_url, "tools")
    tools = [{"name": "get_weather", "description": "Current weather for a city", "input_schema": WEATHER_PARAMETERS}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = client.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=messages, tools=tools)
    messages.append({"role": "assistant", "content": [block.model_dump() for block in first.content]})
    results = [
        {"type": "tool_result", "tool_use_id": block.id, "content": get_weather(**block.input)}
        for block in first.content
        if block.type == "tool_use"
    ]
    messages.append({"role": "user", "content": results})
    client.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=messages, tools=tools)


ANTHROPIC_CASES: dict[str, Callable[[str], None]] = {
    "messages": anthropic_messages,
    "messages_stream": anthropic_messages_stream,
    "tools": anthropic_tools,
}


# -- Agent frameworks -------------------------------------------------------------------------------------


def langchain_agent(base_url: str) -> None:
    """LangChain 1.x's documented agent: create_agent with a chat model and a tool."""
    from langchain.agents import create_agent
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=base_url,
        api_key=API_KEY,
        temperature=0.2,
        max_retries=0,
        default_headers={CASE_HEADER: "agent"},
    )
    agent = create_agent(model, tools=[tool(get_weather)], system_prompt="You are a weather assistant.")
    agent.invoke({"messages": [{"role": "user", "content": WEATHER_QUESTION}]})


def pydantic_ai_agent(base_url: str, provider: TracerProvider) -> None:
    """pydantic-ai's own instrumentation, an agent with one tool. pydantic-ai 2.x took `Agent(instrument=...)`
    out: instrumentation is the `Instrumentation` capability (what `Agent.instrument_all()` adds to every agent)."""
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.capabilities.instrumentation import Instrumentation
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(base_url=base_url, api_key=API_KEY, default_headers={CASE_HEADER: "agent"}, max_retries=0)
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    agent = Agent(
        model,
        instructions="You are a weather assistant.",
        tools=[get_weather],
        capabilities=[Instrumentation(settings=InstrumentationSettings(tracer_provider=provider))],
        model_settings={"temperature": 0.2},
    )
    asyncio.run(agent.run(WEATHER_QUESTION))


def _llama_index_llm(base_url: str, case: str, **settings: Any) -> Any:
    """LlamaIndex's OpenAI LLM. Streamed calls ask for usage (`stream_options` in additional_kwargs, which the LLM
    drops from non-streamed requests): without it a stream has no token counts to compare."""
    from llama_index.llms.openai import OpenAI

    return OpenAI(
        model="gpt-4o-mini",
        api_base=base_url,
        api_key=API_KEY,
        max_retries=0,
        default_headers={CASE_HEADER: case},
        additional_kwargs={"stream_options": {"include_usage": True}},
        **settings,
    )


def _llama_index_messages() -> list[Any]:
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role="system", content=SYSTEM_PROMPT), ChatMessage(role="user", content=QUESTION)]


def llama_index_chat(base_url: str) -> None:
    _llama_index_llm(base_url, "chat", temperature=0.2, max_tokens=100).chat(_llama_index_messages())


def llama_index_chat_stream(base_url: str) -> None:
    for _ in _llama_index_llm(base_url, "chat_stream", temperature=0.2).stream_chat(_llama_index_messages()):
        pass


def llama_index_agent(base_url: str) -> None:
    """LlamaIndex's documented agent: a FunctionAgent (workflow) with a function tool, run to its answer."""
    from llama_index.core.agent.workflow import FunctionAgent

    agent = FunctionAgent(
        tools=[get_weather],
        llm=_llama_index_llm(base_url, "agent", temperature=0.2),
        system_prompt="You are a weather assistant.",
    )

    async def run() -> None:
        await agent.run(user_msg=WEATHER_QUESTION)

    asyncio.run(run())


LLAMA_INDEX_CASES: dict[str, Callable[[str], None]] = {
    "chat": llama_index_chat,
    "chat_stream": llama_index_chat_stream,
    "agent": llama_index_agent,
}


def instrument(instrumentation: str, provider: TracerProvider) -> dict[str, Callable[[str], None]]:
    """Turn the instrumentation on as its docs say; the cases it runs."""
    if instrumentation == "openinference-openai":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        return OPENAI_CASES
    if instrumentation == "openllmetry-openai":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        return OPENAI_CASES
    if instrumentation == "openinference-anthropic":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor

        AnthropicInstrumentor().instrument(tracer_provider=provider)
        return ANTHROPIC_CASES
    if instrumentation == "openinference-langchain":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=provider)
        return {"agent": langchain_agent}
    if instrumentation == "openinference-llama-index":
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

        LlamaIndexInstrumentor().instrument(tracer_provider=provider)
        return LLAMA_INDEX_CASES
    if instrumentation == "pydantic-ai":
        return {"agent": lambda base_url: pydantic_ai_agent(base_url, provider)}
    raise SystemExit(f"unknown instrumentation {instrumentation!r}")


def main(instrumentation: str, traces_url: str, base_url: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": f"conformance-{instrumentation}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url, timeout=30)))
    cases = instrument(instrumentation, provider)
    tracer = provider.get_tracer("conformance")
    traces: dict[str, str] = {}
    for case, run in cases.items():
        with tracer.start_as_current_span(f"conformance {case}") as span:
            traces[case] = format(span.get_span_context().trace_id, "032x")
            run(base_url)
    provider.shutdown()  # flushes the batch processor: every span is exported before the script ends
    print(json.dumps(traces))


if __name__ == "__main__":
    main(*sys.argv[1:4])
