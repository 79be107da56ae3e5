"""Seeded, bounded mutations of realistic OTLP trace requests, for the fuzz test (tests/test_fuzz.py).

A case is a pure function of (seed, index): the same seed gives the same bodies whatever the threads'
interleaving, so any failure is reproduced from its seed and index alone
(`python tests/otlp_mutator.py SEED INDEX OUT_DIR` writes that body and its headers).

Requests start as a plain model of OTLP (dicts and tagged values) that looks like real LLM traffic:
OpenInference `llm.*`, GenAI current and legacy `gen_ai.*`, OpenLLMetry, Vercel `ai.*`, events, links,
several resources, scopes and spans. Mutations come at two levels: structural, on the model before it is
encoded (values no well-behaved SDK sends), and byte level, on the encoded protobuf or JSON text. Every
span gets a span id derived from its case index, so stored rows can be traced back to their request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import random
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_REQUEST_BYTES = 2 << 20  # the fuzzed collector's --max-request-bytes
UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1
BASE_NS = 1_750_000_000_000_000_000

# Strings the encoders turn into invalid UTF-8 (protobuf, JSON) or lone surrogates (JSON escapes only).
BAD_UTF8 = "~~BADUTF8~~"
SURROGATE = "~~SURROGATE~~"
_BAD_UTF8_BYTES = b"\xff\xfe\xc3(\xed\xa0\x80~~~~"  # same length as BAD_UTF8: lengths in protobuf stay right
assert len(_BAD_UTF8_BYTES) == len(BAD_UTF8.encode())

# A tagged attribute value: ("s", str) ("i", int) ("d", float) ("b", bool) ("y", bytes) ("a", [values])
# ("k", [(key, value)]) ("n", None) for an empty AnyValue.
Value = tuple[str, Any]
Attrs = list[tuple[str, Value]]


@dataclass
class Case:
    """One request as sent: transport, encoding, body bytes on the wire and how it was made."""

    index: int
    transport: str  # "http" or "grpc"
    encoding: str  # "protobuf" or "json"
    compression: str  # "identity" or "gzip"
    body: bytes
    mutations: list[str] = field(default_factory=list)
    byte_mutated: bool = False
    content_type: str = ""

    @property
    def json_body(self) -> bool:
        """Whether the collector reads the body as OTLP/JSON: its content type decides, not its bytes."""
        if self.transport == "grpc":
            return False
        return self.headers()["Content-Type"].split(";")[0].strip().lower() == JSON

    @property
    def pristine(self) -> bool:
        return not self.mutations

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type or (JSON if self.encoding == "json" else PROTOBUF)}
        if self.compression != "identity":
            headers["Content-Encoding"] = self.compression
        return headers

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "transport": self.transport,
            "encoding": self.encoding,
            "compression": self.compression,
            "headers": self.headers() if self.transport == "http" else {},
            "mutations": self.mutations,
            "byte_mutated": self.byte_mutated,
            "body_bytes": len(self.body),
        }


@dataclass
class Reference:
    """What a spec-following reader finds in a case's body: the request digest the collector uses to
    recognise retries (sha256 of the decompressed body) and the (trace id, span id) of every span."""

    digest: bytes
    decoded_bytes: int
    keys: list[tuple[str, str]]


# ---------------------------------------------------------------------------------------------- base model

_MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("google", "gemini-1.5-pro"),
    ("mistral", "mistral-large-latest"),
    ("openai", "o3-mini"),
    ("acme", "unknown-model-7b"),
]
_PII = [
    "Contact me at alice.smith@example.com or +1 415 555 0134.",
    "My card is 4111 1111 1111 1111, exp 12/29.",
    "IBAN DE89 3704 0044 0532 0130 00 please.",
    "key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD and token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "ssn 078-05-1120, server 10.1.2.3",
    "",
    "What is the capital of France?",
    "Summarise this doc in three bullet points. " * 3,
    "日本語のテキストと絵文字 🚀 and RTL \u202eevil\u202c text",
]


def _s(text: str) -> Value:
    return ("s", text)


def _i(number: int) -> Value:
    return ("i", number)


def _messages_json(rng: random.Random, convention: str) -> str:
    text = rng.choice(_PII)
    if convention == "genai":
        return orjson.dumps(
            [
                {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
                {"role": "user", "parts": [{"type": "text", "content": text}]},
            ]
        ).decode()
    return orjson.dumps({"messages": [{"role": "user", "content": text}], "model": "m"}).decode()


def _openinference_llm(rng: random.Random, provider: str, model: str) -> tuple[str, int, Attrs, list[dict]]:
    prompt, completion = rng.randint(1, 5000), rng.randint(0, 2000)
    attrs: Attrs = [
        ("openinference.span.kind", _s("LLM")),
        ("llm.model_name", _s(model)),
        ("llm.provider", _s(provider)),
        ("llm.system", _s(provider)),
        ("llm.invocation_parameters", _s('{"temperature": 0.2, "max_tokens": 256, "stream": true}')),
        ("input.value", _s(_messages_json(rng, "oi"))),
        ("input.mime_type", _s("application/json")),
        ("output.value", _s('{"choices": [{"message": {"role": "assistant", "content": "Paris."}}]}')),
        ("output.mime_type", _s("application/json")),
        ("llm.input_messages.0.message.role", _s("system")),
        ("llm.input_messages.0.message.content", _s("You are a helpful assistant.")),
        ("llm.input_messages.1.message.role", _s("user")),
        ("llm.input_messages.1.message.content", _s(rng.choice(_PII))),
        ("llm.output_messages.0.message.role", _s("assistant")),
        ("llm.output_messages.0.message.content", _s("Paris.")),
        ("llm.output_messages.0.message.tool_calls.0.tool_call.function.name", _s("search")),
        ("llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments", _s('{"q": "paris"}')),
        ("llm.token_count.prompt", _i(prompt)),
        ("llm.token_count.completion", _i(completion)),
        ("llm.token_count.total", _i(prompt + completion)),
        ("llm.token_count.prompt_details.cache_read", _i(prompt // 3)),
        ("llm.tools.0.tool.json_schema", _s('{"type": "function", "function": {"name": "search"}}')),
        ("llm.prompt_template.template", _s("Answer: {question}")),
        ("llm.prompt_template.version", _s("v3")),
        ("llm.prompt_template.variables", _s('{"question": "capital"}')),
        ("session.id", _s(f"sess-{rng.randint(1, 50)}")),
        ("user.id", _s(f"user-{rng.randint(1, 500)}")),
        ("metadata", _s('{"feature": "search", "tenant": "t1"}')),
        ("tag.tags", ("a", [_s("prod"), _s("beta")])),
    ]
    events = [{"time": 0, "name": "First Token Stream Event", "attributes": []}]
    return "ChatCompletion", 3, attrs, events


def _genai_current(rng: random.Random, provider: str, model: str) -> tuple[str, int, Attrs, list[dict]]:
    attrs: Attrs = [
        ("gen_ai.operation.name", _s("chat")),
        ("gen_ai.provider.name", _s(provider)),
        ("gen_ai.request.model", _s(model)),
        ("gen_ai.response.model", _s(model + "-2024")),
        ("gen_ai.request.temperature", ("d", rng.choice([0.0, 0.7, 1.0]))),
        ("gen_ai.request.max_tokens", _i(1024)),
        ("gen_ai.request.stop_sequences", ("a", [_s("\n\n")])),
        ("gen_ai.usage.input_tokens", _i(rng.randint(1, 9000))),
        ("gen_ai.usage.output_tokens", _i(rng.randint(1, 900))),
        ("gen_ai.usage.cache_read.input_tokens", _i(rng.randint(0, 100))),
        ("gen_ai.input.messages", _s(_messages_json(rng, "genai"))),
        (
            "gen_ai.output.messages",
            _s('[{"role":"assistant","parts":[{"type":"text","content":"ok"}],"finish_reason":"stop"}]'),
        ),
        ("gen_ai.system_instructions", _s('[{"type":"text","content":"Be brief."}]')),
        ("gen_ai.response.finish_reasons", ("a", [_s("stop")])),
        ("gen_ai.response.id", _s(f"resp_{rng.getrandbits(48):x}")),
        ("gen_ai.conversation.id", _s(f"conv-{rng.randint(1, 99)}")),
        ("gen_ai.tool.definitions", _s('[{"type":"function","name":"get_weather","parameters":{}}]')),
    ]
    events = [
        {
            "time": 0,
            "name": "gen_ai.client.inference.operation.details",
            "attributes": [("gen_ai.input.messages", _s(_messages_json(rng, "genai")))],
        }
    ]
    return f"chat {model}", 3, attrs, events


def _genai_legacy(rng: random.Random, provider: str, model: str) -> tuple[str, int, Attrs, list[dict]]:
    attrs: Attrs = [
        ("gen_ai.system", _s(provider)),
        ("gen_ai.request.model", _s(model)),
        ("llm.request.type", _s("chat")),
        ("gen_ai.prompt.0.role", _s("user")),
        ("gen_ai.prompt.0.content", _s(rng.choice(_PII))),
        ("gen_ai.completion.0.role", _s("assistant")),
        ("gen_ai.completion.0.content", _s("Sure.")),
        ("gen_ai.completion.0.finish_reason", _s("stop")),
        ("gen_ai.usage.prompt_tokens", _i(rng.randint(1, 4000))),
        ("gen_ai.usage.completion_tokens", _i(rng.randint(1, 400))),
        ("llm.usage.total_tokens", _i(rng.randint(2, 4400))),
        ("llm.is_streaming", ("b", rng.random() < 0.5)),
        ("traceloop.entity.name", _s("answer")),
        ("traceloop.workflow.name", _s("qa")),
        ("traceloop.association.properties.user_id", _s("u-17")),
    ]
    events = [
        {"time": 0, "name": "gen_ai.user.message", "attributes": [("content", _s('{"content": "hi"}'))]},
        {"time": 0, "name": "gen_ai.choice", "attributes": [("message", _s('{"role":"assistant","content":"yo"}'))]},
    ]
    return "openai.chat", 3, attrs, events


def _vercel(rng: random.Random, provider: str, model: str) -> tuple[str, int, Attrs, list[dict]]:
    attrs: Attrs = [
        ("ai.model.id", _s(model)),
        ("ai.model.provider", _s(provider + ".chat")),
        ("ai.operationId", _s("ai.generateText.doGenerate")),
        ("ai.prompt.messages", _s('[{"role":"user","content":[{"type":"text","text":"hello"}]}]')),
        ("ai.response.text", _s("hello back")),
        ("ai.usage.promptTokens", _i(rng.randint(1, 300))),
        ("ai.usage.completionTokens", _i(rng.randint(1, 300))),
        ("ai.response.finishReason", _s("stop")),
    ]
    return "ai.generateText.doGenerate", 3, attrs, []


def _tool(rng: random.Random, provider: str, model: str) -> tuple[str, int, Attrs, list[dict]]:
    attrs: Attrs = [
        ("openinference.span.kind", _s("TOOL")),
        ("tool.name", _s("search")),
        ("tool.parameters", _s('{"q": "weather in paris"}')),
        ("input.value", _s("weather in paris")),
        ("output.value", _s(rng.choice(_PII))),
    ]
    return "search", 1, attrs, []


def _chain(rng: random.Random, provider: str, model: str) -> tuple[str, int, Attrs, list[dict]]:
    attrs: Attrs = [
        ("openinference.span.kind", _s("CHAIN")),
        ("input.value", _s("question")),
        ("output.value", _s("answer")),
        ("http.request.method", _s("POST")),
        ("http.response.status_code", _i(rng.choice([200, 500]))),
        ("url.full", _s("https://api.example.com/v1/chat?api_key=sk-abcdefghijklmnopqrstuvwx")),
    ]
    events = [
        {
            "time": 0,
            "name": "exception",
            "attributes": [
                ("exception.type", _s("openai.RateLimitError")),
                ("exception.message", _s("Rate limit reached for alice@example.com")),
                ("exception.stacktrace", _s('Traceback (most recent call last):\n  File "app.py", line 3')),
            ],
        }
    ]
    return "POST /chat", 2, attrs, events


_FLAVOURS: list[Callable[[random.Random, str, str], tuple[str, int, Attrs, list[dict]]]] = [
    _openinference_llm,
    _genai_current,
    _genai_legacy,
    _vercel,
    _tool,
    _chain,
]


def trace_id_for(index: int, resource: int) -> bytes:
    return struct.pack(">IQI", 0x7A7A0000 | resource, index, 0x0BADF00D)


def span_id_for(index: int, seq: int) -> bytes:
    return struct.pack(">IHH", index + 1, seq + 1, 0xF00D)


def base_request(rng: random.Random, index: int) -> list[dict]:
    """A realistic request: 1-3 resources, 1-2 scopes each, 1-4 LLM-ish spans per scope."""
    resources = []
    seq = 0
    start0 = BASE_NS + index * 1_000_000_000
    for r in range(rng.choice((1, 1, 1, 1, 2, 3))):
        trace_id = trace_id_for(index, r)
        provider, model = rng.choice(_MODELS)
        resource_attrs: Attrs = [
            ("service.name", _s(rng.choice(["chatbot", "rag-api", "agent-worker", "évaluation-服务"]))),
            ("service.version", _s("1.4.2")),
            ("deployment.environment.name", _s(rng.choice(["prod", "staging"]))),
            ("telemetry.sdk.language", _s("python")),
            ("telemetry.sdk.name", _s("opentelemetry")),
            ("telemetry.sdk.version", _s("1.29.0")),
            ("host.name", _s(f"host-{rng.randint(1, 9)}")),
            ("process.pid", _i(rng.randint(100, 99999))),
        ]
        scopes = []
        root_id = b""
        for _ in range(rng.choice((1, 1, 1, 1, 2))):
            spans = []
            for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
                name, kind, attrs, events = rng.choice(_FLAVOURS)(rng, provider, model)
                span_id = span_id_for(index, seq)
                start = start0 + seq * 1_000_000
                end = start + rng.randint(1, 5_000_000_000)
                for n, event in enumerate(events):
                    event["time"] = start + (n + 1) * 1000
                error = rng.random() < 0.1
                span = {
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "parent_span_id": root_id,
                    "trace_state": rng.choice(["", "vendor=1"]),
                    "name": name,
                    "kind": kind,
                    "start": start,
                    "end": end,
                    "attributes": attrs,
                    "events": events,
                    "links": [],
                    "status": {"code": 2 if error else rng.choice((0, 1)), "message": "boom" if error else ""},
                    "flags": 0x100,
                }
                if root_id and rng.random() < 0.2:
                    span["links"].append(
                        {
                            "trace_id": trace_id_for(index + 1, 0),
                            "span_id": root_id,
                            "trace_state": "",
                            "attributes": [],
                        }
                    )
                root_id = root_id or span_id
                spans.append(span)
                seq += 1
            scopes.append(
                {
                    "name": rng.choice(
                        ["openinference.instrumentation.openai", "opentelemetry.instrumentation.openai"]
                    ),
                    "version": "0.1.9",
                    "attributes": [],
                    "spans": spans,
                }
            )
        resources.append({"attributes": resource_attrs, "scopes": scopes})
    return resources


# ------------------------------------------------------------------------------------ structural mutations

_TOKEN_KEYS = [
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.token_count.total",
    "llm.token_count.prompt_details.cache_read",
    "llm.token_count.prompt_details.cache_write",
    "llm.token_count.completion_details.reasoning",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "llm.usage.total_tokens",
    "ai.usage.promptTokens",
    "llm.cost.total",
    "llm.cost.prompt",
    "gen_ai.usage.cost",
    "gen_ai.request.temperature",
    "gen_ai.request.max_tokens",
    "gen_ai.request.top_p",
    "http.response.status_code",
]
_STRING_KEYS = [
    "llm.model_name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "openinference.span.kind",
    "gen_ai.operation.name",
    "session.id",
    "user.id",
    "gen_ai.conversation.id",
    "service.name",
    "llm.prompt_template.version",
    "gen_ai.response.finish_reasons",
    "llm.output_messages.0.message.role",
    "tenant.id",
]
_JSON_KEYS = [
    "llm.invocation_parameters",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "input.value",
    "output.value",
    "metadata",
    "llm.tools.0.tool.json_schema",
    "llm.prompt_template.variables",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
    "ai.prompt.messages",
    "tool.parameters",
    "gen_ai.prompt",
    "gen_ai.completion",
]


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _jwt_with_header(header: str) -> str:
    encoded = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()
    return f"Authorization: Bearer {encoded}.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlc2ln"


def _weird_number(rng: random.Random) -> Value:
    return rng.choice(
        [
            _s("abc"),
            _s(""),
            _s("-5"),
            _s(" 12 "),
            _s("1_000"),
            _s("١٢"),
            _s("0x10"),
            _s("1e400"),
            _s("NaN"),
            _s("-Infinity"),
            _s("18446744073709551616"),
            _s("9" * 5000),
            _s("3.9999999999999999e18"),
            _i(-5),
            _i(-(2**63)),
            _i(INT64_MAX),
            _i(0),
            ("d", 1e30),
            ("d", -1e30),
            ("d", 1.5),
            ("d", -0.0),
            ("d", 5e-324),
            ("d", float("nan")),
            ("d", float("inf")),
            ("d", float("-inf")),
            ("d", 1.8446744073709552e19),
            ("b", True),
            ("y", b"\x00\xff"),
            ("a", [_i(1), _i(2)]),
            ("k", [("a", _i(1))]),
            ("n", None),
        ]
    )


def _weird_string(rng: random.Random) -> Value:
    return rng.choice(
        [
            _s(""),
            _s(" "),
            _s("\x00"),
            _s("a\x00b"),
            _s("\u202e\u2028\u2029"),
            _s("\U0001f600" * 50),
            _s("x" * 70_000),
            _s(BAD_UTF8),
            _s(SURROGATE),
            _i(42),
            ("d", float("nan")),
            ("b", False),
            ("y", b"\x80\x81"),
            ("a", []),
            ("a", [_s("x"), _i(1), ("n", None)]),
            ("k", []),
            ("k", [("", _s("")), ("", _i(1))]),
            ("n", None),
        ]
    )


def _not_json(rng: random.Random) -> Value:
    return rng.choice(
        [
            _s("{"),
            _s("["),
            _s('{"a":'),
            _s("null"),
            _s("[]"),
            _s("{}"),
            _s('"str"'),
            _s("1"),
            _s("[1,2"),
            _s('{"role": 5}'),
            _s("[NaN]"),
            _s('{"a": 1e999999}'),
            _s('[{"role":"user","parts":"notalist"}]'),
            _s('[{"role":"user","parts":[{"type":"text","content":{"x":[1,{"y":null}]}}]}]'),
            _s('[{"role":null,"parts":[{"type":"tool_call","arguments":"{"}]}]'),
            _s('[{"role":"user","parts":[{"type":"text","content":"\\ud800"}]}]'),
            _s('{"messages":[{"role":"user","content":"\\udfff\\ud800"}]}'),
            _s('{"a":"\\u0000"}'),
            _s('[{"role": "user", "content": [' + '{"type":"text","text":"x"},' * 500 + "{}]}]"),
            _s(_deep_json(rng.choice([50, 200, 1000, 3000]))),
            _s('{"a":' * 600 + "1" + "}" * 600),
            _s(_jwt_with_header(_deep_json(rng.choice([200, 2000, 20000])))),
            _s(_jwt_with_header('{"a":' * rng.choice([100, 1000, 5000]) + "1" + "}" * 5000)),
            _s("token: " + '{"a":' * 3000 + "1" + "}" * 3000 + " sk-abcdefghijklmnopqrstuvwxyz012345"),
            _s(_jwt_with_header('{"alg":"\\ud800"}')),
            _s(_jwt_with_header('{"alg":' + "1" * 5000 + "}")),
            _i(7),
            ("a", [_s("{")]),
            ("k", [("messages", _s("["))]),
            ("y", b"{}"),
        ]
    )


def _all_spans(model: list[dict]) -> list[dict]:
    return [span for resource in model for scope in resource["scopes"] for span in scope["spans"]]


def _pick_span(rng: random.Random, model: list[dict]) -> dict | None:
    spans = _all_spans(model)
    return rng.choice(spans) if spans else None


def _attr_lists(model: list[dict]) -> list[Attrs]:
    lists: list[Attrs] = []
    for resource in model:
        lists.append(resource["attributes"])
        for scope in resource["scopes"]:
            lists.append(scope["attributes"])
            for span in scope["spans"]:
                lists.append(span["attributes"])
                lists.extend(event["attributes"] for event in span["events"])
                lists.extend(link["attributes"] for link in span["links"])
    return lists


def _set_attr(attrs: Attrs, key: str, value: Value) -> None:
    for n, (k, _) in enumerate(attrs):
        if k == key:
            attrs[n] = (key, value)
            return
    attrs.append((key, value))


def _nested(rng: random.Random, depth: int) -> Value:
    value: Value = _s("leaf")
    for _ in range(depth):
        value = ("a", [value, _i(1)]) if rng.random() < 0.5 else ("k", [("k", value)])
    return value


def m_timestamps(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "timestamps: no span"
    choice = rng.choice(
        [
            "start0",
            "start1",
            "start_max_i64",
            "start_i64+1",
            "start_u64max",
            "end0",
            "end<start",
            "end_u64max",
            "both0",
            "event0",
            "event_u64max",
            "event_i64+1",
            "all_huge",
        ]
    )
    if choice == "start0":
        span["start"] = 0
    elif choice == "start1":
        span["start"] = 1
    elif choice == "start_max_i64":
        span["start"] = INT64_MAX
    elif choice == "start_i64+1":
        span["start"] = INT64_MAX + 1
    elif choice == "start_u64max":
        span["start"] = UINT64_MAX
    elif choice == "end0":
        span["end"] = 0
    elif choice == "end<start":
        span["end"] = span["start"] - rng.randint(1, 10**12)
    elif choice == "end_u64max":
        span["end"] = UINT64_MAX
    elif choice == "both0":
        span["start"] = span["end"] = 0
    elif choice.startswith("event"):
        span["events"].append({"time": 0, "name": "tick", "attributes": []})
        span["events"][rng.randrange(len(span["events"]))]["time"] = {
            "event0": 0,
            "event_u64max": UINT64_MAX,
            "event_i64+1": INT64_MAX + 1,
        }[choice]
    else:
        span["start"], span["end"] = UINT64_MAX - 5, UINT64_MAX
        for event in span["events"]:
            event["time"] = UINT64_MAX
    return f"timestamps:{choice}"


def m_ids(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "ids: no span"
    which = rng.choice(["trace_id", "span_id", "parent_span_id", "link"])
    value = rng.choice(
        [b"", b"\x00" * 8, b"\x00" * 16, b"\x01" * 7, b"\x01" * 9, b"\x01" * 15, b"\x01" * 17, b"\x01" * 32, b"\x02"]
    )
    if which == "link":
        span["links"].append({"trace_id": value, "span_id": value[:9], "trace_state": "x" * 300, "attributes": []})
    else:
        span[which] = value
    return f"ids:{which}={len(value)}B{'-zero' if value and not any(value) else ''}"


def m_duplicate_span(rng: random.Random, model: list[dict]) -> str:
    for resource in model:
        for scope in resource["scopes"]:
            if scope["spans"]:
                span = rng.choice(scope["spans"])
                scope["spans"].append({**span, "name": span["name"] + " (again)"})
                return "duplicate span (same ids twice in one request)"
    return "duplicate span: none"


def m_strings(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    target = rng.choice(["name", "status", "trace_state", "event_name", "scope", "attr_key", "service"])
    text = _weird_string(rng)
    text_str = text[1] if text[0] == "s" else "?"
    if target == "service":
        _set_attr(model[0]["attributes"], "service.name", text)
    elif span is None:
        return "strings: no span"
    elif target == "name":
        span["name"] = text_str
    elif target == "status":
        span["status"]["message"] = text_str
    elif target == "trace_state":
        span["trace_state"] = text_str
    elif target == "event_name":
        span["events"].append({"time": span["start"], "name": text_str, "attributes": [("k", text)]})
    elif target == "scope":
        model[0]["scopes"][0]["name"] = text_str
    else:
        span["attributes"].append((text_str, _s("value for a weird key")))
    return f"strings:{target}={text_str[:12]!r}"


def m_invalid_text(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    marker = rng.choice([BAD_UTF8, SURROGATE])
    if span is None:
        model[0]["attributes"].append(("k", _s(marker)))
    else:
        target = rng.choice(["attr", "name", "key", "event"])
        if target == "attr":
            span["attributes"].append((rng.choice(_JSON_KEYS + _STRING_KEYS), _s("pre " + marker + " post")))
        elif target == "name":
            span["name"] = marker
        elif target == "key":
            span["attributes"].append((marker, _s("v")))
        else:
            span["events"].append({"time": span["start"], "name": marker, "attributes": []})
    return f"invalid text:{marker}"


def m_known_key_types(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "known keys: no span"
    done = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.45:
            key, value = rng.choice(_TOKEN_KEYS), _weird_number(rng)
        elif kind < 0.7:
            key, value = rng.choice(_STRING_KEYS), _weird_string(rng)
        else:
            key, value = rng.choice(_JSON_KEYS), _not_json(rng)
            if rng.random() < 0.3:
                span["attributes"].append(("input.mime_type", _s("application/json")))
        _set_attr(span["attributes"] if key != "service.name" else model[0]["attributes"], key, value)
        shown = value[1] if isinstance(value[1], str | int | float) else value[0]
        done.append(f"{key}={str(shown)[:24]!r}")
    return "known keys:" + ",".join(done)


def m_event_attr_types(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "event attrs: no span"
    name = rng.choice(
        [
            "gen_ai.client.inference.operation.details",
            "gen_ai.choice",
            "gen_ai.user.message",
            "exception",
            "First Token Stream Event",
            "gen_ai.content.prompt",
        ]
    )
    attrs = [
        (rng.choice(_JSON_KEYS + ["message", "content", "gen_ai.prompt", "index"]), _not_json(rng))
        for _ in range(rng.randint(1, 3))
    ]
    span["events"].append({"time": rng.choice([0, span["start"], UINT64_MAX]), "name": name, "attributes": attrs})
    return f"event attrs:{name}"


def m_nested(rng: random.Random, model: list[dict]) -> str:
    depth = rng.choice([3, 10, 40, 64, 90, 99, 100, 101, 150, 300])
    target = rng.choice(_attr_lists(model))
    target.append((rng.choice(["nested", "gen_ai.input.messages", "llm.input_messages"]), _nested(rng, depth)))
    return f"nested AnyValue depth {depth}"


def m_doubles_bytes(rng: random.Random, model: list[dict]) -> str:
    target = rng.choice(_attr_lists(model))
    value = rng.choice(
        [
            ("d", float("nan")),
            ("d", float("inf")),
            ("d", float("-inf")),
            ("d", -0.0),
            ("d", 1e308),
            ("d", 5e-324),
            ("y", b""),
            ("y", bytes(range(256))),
            ("y", b"\xff" * 1000),
            ("i", -(2**63)),
            ("i", INT64_MAX),
            ("a", [("d", float("nan")), ("y", b"\x00")]),
            ("k", [("nan", ("d", float("nan")))]),
        ]
    )
    target.append((rng.choice(["value", "llm.token_count.prompt", "gen_ai.request.temperature"]), value))
    return f"special value:{value[0]}"


def m_duplicate_keys(rng: random.Random, model: list[dict]) -> str:
    target = rng.choice(_attr_lists(model))
    key = rng.choice(["service.name", "gen_ai.usage.input_tokens", "llm.model_name", "dup", "input.value"])
    for _ in range(rng.randint(2, 5)):
        target.append((key, rng.choice([_s("one"), _i(2), ("d", 3.5), ("b", True), ("n", None)])))
    if rng.random() < 0.5:
        target.append(("kv", ("k", [("x", _i(1)), ("x", _s("2")), ("x", ("n", None))])))
    return f"duplicate keys:{key}"


def m_many(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "many: no span"
    what = rng.choice(["attributes", "events", "links", "spans", "array"])
    count = rng.choice([500, 2000, 10_000, 40_000])
    if what == "attributes":
        span["attributes"].extend((f"attr.{n}", _i(n)) for n in range(count))
    elif what == "events":
        span["events"].extend({"time": span["start"] + n, "name": f"e{n}", "attributes": []} for n in range(count // 4))
    elif what == "links":
        span["links"].extend(
            {"trace_id": trace_id_for(n, 9), "span_id": span_id_for(n, 9), "trace_state": "", "attributes": []}
            for n in range(count // 4)
        )
    elif what == "spans":
        scope = model[0]["scopes"][0]
        index = struct.unpack(">I", span["span_id"][:4])[0] - 1 if len(span["span_id"]) == 8 else 0
        for n in range(count // 8):
            scope["spans"].append({**span, "span_id": span_id_for(index, 1000 + n), "attributes": [], "events": []})
    else:
        span["attributes"].append(("gen_ai.response.finish_reasons", ("a", [_s("stop")] * count)))
    return f"many {what}:{count}"


def m_huge_value(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "huge: no span"
    size = rng.choice([300_000, 1_000_000, MAX_REQUEST_BYTES + 1000])
    filler = rng.choice(["a", "alice@example.com ", "4111111111111111 ", "é", "[{"])
    span["attributes"].append((rng.choice(_JSON_KEYS), _s((filler * (size // len(filler.encode()) + 1))[:size])))
    return f"huge value:{size}"


def m_enums(rng: random.Random, model: list[dict]) -> str:
    span = _pick_span(rng, model)
    if span is None:
        return "enums: no span"
    value = rng.choice([6, 7, 99, 2**31 - 1, -1, -(2**31)])
    if rng.random() < 0.5:
        span["kind"] = value
        return f"enum kind={value}"
    span["status"]["code"] = value
    return f"enum status={value}"


def m_empty(rng: random.Random, model: list[dict]) -> str:
    what = rng.choice(["request", "resource", "scope", "span", "no resource"])
    if what == "request":
        model.clear()
    elif what == "resource":
        model.append({"attributes": [], "scopes": []})
    elif what == "scope":
        model[0]["scopes"].append({"name": "", "version": "", "attributes": [], "spans": []})
    elif what == "no resource":
        model[0]["attributes"] = []
    else:
        span = _pick_span(rng, model)
        if span is not None:
            for key in ("attributes", "events", "links"):
                span[key] = []
            span.update(name="", kind=0, trace_state="", status={"code": 0, "message": ""})
    return f"empty:{what}"


STRUCTURAL: list[Callable[[random.Random, list[dict]], str]] = [
    m_timestamps,
    m_timestamps,
    m_ids,
    m_duplicate_span,
    m_strings,
    m_invalid_text,
    m_known_key_types,
    m_known_key_types,
    m_known_key_types,
    m_event_attr_types,
    m_nested,
    m_doubles_bytes,
    m_duplicate_keys,
    m_enums,
    m_empty,
]
RARE_STRUCTURAL = [m_many, m_huge_value]  # large requests: a few per thousand, so the run stays quick


# ---------------------------------------------------------------------------------------------- encoders


def _set_any(target: AnyValue, value: Value) -> None:
    kind, x = value
    if kind == "s":
        target.string_value = x
    elif kind == "i":
        target.int_value = max(-(2**63), min(INT64_MAX, x))
    elif kind == "d":
        target.double_value = x
    elif kind == "b":
        target.bool_value = x
    elif kind == "y":
        target.bytes_value = x
    elif kind == "a":
        values = target.array_value.values
        target.array_value.SetInParent()
        for item in x:
            _set_any(values.add(), item)
    elif kind == "k":
        target.kvlist_value.SetInParent()
        for key, item in x:
            kv = target.kvlist_value.values.add()
            kv.key = key
            _set_any(kv.value, item)


def _set_attrs(target, attrs: Attrs) -> None:
    for key, value in attrs:
        kv = target.add()
        kv.key = key
        _set_any(kv.value, value)


def _u64(x: int) -> int:
    return x % (UINT64_MAX + 1)


def _i32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def to_protobuf(model: list[dict]) -> bytes:
    request = ExportTraceServiceRequest()
    for resource in model:
        rs = request.resource_spans.add()
        _set_attrs(rs.resource.attributes, resource["attributes"])
        for scope in resource["scopes"]:
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = scope["name"], scope["version"]
            _set_attrs(ss.scope.attributes, scope["attributes"])
            for span in scope["spans"]:
                s = ss.spans.add()
                s.trace_id, s.span_id, s.parent_span_id = span["trace_id"], span["span_id"], span["parent_span_id"]
                s.trace_state, s.name = span["trace_state"], span["name"]
                s.kind = _i32(span["kind"])
                s.start_time_unix_nano, s.end_time_unix_nano = _u64(span["start"]), _u64(span["end"])
                s.flags = span["flags"]
                _set_attrs(s.attributes, span["attributes"])
                for event in span["events"]:
                    e = s.events.add()
                    e.time_unix_nano, e.name = _u64(event["time"]), event["name"]
                    _set_attrs(e.attributes, event["attributes"])
                for link in span["links"]:
                    ln = s.links.add()
                    ln.trace_id, ln.span_id, ln.trace_state = link["trace_id"], link["span_id"], link["trace_state"]
                    _set_attrs(ln.attributes, link["attributes"])
                s.status.code = _i32(span["status"]["code"])
                s.status.message = span["status"]["message"]
    return request.SerializeToString().replace(BAD_UTF8.encode(), _BAD_UTF8_BYTES)


def _json_double(x: float) -> Any:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _json_any(value: Value, numbers_as_strings: bool) -> dict:
    kind, x = value
    if kind == "s":
        return {"stringValue": x}
    if kind == "i":
        return {"intValue": str(x) if numbers_as_strings else x}
    if kind == "d":
        return {"doubleValue": _json_double(x)}
    if kind == "b":
        return {"boolValue": x}
    if kind == "y":
        return {"bytesValue": base64.b64encode(x).decode()}
    if kind == "a":
        return {"arrayValue": {"values": [_json_any(v, numbers_as_strings) for v in x]}}
    if kind == "k":
        return {"kvlistValue": {"values": [{"key": k, "value": _json_any(v, numbers_as_strings)} for k, v in x]}}
    return {}


def _depth(value: Value) -> int:
    kind, x = value
    if kind == "a":
        return 1 + max((_depth(v) for v in x), default=0)
    if kind == "k":
        return 1 + max((_depth(v) for _, v in x), default=0)
    return 0


def _any_text(value: Value) -> str:
    """OTLP/JSON text of a value nested deeper than orjson writes (one Python frame per level)."""
    kind, x = value
    if kind == "a":
        return '{"arrayValue":{"values":[' + ",".join(_any_text(v) for v in x) + "]}}"
    if kind == "k":
        items = (f'{{"key":{orjson.dumps(k).decode()},"value":{_any_text(v)}}}' for k, v in x)
        return '{"kvlistValue":{"values":[' + ",".join(items) + "]}}"
    return orjson.dumps(_json_any(value, True)).decode()


_DEEP = 40  # nesting levels past which a value is spliced in as text


def _json_attrs(attrs: Attrs, numbers_as_strings: bool, deep: list[str] | None = None) -> list[dict]:
    out = []
    for key, value in attrs:
        if deep is not None and value[0] in "ak" and _depth(value) > _DEEP:
            out.append({"key": key, "value": f"~~DEEP{len(deep)}~~"})
            deep.append(_any_text(value))
        else:
            out.append({"key": key, "value": _json_any(value, numbers_as_strings)})
    return out


def splice_deep(text: bytes, deep: list[str]) -> bytes:
    for n, value in enumerate(deep):
        text = text.replace(f'"~~DEEP{n}~~"'.encode(), value.encode(), 1)
    return text


def to_json_dict(model: list[dict], numbers_as_strings: bool = True, deep: list[str] | None = None) -> dict:
    """OTLP/JSON: camelCase, hex ids, integer enums, 64-bit integers as strings (or numbers). Values
    nested too deep for orjson are left as markers, their text appended to `deep` (see `splice_deep`)."""

    def num(x: int) -> Any:
        return str(x) if numbers_as_strings else x

    resources = []
    for resource in model:
        scopes = []
        for scope in resource["scopes"]:
            spans = []
            for span in scope["spans"]:
                spans.append(
                    {
                        "traceId": span["trace_id"].hex(),
                        "spanId": span["span_id"].hex(),
                        "parentSpanId": span["parent_span_id"].hex(),
                        "traceState": span["trace_state"],
                        "name": span["name"],
                        "kind": span["kind"],
                        "startTimeUnixNano": num(span["start"]),
                        "endTimeUnixNano": num(span["end"]),
                        "flags": span["flags"],
                        "attributes": _json_attrs(span["attributes"], numbers_as_strings, deep),
                        "events": [
                            {
                                "timeUnixNano": num(e["time"]),
                                "name": e["name"],
                                "attributes": _json_attrs(e["attributes"], numbers_as_strings, deep),
                            }
                            for e in span["events"]
                        ],
                        "links": [
                            {
                                "traceId": ln["trace_id"].hex(),
                                "spanId": ln["span_id"].hex(),
                                "traceState": ln["trace_state"],
                                "attributes": _json_attrs(ln["attributes"], numbers_as_strings, deep),
                            }
                            for ln in span["links"]
                        ],
                        "status": {"code": span["status"]["code"], "message": span["status"]["message"]},
                    }
                )
            scopes.append(
                {
                    "scope": {
                        "name": scope["name"],
                        "version": scope["version"],
                        "attributes": _json_attrs(scope["attributes"], numbers_as_strings, deep),
                    },
                    "spans": spans,
                }
            )
        resources.append(
            {
                "resource": {"attributes": _json_attrs(resource["attributes"], numbers_as_strings, deep)},
                "scopeSpans": scopes,
            }
        )
    return {"resourceSpans": resources}


def _dumps(doc: Any, indent: bool = False) -> bytes:
    """JSON text; documents nested deeper than orjson writes go through the stdlib encoder."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)
    except TypeError:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20_000))
        try:
            return json.dumps(doc, ensure_ascii=False, indent=2 if indent else None).encode()
        finally:
            sys.setrecursionlimit(limit)


