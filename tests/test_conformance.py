"""Conformance: the same call reads the same from every instrumentation, field by field (issue 12).

Each instrumentation runs for real in its own process (tests/conformance_app.py), set up the way its users
set it up, against the local fake providers (tests/fake_providers.py), and exports over OTLP/HTTP with the
OTel SDK's exporter to one real collector. Every llm_calls field of every call is then compared with what
ONE expectation function (`expected_call`) computes from what the fake was asked and answered: nothing is
written per framework. What a framework does not send, or sends differently, is listed in `KNOWN_GAPS`
with the value it gives and why; a test fails when a case differs from its expectation in any other way,
and also when a listed gap is gone (so the list stays true). tests/conformance_table.py prints the
differential view (instrumentation x field) from the same run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, sql_rows
from fake_openai import ERRORS, FIRST_CHUNK_DELAY, Exchange
from fake_providers import FakeProviders

APP = Path(__file__).with_name("conformance_app.py")
NODE_APP = Path(__file__).with_name("conformance_node") / "app.mjs"  # the Vercel AI SDK's cases
CASE_HEADER = "x-conformance-case"
FAKE_STATUS_HEADER = "x-fake-status"  # a request the fake fails on purpose, with this HTTP status

VERCEL_CASES = (
    "chat",
    "chat_stream",
    "tools",
    "multi_turn",
    "responses",
    "responses_stream",
    "responses_tools",
    "messages",
    "messages_stream",
    "messages_tools",
    "error",
)
# instrumentation -> the cases it runs (conformance_app.instrument); the order is the table's.
INSTRUMENTATIONS: dict[str, tuple[str, ...]] = {
    "openinference-openai": ("chat", "chat_stream", "tools", "responses", "responses_stream", "responses_tools"),
    "openllmetry-openai": ("chat", "chat_stream", "tools", "responses", "responses_stream", "responses_tools"),
    "openinference-anthropic": ("messages", "messages_stream", "tools"),
    "openinference-langchain": ("agent",),
    "openinference-llama-index": ("chat", "chat_stream", "agent"),
    "pydantic-ai": ("agent",),
    "vercel-ai-6": VERCEL_CASES,
    "vercel-ai-7": VERCEL_CASES,
}
NODE_INSTRUMENTATIONS = frozenset({"vercel-ai-6", "vercel-ai-7"})  # run by NODE_APP, all in one process
# The llm_calls fields compared, in the table's order. `calls` is the number of llm_calls rows of the case
# (one per provider request), `parent` whether each row's parent_id is a span of its own trace, `cost_usd`
# the price catalogue's price of the expected usage. `model` (the canonical model) is left to its own tests.
FIELDS: tuple[str, ...] = (
    "calls",
    "provider",
    "request_model",
    "response_model",
    "operation",
    "temperature",
    "max_tokens",
    "system_prompt",
    "messages",
    "tools",
    "response",
    "tool_calls",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "latency_ms_first_token",
    "error",
    "status",
    "parent",
)
FIRST_TOKEN = "after the first chunk"  # what a streamed call's latency_ms_first_token should read as
FIRST_TOKEN_AFTER_END = "after the span ended"  # a first token the span did not last until

# (instrumentation, case, field) -> (the table cell: what the row holds instead, why). Each was checked in the
# span's raw attributes: where the instrumentation wrote the value, normalization reads it (see
# tests/test_conformance_normalize.py); these are the ones the instrumentation does not send as the provider said.
NO_RESPONSES_FINISH = "openinference-instrumentation-openai 0.1.66 writes no llm.finish_reason for the Responses API"
ZERO_CACHE_OMITTED = "the instrumentation writes no cache count when the provider's is 0"
TOOL_NAME_ADDED = "the framework's tool message carries the tool's name, which the provider request does not"
LLAMA_INDEX_MODEL = (
    "openinference-instrumentation-llama-index 4.6.1 writes llm.model_name from the LLM's settings (the model asked"
    " for), never the model the response names"
)
LLAMA_INDEX_PARAMETERS = (
    "its llm.invocation_parameters are LlamaIndex's LLM metadata (context_window, num_output, model_name), not the"
    " request's parameters: no temperature, and num_output is max_tokens only for some LLM classes (others report"
    " a default they do not send), so it is not read as max_tokens"
)
LLAMA_INDEX_STREAM_END = (
    "openinference-instrumentation-llama-index 4.6.1 ends a streamed call's span when the LLM returns its generator,"
    " before the stream is read: the First Token Stream Event comes after the span's end"
)
VERCEL_TOOL_NAME = "AI SDK 6's tool-result part carries the tool's name (toolName), which the provider request does not"
VERCEL_7_NO_REASONING = (
    "@ai-sdk/otel 1.0.173's OpenTelemetry() writes no reasoning count by default (OpenTelemetry({usage: true}) adds"
    " ai.usage.outputTokenDetails.reasoningTokens, which is read)"
)
KNOWN_GAPS: dict[tuple[str, str, str], tuple[str, str]] = {
    ("openinference-openai", "responses", "finish_reason"): ('"", not "stop"', NO_RESPONSES_FINISH),
    ("openinference-openai", "responses_stream", "finish_reason"): ('"", not "stop"', NO_RESPONSES_FINISH),
    ("openinference-openai", "responses_tools", "finish_reason"): ('"", not "tool_call"', NO_RESPONSES_FINISH),
    ("openllmetry-openai", "chat_stream", "reasoning_tokens"): (
        "NULL, not 0",
        "opentelemetry-instrumentation-openai 0.62.4 sets gen_ai.usage.reasoning_tokens only on non-streamed chat",
    ),
    ("openllmetry-openai", "responses_stream", "latency_ms_first_token"): (
        'NULL, not "after the first chunk"',
        "opentelemetry-instrumentation-openai 0.62.4 records no first-token time for a streamed Responses call",
    ),
    ("openllmetry-openai", "responses_tools", "response"): (
        'response[0].tool_calls[0].id = "fc_fake…", not "call_fake…"',
        "opentelemetry-instrumentation-openai 0.62.4 writes the function_call item's id, not its call_id (which the"
        " tool result and the next request use)",
    ),
    ("openllmetry-openai", "responses_tools", "tool_calls"): (
        'tool_calls[0].id = "fc_fake…", not "call_fake…"',
        "the same: the output item's id, not the call_id",
    ),
    ("openinference-anthropic", "messages", "cached_tokens"): ("NULL, not 0", ZERO_CACHE_OMITTED),
    ("openinference-anthropic", "messages_stream", "cache_write_tokens"): ("NULL, not 0", ZERO_CACHE_OMITTED),
    ("openinference-anthropic", "messages_stream", "latency_ms_first_token"): (
        'NULL, not "after the first chunk"',
        "openinference-instrumentation-anthropic 3.1.0 records no first-token event for messages.stream()",
    ),
    ("openinference-anthropic", "tools", "cached_tokens"): ("NULL, not 0", ZERO_CACHE_OMITTED),
    ("openinference-anthropic", "tools", "cache_write_tokens"): ("NULL, not 0", ZERO_CACHE_OMITTED),
    ("openinference-langchain", "agent", "messages"): ('messages[2].name added: "get_weather"', TOOL_NAME_ADDED),
    ("openinference-llama-index", "chat", "response_model"): (
        '"gpt-4o-mini", not "gpt-4o-mini-…-07-18"',
        LLAMA_INDEX_MODEL,
    ),
    ("openinference-llama-index", "chat", "temperature"): ("NULL, not 0.2", LLAMA_INDEX_PARAMETERS),
    ("openinference-llama-index", "chat", "max_tokens"): ("NULL, not 100", LLAMA_INDEX_PARAMETERS),
    ("openinference-llama-index", "chat_stream", "response_model"): (
        '"gpt-4o-mini", not "gpt-4o-mini-…-07-18"',
        LLAMA_INDEX_MODEL,
    ),
    ("openinference-llama-index", "chat_stream", "temperature"): ("NULL, not 0.2", LLAMA_INDEX_PARAMETERS),
    ("openinference-llama-index", "chat_stream", "latency_ms_first_token"): (
        '"after the span ended", not "after the first chunk"',
        LLAMA_INDEX_STREAM_END,
    ),
    ("openinference-llama-index", "agent", "response_model"): (
        '"gpt-4o-mini", not "gpt-4o-mini-…-07-18"',
        LLAMA_INDEX_MODEL,
    ),
    ("openinference-llama-index", "agent", "temperature"): ("NULL, not 0.2", LLAMA_INDEX_PARAMETERS),
    ("openinference-llama-index", "agent", "latency_ms_first_token"): (
        '"after the span ended", not "after the first chunk"',
        LLAMA_INDEX_STREAM_END,
    ),
    ("pydantic-ai", "agent", "cached_tokens"): (
        "NULL, not 0",
        "pydantic-ai 2.68 writes gen_ai.usage.cache_read.input_tokens only when it is not 0",
    ),
    ("pydantic-ai", "agent", "messages"): ('messages[2].name added: "get_weather"', TOOL_NAME_ADDED),
    ("vercel-ai-6", "tools", "messages"): ('messages[2].name added: "get_weather"', VERCEL_TOOL_NAME),
    ("vercel-ai-6", "responses_tools", "messages"): ('messages[2].name added: "get_weather"', VERCEL_TOOL_NAME),
    ("vercel-ai-6", "messages_tools", "messages"): ('messages[2].name added: "get_weather"', VERCEL_TOOL_NAME),
    ("vercel-ai-7", "chat", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
    ("vercel-ai-7", "chat_stream", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
    ("vercel-ai-7", "tools", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
    ("vercel-ai-7", "multi_turn", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
    ("vercel-ai-7", "responses", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
    ("vercel-ai-7", "responses_stream", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
    ("vercel-ai-7", "responses_tools", "reasoning_tokens"): ("NULL, not 0", VERCEL_7_NO_REASONING),
}

pytestmark = pytest.mark.timeout(300)


@dataclass
class CaseRun:
    """One case of one instrumentation: the fake's exchanges, the collector's rows, the trace's span ids. A request
    the fake failed on purpose is an exchange whose response is the error (`failed_exchange`)."""

    exchanges: list[Exchange]
    rows: list[dict[str, Any]]
    spans: list[dict[str, Any]] = field(default_factory=list)  # every span of the case's trace, as stored

    @property
    def span_ids(self) -> set[str]:
        return {span["SpanId"] for span in self.spans}


@dataclass
class SuiteRun:
    cases: dict[tuple[str, str], CaseRun]
    failures: dict[str, str]  # instrumentation -> why its app failed

    def case(self, instrumentation: str, case: str) -> CaseRun:
        if instrumentation in self.failures:
            raise AssertionError(f"{instrumentation} did not run:\n{self.failures[instrumentation]}")
        return self.cases[(instrumentation, case)]


def failed_exchange(path: str, headers: dict[str, str], request: dict[str, Any]) -> Exchange:
    """A request the fake answered with an error (FAKE_STATUS_HEADER): the error as the response."""
    status = int(headers[FAKE_STATUS_HEADER])
    return Exchange(path, headers, request, {"error": {"status": status, "message": ERRORS[status][2]}}, False)


def is_failure(exchange: Exchange) -> bool:
    return FAKE_STATUS_HEADER in exchange.headers


def _case_exchanges(fake: FakeProviders, case: str) -> list[Exchange]:
    """A case's calls in the order they were made: the answered ones and the ones the fake failed on purpose."""
    answered = iter([e for e in fake.exchanges if e.headers.get(CASE_HEADER) == case])
    return [
        failed_exchange(r.path, r.headers, r.body) if FAKE_STATUS_HEADER in r.headers else next(answered)
        for r in fake.requests
        if r.headers.get(CASE_HEADER) == case
    ]


