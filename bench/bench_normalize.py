"""Normalization cost per span: an OpenInference LLM span (~15 attributes, two 2 KB texts) and a plain span.

Run: .venv/bin/python bench/bench_normalize.py [spans-per-batch]
Spans are decoded once; only the normalize stage is timed, best of several rounds.
"""

from __future__ import annotations

import sys
import time

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


def _value(value: str | int | float) -> AnyValue:
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(double_value=value)


def _request(attributes: dict[str, str | int | float], spans: int) -> ExportTraceServiceRequest:
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
    return request


def _best(action, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def bench(label: str, attributes: dict[str, str | int | float], spans: int, rounds: int = 7) -> float:
    request = _request(attributes, spans)
    batch = decode_request(request).batch
    per_span = _best(lambda: normalize(batch), rounds) / spans * 1e6
    # The decode stage on the same spans, for scale: normalize should not cost much more.
    decode = _best(lambda: decode_request(request), rounds) / spans * 1e6
    print(f"{label:<48} {per_span:8.2f} µs/span  (decode: {decode:.2f} µs/span; {spans} spans, best of {rounds})")
    return per_span


def main() -> None:
    spans = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    bench(f"OpenInference LLM span ({len(LLM_ATTRIBUTES)} attrs, 2x2 KB text)", LLM_ATTRIBUTES, spans)
    bench(f"plain span ({len(PLAIN_ATTRIBUTES)} attrs)", PLAIN_ATTRIBUTES, spans)


if __name__ == "__main__":
    main()