def _json_text_fixups(text: bytes, rng: random.Random) -> bytes:
    """Markers become raw invalid UTF-8 or lone-surrogate escapes, which only JSON text can carry."""
    if BAD_UTF8.encode() in text:
        text = text.replace(BAD_UTF8.encode(), _BAD_UTF8_BYTES)
    if SURROGATE.encode() in text:
        text = text.replace(SURROGATE.encode(), rng.choice([b"\\ud800", b"\\udfff", b"\\udc00\\ud800", b"\\ud83d"]))
    return text


def m_json_dict(rng: random.Random, doc: dict) -> str:
    """Mutations of the OTLP/JSON document itself: forms the protobuf JSON mapping allows or refuses."""
    spans = [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    choice = rng.choice(
        [
            "ids_upper",
            "ids_spaces",
            "ids_odd",
            "ids_base64",
            "ids_nonhex",
            "ids_number",
            "ts_number",
            "ts_float",
            "ts_negative",
            "ts_too_big",
            "ts_exp",
            "int_too_big",
            "int_float",
            "int_text",
            "enum_name",
            "enum_unknown_name",
            "null_fields",
            "unknown_fields",
            "snake_case",
            "wrong_container",
            "wrong_scalar",
            "double_text",
            "bool_text",
            "top_level_list",
            "empty_object",
            "deep_nesting",
        ]
    )
    span = rng.choice(spans) if spans else None
    if choice == "top_level_list":
        return "json:" + choice
    if choice == "empty_object":
        doc.clear()
        return "json:" + choice
    if choice == "deep_nesting":
        value: dict = {"stringValue": "leaf"}
        for _ in range(rng.choice([50, 99, 101, 110])):
            value = {"arrayValue": {"values": [value]}}
        (span or {"attributes": []}).setdefault("attributes", []).append({"key": "deep", "value": value})
        return "json:" + choice
    if choice == "snake_case":
        doc["resource_spans"] = doc.pop("resourceSpans")
        for rs in doc["resource_spans"]:
            rs["scope_spans"] = rs.pop("scopeSpans")
            for ss in rs["scope_spans"]:
                for s in ss["spans"]:
                    s["trace_id"], s["span_id"] = s.pop("traceId"), s.pop("spanId")
                    s["start_time_unix_nano"] = s.pop("startTimeUnixNano")
        return "json:" + choice
    if choice == "unknown_fields":
        doc["futureField"] = {"x": [1, 2]}
        if span is not None:
            span["droppedSomethingCount"] = 3
        return "json:" + choice
    if span is None:
        return "json: no span"
    if choice == "ids_upper":
        span["traceId"], span["spanId"] = span["traceId"].upper(), span["spanId"].upper()
    elif choice == "ids_spaces":
        span["spanId"] = " ".join(span["spanId"][i : i + 2] for i in range(0, len(span["spanId"]), 2))
    elif choice == "ids_odd":
        span["spanId"] = span["spanId"][:-1]
    elif choice == "ids_base64":
        span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"] or "00")).decode()
    elif choice == "ids_nonhex":
        span[rng.choice(["traceId", "spanId", "parentSpanId"])] = rng.choice(["zz" * 8, "é" * 16, "", "0x12"])
    elif choice == "ids_number":
        span["spanId"] = 12345
    elif choice == "ts_number":
        span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
    elif choice == "ts_float":
        span["startTimeUnixNano"] = float(span["startTimeUnixNano"])
    elif choice == "ts_negative":
        span["startTimeUnixNano"] = "-1"
    elif choice == "ts_too_big":
        span["endTimeUnixNano"] = str(2**64)
    elif choice == "ts_exp":
        span["startTimeUnixNano"] = "1.75e18"
    elif choice in ("int_too_big", "int_float", "int_text"):
        value = {"int_too_big": str(2**63), "int_float": 1.5, "int_text": "abc"}[choice]
        span["attributes"].append({"key": "llm.token_count.prompt", "value": {"intValue": value}})
    elif choice == "enum_name":
        span["kind"] = "SPAN_KIND_CLIENT"
        span["status"]["code"] = "STATUS_CODE_ERROR"
    elif choice == "enum_unknown_name":
        span["kind"] = "SPAN_KIND_TELEPORT"
    elif choice == "null_fields":
        for key in rng.sample(sorted(span), 3):
            span[key] = None
    elif choice == "wrong_container":
        span[rng.choice(["attributes", "events", "links", "status"])] = rng.choice(["x", 5, {"a": 1}, [1, 2]])
    elif choice == "wrong_scalar":
        span[rng.choice(["name", "kind", "flags", "traceState"])] = rng.choice([[], {}, True, 1.5, "7"])
    elif choice == "double_text":
        span["attributes"].append({"key": "d", "value": {"doubleValue": rng.choice(["nan", "1e999", "abc", "1.5"])}})
    else:
        span["attributes"].append({"key": "b", "value": {"boolValue": rng.choice(["true", 1, None])}})
    return "json:" + choice


# ------------------------------------------------------------------------------------ byte-level mutations

_INTERESTING = [0x00, 0xFF, 0x7F, 0x80, 0x0A, 0x12, 0x22, 0x5C, 0x7B, 0x5B, 0x2C, 0x3A]


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    """Bit flips, truncations, insertions, deletions, overwrites and duplicated chunks."""
    buf = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 6))):
        op = rng.choice(("flip", "flip", "truncate", "insert", "delete", "overwrite", "duplicate"))
        pos = rng.randrange(len(buf) + 1)
        if op == "flip" and buf:
            pos = min(pos, len(buf) - 1)
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == "truncate":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = rng.choice(
                [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8))), b"\xff" * 10, b"\x80" * 11, b"\x00"]
            )
        elif op == "delete":
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == "overwrite" and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice(_INTERESTING)
        elif op == "duplicate" and buf:
            start = rng.randrange(len(buf))
            chunk = buf[start : start + rng.randint(1, 64)]
            buf[pos:pos] = chunk
        done.append(f"{op}@{pos}")
    return bytes(buf), done


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """A few kilobytes that inflate to three times the collector's request limit."""
    return gzip_bytes(b"\x00" * (MAX_REQUEST_BYTES * 3))