def _commands(
    instrumentations: list[str], traces_url: str, fakes: dict[str, FakeProviders]
) -> list[tuple[list[str], list[str]]]:
    """(the instrumentations one process runs, its command): one Python process per instrumentation
    (instrumentors patch the SDKs globally), and one Node process for all the Node ones (each SDK version is a
    package of its own there, so they share a process and its start-up)."""
    commands = [
        ([name], [sys.executable, str(APP), name, traces_url, fakes[name].base_url])
        for name in instrumentations
        if name not in NODE_INSTRUMENTATIONS
    ]
    node = [name for name in instrumentations if name in NODE_INSTRUMENTATIONS]
    if node:
        targets = [f"{name}={fakes[name].base_url}" for name in node]
        commands.append((node, ["node", str(NODE_APP), traces_url, *targets]))
    return commands


def run_suite(work_dir: Path, instrumentations: Iterable[str] = INSTRUMENTATIONS) -> SuiteRun:
    """Every instrumentation's app against its own fake, all exporting to one collector."""
    names = list(instrumentations)
    collector = CollectorProcess(work_dir / "data").start()
    fakes: dict[str, FakeProviders] = {}
    try:
        fakes = {name: FakeProviders().start() for name in names}
        procs = [
            (group, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for group, command in _commands(names, collector.traces_url, fakes)
        ]
        traces: dict[str, dict[str, str]] = {}
        failures: dict[str, str] = {}
        for group, proc in procs:
            out, err = proc.communicate(timeout=240)
            if proc.returncode != 0:
                failures.update(dict.fromkeys(group, err[-4000:]))
                continue
            printed = json.loads(out.strip().splitlines()[-1])
            traces.update(printed if group[0] in NODE_INSTRUMENTATIONS else {group[0]: printed})
        calls = sql_rows(collector.data_dir, "SELECT * FROM llm_calls ORDER BY ts")
        spans = sql_rows(
            collector.data_dir,
            "SELECT TraceId, SpanId, SpanName, LlmSpanKind, LlmOperation, SpanAttributes FROM otel_traces",
        )
    finally:
        collector.kill()
        for fake in fakes.values():
            fake.stop()
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["TraceId"], []).append(span)
    cases: dict[tuple[str, str], CaseRun] = {}
    for name, by_case in traces.items():
        for case, trace_id in by_case.items():
            exchanges = _case_exchanges(fakes[name], case)
            rows = [row for row in calls if row["trace_id"] == trace_id]
            cases[(name, case)] = CaseRun(exchanges, rows, by_trace.get(trace_id, []))
    return SuiteRun(cases, failures)


