"""Normalization cost per span: an OpenInference LLM span (~15 attributes, two 2 KB texts) and a plain span,
then the same call in the other conventions, and the LLM span with a key set never seen before.

Run: .venv/bin/python bench/bench_normalize.py [spans-per-batch] [--clock cpu]
Spans are decoded once; only the normalize stage is timed: best and median of several rounds. The stage
remembers per distinct key set which mappers apply and where the indexed lists are (an instrumentation
writes the same keys on span after span); the last line gives every span a key of its own, so it pays
for working that out each time. `--clock cpu` times the process's CPU time rather than the wall clock, which on
a shared machine also counts the wait for a core.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracehouse.collector.stages.decode import decode_request
from tracehouse.collector.stages.normalize import normalize

TEXT_2KB = ("The quick brown fox jumps over the lazy dog. " * 46)[:2048]

LLM_ATTRIBUTES: dict[str, str | int | float] = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.invocation_parameters": '{"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 512}',
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": TEXT_2KB,
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": TEXT_2KB,
    "llm.token_count.prompt": 512,
    "llm.token_count.completion": 480,
    "llm.token_count.total": 992,
    "llm.token_count.prompt_details.cache_read": 128,
    "llm.finish_reason": "stop",
    "session.id": "session-42",
    "user.id": "user-7",
}

PLAIN_ATTRIBUTES: dict[str, str | int | float] = {
    "http.request.method": "GET",
    "http.route": "/api/items/{id}",
    "http.response.status_code": 200,
    "url.path": "/api/items/42",
    "url.scheme": "https",
    "server.address": "api.example.com",
    "server.port": 443,
    "network.protocol.version": "1.1",
    "user_agent.original": "Mozilla/5.0",
    "client.address": "10.1.2.3",
}

# The same call in the current OTel GenAI convention.
GENAI_ATTRIBUTES: dict[str, str | int | float] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 512,
    "gen_ai.usage.input_tokens": 512,
    "gen_ai.usage.output_tokens": 480,
    "gen_ai.usage.cache_read.input_tokens": 128,
    "gen_ai.input.messages": orjson.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": TEXT_2KB}]}]
    ).decode(),
    "gen_ai.output.messages": orjson.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": TEXT_2KB}], "finish_reason": "stop"}]
    ).decode(),
    "gen_ai.response.finish_reasons": '["stop"]',
    "gen_ai.conversation.id": "session-42",
    "user.id": "user-7",
}

# And as OpenLLMetry writes it (deprecated GenAI forms next to current ones).
OPENLLMETRY_ATTRIBUTES: dict[str, str | int | float] = {
    "gen_ai.system": "openai",
    "llm.request.type": "chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 512,
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": TEXT_2KB,
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": TEXT_2KB,
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.usage.prompt_tokens": 512,
    "gen_ai.usage.completion_tokens": 480,
    "llm.usage.total_tokens": 992,
    "traceloop.association.properties.session_id": "session-42",
    "traceloop.association.properties.user_id": "user-7",
}


def _value(value: str | int | float) -> AnyValue:
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(double_value=value)


def _request(
    attributes: dict[str, str | int | float], spans: int, unique_key: bool = False, offset: int = 0
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    attrs = [KeyValue(key=k, value=_value(v)) for k, v in attributes.items()]
    for i in range(spans):
        span: Span = scope.spans.add()
        span.trace_id = (i + 1).to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = "ChatCompletion"
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = 1_700_000_000_500_000_000
        span.attributes.extend(attrs)
        if unique_key:
            span.attributes.append(KeyValue(key=f"app.request_{offset + i}", value=_value("x")))
    return request


CLOCK: list[Callable[[], float]] = [time.perf_counter]


def _timings(action: Callable[[], object], rounds: int) -> list[float]:
    clock = CLOCK[0]
    timings = []
    for _ in range(rounds):
        started = clock()
        action()
        timings.append(clock() - started)
    return timings


def bench(
    label: str, attributes: dict[str, str | int | float], spans: int, rounds: int = 9, unique_key: bool = False
) -> float:
    request = _request(attributes, spans, unique_key)
    if unique_key:  # every round meets its key sets for the first time: spans named apart from other rounds'
        timings = []
        for round_ in range(rounds):
            batch = decode_request(_request(attributes, spans, unique_key, offset=round_ * spans)).batch
            timings += _timings(lambda batch=batch: normalize(batch), 1)
    else:
        batch = decode_request(request).batch
        timings = _timings(lambda: normalize(batch), rounds)
    best, median = min(timings) / spans * 1e6, statistics.median(timings) / spans * 1e6
    # The decode stage on the same spans, for scale: normalize should not cost much more.
    decode = min(_timings(lambda: decode_request(request), rounds)) / spans * 1e6
    print(
        f"{label:<52} {best:7.2f} µs/span (median {median:6.2f}; decode {decode:6.2f}; {spans} spans, {rounds} rounds)"
    )
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spans", type=int, nargs="?", default=5_000, help="spans per batch")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    spans = args.spans
    if args.clock == "cpu":
        CLOCK[0] = time.process_time
    bench(f"OpenInference LLM span ({len(LLM_ATTRIBUTES)} attrs, 2x2 KB text)", LLM_ATTRIBUTES, spans)
    bench(f"plain span ({len(PLAIN_ATTRIBUTES)} attrs)", PLAIN_ATTRIBUTES, spans)
    bench("the same LLM call, OTel GenAI (current)", GENAI_ATTRIBUTES, spans)
    bench("the same LLM call, OpenLLMetry", OPENLLMETRY_ATTRIBUTES, spans)
    bench("OpenInference LLM span, a new key set every span", LLM_ATTRIBUTES, spans, unique_key=True)


if __name__ == "__main__":
    main()