# ---------------------------------------------------------------------------------------------- cases


@lru_cache(maxsize=256)
def make_case(seed: int, index: int) -> Case:
    """The case `index` of the run with `seed` (cached: retries of recent cases reuse it)."""
    rng = random.Random(f"tracehouse-fuzz:{seed}:{index}")
    roll = rng.random()
    if roll < 0.01 and index > 0:  # an exporter's retry of a recent request, maybe on the other transport
        original = make_case(seed, max(0, index - rng.randint(1, 20)))
        transport = original.transport
        if original.encoding == "protobuf" and original.content_type == "":
            transport = rng.choice(("http", "grpc"))
        compression = original.compression if transport == "http" else rng.choice(("identity", "gzip"))
        body = original.body
        if transport == "grpc" and original.transport == "http" and original.compression == "gzip":
            plain = decompressed(original)  # grpc compresses itself
            if plain is None:
                transport = "http"
            else:
                body = plain
        return Case(
            index,
            transport,
            original.encoding,
            compression,
            body,
            [f"retry of case {original.index}", *original.mutations],
            original.byte_mutated,
            original.content_type,
        )
    # OTLP/JSON costs the collector about twice what protobuf does: a fifth of the requests.
    transport, encoding = rng.choices([("http", "protobuf"), ("http", "json"), ("grpc", "protobuf")], (50, 20, 30))[0]
    model = base_request(rng, index)
    mutations: list[str] = []
    level = rng.random()
    if level >= 0.12:  # 12% pristine
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            if model:  # an emptied request has nothing left to mutate
                mutations.append(rng.choice(STRUCTURAL)(rng, model))
        if rng.random() < 0.004 and model:
            mutations.append(rng.choice(RARE_STRUCTURAL)(rng, model))
    if encoding == "protobuf":
        body = to_protobuf(model)
    else:
        deep: list[str] = []
        doc = to_json_dict(model, numbers_as_strings=rng.random() < 0.8, deep=deep)
        if level >= 0.12 and rng.random() < 0.3:
            mutations.append(m_json_dict(rng, doc))
        body = _dumps(doc if mutations[-1:] != ["json:top_level_list"] else [doc], indent=rng.random() < 0.05)
        body = splice_deep(body, deep)
        body = _json_text_fixups(body, rng)
    byte_mutated = level >= 0.12 and rng.random() < 0.35
    if byte_mutated:
        body, ops = mutate_bytes(rng, body)
        mutations.append("bytes:" + ",".join(ops))
    compression = "gzip" if rng.random() < 0.3 else "identity"
    content_type = ""
    if transport == "http":
        if compression == "gzip":
            body = gzip_bytes(body)
            if rng.random() < 0.05:
                body, ops = mutate_bytes(rng, body)
                byte_mutated = True
                mutations.append("gzip bytes:" + ",".join(ops))
        if rng.random() < 0.003:
            mutations.append("gzip bomb")
            body, compression = gzip_bomb(), "gzip"
        if rng.random() < 0.01:
            content_type = rng.choice(["text/plain", "application/protobuf", "application/json; charset=utf-8"])
            mutations.append(f"content-type {content_type}")
    return Case(index, transport, encoding, compression, body, mutations, byte_mutated, content_type)


