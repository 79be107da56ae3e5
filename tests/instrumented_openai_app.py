"""An app instrumented for real, run by tests/test_instrumented_openai.py in its own process (instrumentors
patch the openai module globally, so each instrumentation gets a fresh interpreter).

    python instrumented_openai_app.py openinference|openllmetry OTLP_ENDPOINT OPENAI_BASE_URL SERVICE

- openinference: `tracehouse.instrumentation.setup()` over OTLP/gRPC, which turns on the installed
  OpenInference openai instrumentor;
- openllmetry: a plain SDK tracer provider with the OTLP/HTTP exporter, tracehouse's ContextSpanProcessor,
  and OpenLLMetry's `opentelemetry-instrumentation-openai`.

The real openai client then talks to the fake provider at OPENAI_BASE_URL through the scenarios below, and
the script prints JSON: per scenario the spans it produced (ids, names, attributes, as the app saw them)
and what the client got back, for the test to compare with the collector's llm_calls rows.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import openai
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from tracehouse.instrumentation import chain, step, tagged

SYSTEM_PROMPT = "You are a travel assistant. Answer in one short sentence. " * 100  # > 1024 tokens: cached
QUESTION = "What is the capital of France?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TAGS = {
    "user": "user-7",
    "session": "session-42",
    "feature": "trip-planner",
    "metadata": {"experiment": "b"},
    "tags": ["beta"],
    "prompt_template": "Plan a trip to {city}",
    "prompt_version": "v3",
    "prompt_variables": {"city": "Lisbon"},
    "prompt_name": "plan-trip",
}


class Recorder(SpanProcessor):
    """Keeps every finished span, so the script can say which spans each scenario made."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        parent = span.parent.span_id if span.parent else None
        with self._lock:
            self.spans.append(
                {
                    "name": span.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": format(parent, "016x") if parent else "",
                    "attributes": {key: str(value) for key, value in (span.attributes or {}).items()},
                    "events": [event.name for event in span.events],
                }
            )


def configure(instrumentation: str, endpoint: str, service: str, recorder: Recorder) -> Any:
    if instrumentation == "openinference":
        from tracehouse.instrumentation import enabled_instrumentors, setup

        provider = setup(service_name=service, endpoint=endpoint, protocol="grpc")
        provider.add_span_processor(recorder)
        return provider, list(enabled_instrumentors())
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from tracehouse.instrumentation import ContextSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(ContextSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    provider.add_span_processor(recorder)
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider, ["openllmetry-openai"]


def usage_of(response: Any) -> dict[str, Any]:
    return response.usage.model_dump() if response.usage else {}


def chat(client: openai.OpenAI) -> dict[str, Any]:
    response = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}],
        temperature=0.2,
    )
    return {"content": response.choices[0].message.content, "model": response.model, "usage": usage_of(response)}


def reasoning(client: openai.OpenAI) -> dict[str, Any]:
    response = client.chat.completions.create(
        model="o4-mini",
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "Plan three days in Rome."},
        ],
    )
    return {"content": response.choices[0].message.content, "model": response.model, "usage": usage_of(response)}


def stream(client: openai.OpenAI) -> dict[str, Any]:
    chunks = client.chat.completions.create(
        model="o4-mini",
        messages=[{"role": "user", "content": "Name three rivers in Europe."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, usage, model = "", {}, ""
    for chunk in chunks:
        model = chunk.model
        if chunk.choices and chunk.choices[0].delta.content:
            content += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage.model_dump()
    return {"content": content, "model": model, "usage": usage}


def tools(client: openai.OpenAI) -> dict[str, Any]:
    """A tool-call round trip inside an agent step: model -> tool call -> tool step -> model."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What's the weather in Paris?"}]
    with step("weather-agent", kind="AGENT", input=messages[0]["content"]):
        first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
        call = first.choices[0].message.tool_calls[0]
        arguments = json.loads(call.function.arguments)
        with step("get_weather", kind="TOOL", input=arguments, attributes={"tool_call.id": call.id}) as tool_step:
            result = "18 degrees and sunny"
            tool_step.set_output(result)
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    return {
        "tool_call": {"id": call.id, "name": call.function.name, "arguments": json.loads(call.function.arguments)},
        "usage": [usage_of(first), usage_of(second)],
        "content": second.choices[0].message.content,
    }


def error(client: openai.OpenAI) -> dict[str, Any]:
    try:
        client.chat.completions.create(model="error-429", messages=[{"role": "user", "content": "Hello?"}])
    except openai.RateLimitError as exc:
        return {"status": exc.status_code, "message": exc.message}
    raise AssertionError("the fake provider did not fail")


def nested(client: openai.OpenAI) -> dict[str, Any]:
    @chain("summarize")
    def summarize(text: str) -> str:
        response = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Summarize: {text}"}]
        )
        return response.choices[0].message.content or ""

    @chain("plan-trip")
    def plan_trip(city: str) -> str:
        response = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Plan a trip to {city}"}]
        )
        return summarize(response.choices[0].message.content or "")

    with tagged(**TAGS):
        return {"output": plan_trip("Lisbon")}


SCENARIOS = {"chat": chat, "reasoning": reasoning, "stream": stream, "tools": tools, "error": error, "nested": nested}


def main() -> None:
    instrumentation, endpoint, base_url, service = sys.argv[1:5]
    recorder = Recorder()
    provider, instrumentors = configure(instrumentation, endpoint, service, recorder)
    client = openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)
    out: dict[str, Any] = {"instrumentors": instrumentors, "scenarios": {}}
    for name, scenario in SCENARIOS.items():
        before = len(recorder.spans)
        result = scenario(client)
        out["scenarios"][name] = {"result": result, "spans": recorder.spans[before:]}
    if instrumentation == "openinference":
        from tracehouse.instrumentation import shutdown

        shutdown()
    else:
        provider.shutdown()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