# -- The expectation: what the provider was asked and answered, in the canonical shape -------------------


def _text(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, dict | list) else raw
    return raw


def _call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": _arguments(arguments)}


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    return [part["text"] for part in content or [] if isinstance(part, dict) and part.get("text")]


def _assistant(texts: list[str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": t} for t in texts]}
    if calls:
        message["tool_calls"] = calls
    return message


def _definition(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {"type": "function", "name": name}
    if description:
        definition["description"] = description
    if parameters is not None:
        definition["parameters"] = parameters
    return definition


def _chat_completions(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    system, messages = [], []
    for message in request["messages"]:
        role, texts = message["role"], _texts(message.get("content"))
        if role in ("system", "developer"):
            system += texts
        elif role == "tool":
            messages.append({**_text("tool", " ".join(texts)), "tool_call_id": message["tool_call_id"]})
        elif role == "assistant":
            calls = [
                _call(c["id"], c["function"]["name"], c["function"]["arguments"])
                for c in message.get("tool_calls") or []
            ]
            messages.append(_assistant(texts, calls))
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": t} for t in texts]})
    choice = response["choices"][0]
    out = choice["message"]
    calls = [_call(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in out.get("tool_calls") or []]
    usage = response.get("usage")
    tools = [
        _definition(t["function"]["name"], t["function"].get("description"), t["function"].get("parameters"))
        for t in request.get("tools") or []
    ]
    return {
        "provider": "openai",
        "system": system,
        "messages": messages,
        "tools": tools,
        "response": [_assistant(_texts(out.get("content")), calls)],
        "tool_calls": calls,
        "finish_reason": {"tool_calls": "tool_call"}.get(choice["finish_reason"], choice["finish_reason"]),
        "max_tokens": request.get("max_completion_tokens", request.get("max_tokens")),
        "usage": None
        if usage is None
        else {
            "input": usage["prompt_tokens"],
            "output": usage["completion_tokens"],
            "cache_read": usage["prompt_tokens_details"]["cached_tokens"],
            "cache_write": None,
            "reasoning": usage["completion_tokens_details"]["reasoning_tokens"],
            "total": usage["total_tokens"],
        },
    }


def _responses(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    system = [request["instructions"]] if request.get("instructions") else []
    items = request["input"]
    messages: list[dict[str, Any]] = []
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _call(item["call_id"], item["name"], item["arguments"])
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append(_assistant([], [call]))
        elif kind == "function_call_output":
            messages.append({**_text("tool", str(item["output"])), "tool_call_id": item["call_id"]})
        elif item["role"] in ("system", "developer"):
            system += _texts(item.get("content"))
        else:
            messages.append(
                {"role": item["role"], "content": [{"type": "text", "text": t} for t in _texts(item["content"])]}
            )
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response["output"]:
        if item["type"] == "message":
            texts += _texts(item["content"])
        elif item["type"] == "function_call":
            calls.append(_call(item["call_id"], item["name"], item["arguments"]))
    usage = response["usage"]
    return {
        "provider": "openai",
        "system": system,
        "messages": messages,
        "tools": [
            _definition(t["name"], t.get("description"), t.get("parameters")) for t in request.get("tools") or []
        ],
        "response": [_assistant(texts, calls)],
        "tool_calls": calls,
        # The Responses API has a status, no finish reason: a completed response ends its turn, or calls a tool.
        "finish_reason": "tool_call" if calls else "stop",
        "max_tokens": request.get("max_output_tokens"),
        "usage": {
            "input": usage["input_tokens"],
            "output": usage["output_tokens"],
            "cache_read": usage["input_tokens_details"]["cached_tokens"],
            "cache_write": None,
            "reasoning": usage["output_tokens_details"]["reasoning_tokens"],
            "total": usage["total_tokens"],
        },
    }


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _anthropic_messages(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    system = [block["text"] for block in _blocks(request.get("system") or [])]
    messages: list[dict[str, Any]] = []
    for message in request["messages"]:
        blocks = _blocks(message["content"])
        texts = [block["text"] for block in blocks if block["type"] == "text"]
        calls = [_call(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"]
        if message["role"] == "assistant":
            messages.append(_assistant(texts, calls))
            continue
        for block in blocks:  # a tool result block is a tool message of its own
            if block["type"] == "tool_result":
                result = " ".join(_texts(block.get("content")))
                messages.append({**_text("tool", result), "tool_call_id": block["tool_use_id"]})
        if texts:
            messages.append({"role": "user", "content": [{"type": "text", "text": t} for t in texts]})
    content = response["content"]
    calls = [_call(b["id"], b["name"], b["input"]) for b in content if b["type"] == "tool_use"]
    usage = response["usage"]
    read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    prompt = usage["input_tokens"] + read + write  # Anthropic counts input without the cache; llm_calls with it
    stop = {"end_turn": "stop", "tool_use": "tool_call", "max_tokens": "length"}
    return {
        "provider": "anthropic",
        "system": system,
        "messages": messages,
        "tools": [
            _definition(t["name"], t.get("description"), t.get("input_schema")) for t in request.get("tools") or []
        ],
        "response": [_assistant([b["text"] for b in content if b["type"] == "text"], calls)],
        "tool_calls": calls,
        "finish_reason": stop.get(response["stop_reason"], response["stop_reason"]),
        "max_tokens": request.get("max_tokens"),
        "usage": {
            "input": prompt,
            "output": usage["output_tokens"],
            "cache_read": read,
            "cache_write": write,
            "reasoning": None,
            "total": prompt + usage["output_tokens"],
        },
    }


_BY_PATH = {"/v1/chat/completions": _chat_completions, "/v1/responses": _responses, "/v1/messages": _anthropic_messages}


def _catalogue_cost(provider: str, model: str, usage: dict[str, Any] | None) -> Decimal | None:
    from genai_prices import Usage, calc_price

    if usage is None:
        return None
    tokens = Usage(
        input_tokens=usage["input"],
        cache_read_tokens=usage["cache_read"] or None,
        cache_write_tokens=usage["cache_write"] or None,
        output_tokens=usage["output"],
    )
    try:
        price = calc_price(tokens, model, provider_id=provider)
    except LookupError:
        return None
    return Decimal(str(price.total_price)).quantize(Decimal("1e-12"))


def expected_failed_call(exchange: Exchange) -> dict[str, Any]:
    """The row of a call the provider failed: what was asked as for any call; no answer, no usage, no cost (the
    provider bills no failed request), the provider's error message and an Error status."""
    assert exchange.path.rstrip("/") == "/v1/chat/completions", "failures are made on Chat Completions"
    no_answer = {"model": "", "choices": [{"message": {}, "finish_reason": ""}], "usage": None}
    expected = expected_call(Exchange(exchange.path, {}, exchange.request, no_answer, False))
    expected.update(
        {
            "response": None,
            "cost_usd": Decimal(0).quantize(Decimal("1e-12")),
            "error": exchange.response["error"]["message"],
            "status": "Error",
        }
    )
    return expected


def expected_call(exchange: Exchange) -> dict[str, Any]:
    """The llm_calls row a call should give, from the request the fake got and the response it gave."""
    request, response = exchange.request, exchange.response
    if is_failure(exchange):
        return expected_failed_call(exchange)
    shape = _BY_PATH[exchange.path.split("?")[0].rstrip("/")](request, response)
    usage = shape["usage"] or {}
    return {
        "provider": shape["provider"],
        "request_model": request["model"],
        "response_model": response["model"],
        "operation": "chat",
        "temperature": request.get("temperature"),
        "max_tokens": shape["max_tokens"],
        "system_prompt": "\n\n".join(shape["system"]),
        "messages": shape["messages"],
        "tools": shape["tools"] or None,
        "response": shape["response"],
        "tool_calls": shape["tool_calls"] or None,
        "finish_reason": shape["finish_reason"],
        "prompt_tokens": usage.get("input"),
        "completion_tokens": usage.get("output"),
        "cached_tokens": usage.get("cache_read"),
        "cache_write_tokens": usage.get("cache_write"),
        "reasoning_tokens": usage.get("reasoning"),
        "total_tokens": usage.get("total"),
        "cost_usd": _catalogue_cost(shape["provider"], response["model"], shape["usage"]),
        "latency_ms_first_token": FIRST_TOKEN if exchange.streamed else None,
        "error": "",
        "status": "Unset or Ok",
        "parent": "a span of its trace",
    }


def _json(value: str) -> Any:
    return json.loads(value) if value else None


def observed(row: dict[str, Any], span_ids: set[str]) -> dict[str, Any]:
    """A row's fields in the expectation's terms (JSON decoded, latencies and links as what they show)."""
    ttft = row["latency_ms_first_token"]
    if ttft is not None and FIRST_CHUNK_DELAY * 1000 <= ttft < row["latency_ms_total"]:
        ttft = FIRST_TOKEN
    elif ttft is not None and ttft >= row["latency_ms_total"]:
        ttft = FIRST_TOKEN_AFTER_END
    values = {name: row[name] for name in FIELDS if name in row}
    values.update(
        {
            "messages": _json(row["messages"]),
            "tools": _json(row["tools"]),
            "response": _json(row["response"]),
            "tool_calls": _json(row["tool_calls"]),
            "cost_usd": None if row["cost_usd"] is None else Decimal(str(row["cost_usd"])).quantize(Decimal("1e-12")),
            "latency_ms_first_token": ttft,
            "status": "Unset or Ok" if row["status"] in ("Unset", "Ok") else row["status"],
            "parent": "a span of its trace" if row["parent_id"] in span_ids else (row["parent_id"] or "none (a root)"),
        }
    )
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens"):
        values[name] = None if values[name] is None else int(values[name])
    values["total_tokens"] = None if row["total_tokens"] is None else int(row["total_tokens"])
    return values


def differences(run: CaseRun) -> dict[str, tuple[Any, Any]]:
    """field -> (expected, observed) for every field where a case's rows differ from its exchanges."""
    found: dict[str, tuple[Any, Any]] = {}
    if len(run.rows) != len(run.exchanges):
        found["calls"] = (len(run.exchanges), len(run.rows))
    for exchange, row in zip(run.exchanges, run.rows, strict=False):
        expected, actual = expected_call(exchange), observed(row, run.span_ids)
        for name in FIELDS[1:]:
            if name not in found and expected[name] != actual[name]:
                found[name] = (expected[name], actual[name])
    return found


def _short(value: Any) -> str:
    """A value as a table cell shows it: call numbers masked (they depend on the order of the cases), cut short."""
    text = "NULL" if value is None else re.sub(r"\d{4,}", "…", json.dumps(value, default=str))
    return text if len(text) <= 48 else text[:47] + "…"


def _paths(path: str, expected: Any, actual: Any) -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found: list[str] = []
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual:
                found.append(f"{path}.{key} missing")
            elif key not in expected:
                found.append(f"{path}.{key} added: {_short(actual[key])}")
            else:
                found += _paths(f"{path}.{key}", expected[key], actual[key])
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items, not {len(expected)}"]
        return [
            line for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for line in _paths(f"{path}[{i}]", e, a)
        ]
    return [] if expected == actual else [f"{path} = {_short(actual)}, not {_short(expected)}"]


def describe(name: str, expected: Any, actual: Any) -> str:
    """What differs, as one table cell: the paths inside the value that differ, with what was found."""
    if actual is None or expected is None or not isinstance(actual, dict | list):
        return f"{_short(actual)}, not {_short(expected)}"
    return "; ".join(_paths(name, expected, actual)[:2])


def cells(run: CaseRun) -> dict[str, str]:
    """field -> what differs, for the fields where a case differs from its expectation."""
    return {name: describe(name, *values) for name, values in differences(run).items()}


README = Path(__file__).parent.parent / "README.md"
TABLE_START, TABLE_END = "<!-- conformance:start -->", "<!-- conformance:end -->"
CHECK = "✓"


def markdown_table(suite: SuiteRun) -> str:
    """The differential view: one row per llm_calls field, one column per instrumentation; a cell is ✓ when
    every case reads as the provider said, else each case's difference."""
    names = list(INSTRUMENTATIONS)
    lines = ["| field | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    found = {}
    for name in names:
        for case in INSTRUMENTATIONS[name]:
            if name in suite.failures:
                found[(name, case)] = {field: "did not run" for field in FIELDS}
            else:
                found[(name, case)] = cells(suite.cases[(name, case)])
    for field_name in FIELDS:
        row = []
        for name in names:
            notes = [
                f"{case}: {found[(name, case)][field_name]}"
                for case in INSTRUMENTATIONS[name]
                if field_name in found[(name, case)]
            ]
            row.append("<br>".join(note.replace("|", "\\|") for note in notes) or CHECK)
        lines.append(f"| {field_name} | " + " | ".join(row) + " |")
    cases = "; ".join(f"{name}: {', '.join(cases)}" for name, cases in INSTRUMENTATIONS.items())
    return "\n".join(lines) + f"\n\nCases: {cases}.\n"


# -- The tests --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    return run_suite(tmp_path_factory.mktemp("conformance"))


CASES = [(name, case) for name, cases in INSTRUMENTATIONS.items() for case in cases]


@pytest.mark.parametrize(("instrumentation", "case"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_every_field_reads_as_the_provider_said(suite: SuiteRun, instrumentation: str, case: str) -> None:
    run = suite.case(instrumentation, case)
    assert run.exchanges, f"{instrumentation} {case} made no provider call"
    gaps = {name: cell for (i, c, name), (cell, _) in KNOWN_GAPS.items() if (i, c) == (instrumentation, case)}
    assert cells(run) == gaps


def test_every_known_gap_is_a_case_of_the_suite() -> None:
    assert {(i, c) for i, c, _ in KNOWN_GAPS} <= set(CASES)
    assert {name for _, _, name in KNOWN_GAPS} <= set(FIELDS)


def _span(run: CaseRun, name: str) -> dict[str, Any]:
    (span,) = [span for span in run.spans if span["SpanName"] == name]
    return span


def test_pydantic_ai_agent_and_tool_spans_and_its_own_cost_are_kept(suite: SuiteRun) -> None:
    """What the schema has no column for stays in SpanAttributes: pydantic-ai's own price of each request
    (`operation.cost`, which CostUsd with CostSource 'provided' would hold) and the run's aggregated usage."""
    run = suite.case("pydantic-ai", "agent")
    agent = _span(run, "invoke_agent agent")
    assert (agent["LlmSpanKind"], agent["LlmOperation"]) == ("AGENT", "invoke_agent")
    assert int(agent["SpanAttributes"]["gen_ai.aggregated_usage.input_tokens"]) == sum(
        row["prompt_tokens"] for row in run.rows
    )
    tool = _span(run, "execute_tool get_weather")
    assert tool["LlmSpanKind"] == "TOOL" and tool["SpanAttributes"]["gen_ai.tool.call.result"] == "18 degrees and sunny"
    llm_spans = [span for span in run.spans if span["SpanId"] in {row["id"] for row in run.rows}]
    for span, row in zip(
        sorted(llm_spans, key=lambda s: s["SpanId"]), sorted(run.rows, key=lambda r: r["id"]), strict=True
    ):
        provided = Decimal(span["SpanAttributes"]["operation.cost"])
        assert provided == Decimal(str(row["cost_usd"])) and row["cost_source"] == "catalogue"


def test_langchain_agent_chain_and_tool_spans_are_kept(suite: SuiteRun) -> None:
    run = suite.case("openinference-langchain", "agent")
    kinds = [(span["SpanName"], span["LlmSpanKind"]) for span in run.spans]
    assert ("get_weather", "TOOL") in kinds and ("LangGraph", "CHAIN") in kinds
    assert [name for name, kind in kinds if kind == "LLM"] == ["ChatOpenAI"] * len(run.rows) == ["ChatOpenAI"] * 2


def test_llama_index_agent_workflow_and_tool_spans_are_kept_and_only_provider_calls_are_rows(suite: SuiteRun) -> None:
    """The FunctionAgent's workflow steps and its tool stay spans of the trace; the LLM object's request-building
    step (`_prepare_chat_with_tools`, an LLM span to the instrumentation) is a CHAIN step, not an llm_call."""
    run = suite.case("openinference-llama-index", "agent")
    kinds = [(span["SpanName"], span["LlmSpanKind"]) for span in run.spans]
    assert ("FunctionAgent.run", "CHAIN") in kinds and ("FunctionTool.acall", "TOOL") in kinds
    assert [kind for name, kind in kinds if name == "OpenAI._prepare_chat_with_tools"] == ["CHAIN", "CHAIN"]
    llm_spans = sorted(span["SpanId"] for span in run.spans if span["LlmSpanKind"] == "LLM")
    assert llm_spans == sorted(row["id"] for row in run.rows) and len(run.rows) == len(run.exchanges) == 2


def test_vercel_ai_agent_and_tool_spans_are_kept_and_only_provider_calls_are_rows(suite: SuiteRun) -> None:
    """AI SDK 6's generateText span (a CHAIN around its steps) and 7's invoke_agent and step spans stay spans of
    the trace with the tool's execution; only the provider calls (6's doGenerate, 7's chat spans) are rows."""
    kinds = {
        "vercel-ai-6": {("ai.generateText", "CHAIN"), ("ai.toolCall", "TOOL")},
        "vercel-ai-7": {("invoke_agent gpt-4o-mini", "AGENT"), ("execute_tool get_weather", "TOOL")},
    }
    for name, expected in kinds.items():
        run = suite.case(name, "tools")
        assert expected <= {(span["SpanName"], span["LlmSpanKind"]) for span in run.spans}, name
        llm_spans = sorted(span["SpanId"] for span in run.spans if span["LlmSpanKind"] == "LLM")
        assert llm_spans == sorted(row["id"] for row in run.rows) and len(run.rows) == len(run.exchanges) == 2


def readme_table(text: str) -> str:
    """The differential view the README shows between its markers; an AssertionError saying what to do when the
    markers are missing."""
    assert TABLE_START in text and TABLE_END in text.split(TABLE_START, 1)[-1], (
        f"README.md has no differential table between {TABLE_START} and {TABLE_END}: paste the output of"
        " `.venv/bin/python tests/conformance_table.py --readme` there"
    )
    return text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]


def test_the_readme_table_is_what_the_suite_finds(suite: SuiteRun) -> None:
    """The README's differential view is this run's table: the user-facing claim stays what the suite shows."""
    shown = readme_table(README.read_text())
    assert shown.strip() == markdown_table(suite).strip(), (
        "the README's conformance table is stale: paste `.venv/bin/python tests/conformance_table.py --readme`"
    )


def test_a_readme_without_the_markers_fails_saying_to_paste_the_table() -> None:
    with pytest.raises(AssertionError, match="paste the output"):
        readme_table("# tracehouse\n\nno table here\n")
    with pytest.raises(AssertionError, match="paste the output"):
        readme_table(f"{TABLE_START}\n| field |\n")  # an end marker lost
    assert readme_table(f"a\n{TABLE_START}\n| t |\n{TABLE_END}\nb") == "\n| t |\n"


def test_every_call_is_priced_by_the_catalogue_and_every_stream_measured(suite: SuiteRun) -> None:
    """The cost and first-token columns compare real values: the catalogue prices every model the fakes answer
    with, and each streamed call has a first-token time to read (a NULL matching a NULL would prove nothing)."""
    for (name, case), run in suite.cases.items():
        for exchange in run.exchanges:
            expected = expected_call(exchange)
            if is_failure(exchange):
                continue  # a failed call has no usage to price
            assert expected["cost_usd"] is not None and expected["cost_usd"] > 0, (name, case, exchange.path)
            assert expected["prompt_tokens"] and expected["completion_tokens"], (name, case)
    streamed = {(name, case) for (name, case), run in suite.cases.items() if any(e.streamed for e in run.exchanges)}
    assert ("openinference-openai", "chat_stream") in streamed and (
        "openinference-anthropic",
        "messages_stream",
    ) in streamed
    anthropic = [expected_call(e) for e in suite.case("openinference-anthropic", "messages").exchanges]
    anthropic += [expected_call(e) for e in suite.case("openinference-anthropic", "messages_stream").exchanges]
    assert anthropic[0]["cache_write_tokens"] > 0 and anthropic[1]["cached_tokens"] > 0  # a cache write, then a read


UNHELD_START, UNHELD_END = "<!-- unheld:start -->", "<!-- unheld:end -->"


def readme_unheld_rows() -> list[tuple[str, list[str]]]:
    """(instrumentation, attribute patterns) of the README's "does not hold yet" table."""
    text = README.read_text()
    assert UNHELD_START in text and UNHELD_END in text, f"README.md lost its {UNHELD_START} table"
    rows = []
    for line in text.split(UNHELD_START, 1)[1].split(UNHELD_END, 1)[0].strip().splitlines()[2:]:
        sent_by, attributes, _maps_to, _why = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((sent_by, [name for name in re.findall(r"`([^`]+)`", attributes) if "." in name]))
    return rows


def test_what_the_readme_says_the_schema_does_not_hold_is_sent_and_kept(suite: SuiteRun) -> None:
    """Each attribute the README lists is sent by that instrumentation in the suite's run and kept as sent in
    SpanAttributes (operation.cost not taken as the cost: test_pydantic_ai_agent_and_tool_spans_...)."""
    rows = readme_unheld_rows()
    assert len(rows) >= 5
    for sent_by, patterns in rows:
        assert sent_by in INSTRUMENTATIONS, f"README names {sent_by!r}, not an instrumentation of the suite"
        spans = [span for case in INSTRUMENTATIONS[sent_by] for span in suite.case(sent_by, case).spans]
        for pattern in patterns:
            matcher = re.compile(re.escape(pattern).replace(r"\*", ".+"))
            kept = [(span, key) for span in spans for key in span["SpanAttributes"] if matcher.fullmatch(key)]
            assert kept, f"{sent_by} sent no {pattern} in the suite's run: the README row is stale"
    # The service tier is not a price variant: calls that say "default" are priced at standard rates.
    run = suite.case("openllmetry-openai", "chat")
    tiers = {span["SpanAttributes"].get("openai.response.service_tier") for span in run.spans}
    assert tiers - {None} and all(row["price_variant"] == "" for row in run.rows), (tiers, run.rows)