def decompressed(case: Case) -> bytes | None:
    """The body the collector's pipeline sees (None: not valid in its Content-Encoding)."""
    if case.compression == "identity" or case.transport == "grpc":
        return case.body
    try:
        out = zlib.decompressobj(wbits=31)
        data = out.decompress(case.body)
        if not out.eof:
            return None
        rest = out.unused_data
        while rest.strip(b"\x00"):
            more = zlib.decompressobj(wbits=31)
            data += more.decompress(rest)
            if not more.eof:
                return None
            rest = more.unused_data
        return data
    except zlib.error:
        return None


def _json_keys(body: bytes) -> list[tuple[str, str]] | None:
    """The spans of an OTLP/JSON body, walked as the specification lays it out (camelCase or snake_case
    names, hex ids); None when it is not JSON or not shaped as an ExportTraceServiceRequest."""
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    keys = []
    try:
        for rs in data.get("resourceSpans") or data.get("resource_spans") or []:
            for ss in rs.get("scopeSpans") or rs.get("scope_spans") or []:
                for span in ss.get("spans") or []:
                    ids = [span.get(camel, span.get(snake)) for camel, snake in _JSON_IDS]
                    keys.append(tuple(_hex_key(value) for value in ids))
    except (AttributeError, TypeError):
        return None
    return keys


_JSON_IDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def _hex_key(value: Any) -> str:
    if not isinstance(value, str):
        return "invalid"
    try:
        return bytes.fromhex(value).hex()
    except ValueError:
        return "invalid"


def reference(case: Case) -> Reference | None:
    """What the case's body holds for a spec-following reader; None if it is not a valid request."""
    body = decompressed(case)
    if body is None:
        return None
    if case.json_body:
        keys = _json_keys(body)
        if keys is None:
            return None
    else:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError:
            return None
        keys = [
            (span.trace_id.hex(), span.span_id.hex())
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
    return Reference(hashlib.sha256(body).digest()[:16], len(body), keys)


def main(argv: list[str]) -> int:
    """Write case INDEX of run SEED to OUT_DIR (body and a curl line) to reproduce a failure by hand."""
    seed, index, out = int(argv[1]), int(argv[2]), Path(argv[3])
    case = make_case(seed, index)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("json" if case.encoding == "json" else "pb") + (".gz" if case.compression == "gzip" else "")
    path = out / f"case-{seed}-{index}.{suffix}"
    path.write_bytes(case.body)
    print(orjson.dumps(case.describe(), option=orjson.OPT_INDENT_2).decode())
    headers = " ".join(f"-H '{k}: {v}'" for k, v in case.headers().items())
    print(f"curl -sS -i {headers} --data-binary @{path} http://127.0.0.1:4318/v1/traces")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
