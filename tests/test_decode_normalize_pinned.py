"""Decode + normalize output pinned over a varied corpus, so a faster path is proven to change nothing.

Every column decode writes and every column normalize adds, for each case below, is hashed (its `repr`: value
types, dict order and every character count) and compared with the digest recorded before the fast paths
were written. The cases: every span the test_normalize* tests built (tests/data/normalize_corpus.json,
recorded through normalize_support.request), those spans mutated (keys dropped, values retyped, events,
statuses and identity keys added), the bench spans, AnyValue types and edge values, malformed requests
(bad ids, unset times, events out of range), and random spans over the conventions' keys with garbage values.
Each request carries its spans three times: the memos of normalize (dispatch, indexed-list plans) answer the
first sighting of a key set, the second and later ones differently.

A deliberate change of output re-pins with `TRACEHOUSE_REPIN=1 pytest tests/test_decode_normalize_pinned.py`
(then review the diff of tests/data/decode_normalize_digests.json: every changed case is a changed result).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from normalize_support import END, START, key_values
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracehouse.collector.stages.decode import decode_request, parse_protobuf
from tracehouse.collector.stages.normalize import normalize

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "normalize_corpus.json"
DIGESTS = DATA / "decode_normalize_digests.json"
COPIES = 3
TEXT_2KB = ("The quick brown fox jumps over the lazy dog. " * 46)[:2048]


def _unpack(value: Any) -> Any:
    """The corpus file stores long single-character runs as {"$runs": [[char, count], ...]}."""
    if isinstance(value, dict):
        if set(value) == {"$runs"}:
            return "".join(ch * n for ch, n in value["$runs"])
        return {k: _unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    return value


def _add_span(scope: Any, i: int, spec: dict[str, Any]) -> None:
    span: Span = scope.spans.add()
    span.trace_id = spec.get("trace_id", (0xABC + i).to_bytes(16, "big"))
    span.span_id = spec.get("span_id", (i + 1).to_bytes(8, "big"))
    span.parent_span_id = spec.get("parent_span_id", b"")
    span.name = spec.get("name", "span")
    span.kind = spec.get("kind", 1)
    span.start_time_unix_nano = spec.get("start", START)
    span.end_time_unix_nano = spec.get("end", END)
    span.trace_state = spec.get("trace_state", "")
    attrs = spec.get("attrs", {})
    span.attributes.extend(attrs if isinstance(attrs, list) else key_values(attrs))
    for name, offset, event_attrs in spec.get("events", ()):
        event = span.events.add()
        event.name = name
        event.time_unix_nano = START + offset if offset is not None else 0
        event.attributes.extend(key_values(event_attrs))
    for trace_id, span_id, state, link_attrs in spec.get("links", ()):
        link = span.links.add()
        link.trace_id, link.span_id, link.trace_state = trace_id, span_id, state
        link.attributes.extend(key_values(link_attrs))
    if "status" in spec:
        code, message = spec["status"]
        span.status.code = {"ok": Status.STATUS_CODE_OK, "error": Status.STATUS_CODE_ERROR, "unset": 0}.get(code, 7)
        span.status.message = message


def _request(spans: list[dict[str, Any]], resource: dict[str, Any] | None, copies: int = COPIES) -> bytes:
    req = ExportTraceServiceRequest()
    resource_spans = req.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values({"service.name": "svc", **(resource or {})}))
    scope = resource_spans.scope_spans.add()
    scope.scope.name, scope.scope.version = "scope", "1.0"
    for copy in range(copies):
        for i, spec in enumerate(spans):
            _add_span(scope, copy * len(spans) + i, spec)
    return req.SerializeToString()


# --- the cases ---------------------------------------------------------------------------------------------

_SPECIAL = ["", "null", "[]", "{}", "NaN", "inf", "-1", "0", "1.5", "1e400", "true", "LLM", "tool", "chat", "[[[", "x"]


def _mutations(rnd: random.Random, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    attrs = spec.get("attrs", {})
    keys = list(attrs)
    if not keys:
        return
    dropped = {k: v for k, v in attrs.items() if rnd.random() < 0.6}
    yield {**spec, "attrs": dropped}
    retyped = {}
    for k, v in attrs.items():
        if isinstance(v, int) and not isinstance(v, bool):
            retyped[k] = str(v) if rnd.random() < 0.5 else float(v)
        elif isinstance(v, str) and rnd.random() < 0.3:
            retyped[k] = rnd.choice(_SPECIAL)
        else:
            retyped[k] = v
    yield {**spec, "attrs": retyped}
    yield {
        **spec,
        "attrs": {
            **attrs,
            "tracehouse.user": "tu",
            "tracehouse.tenant": "tt",
            "tracehouse.feature": "tf",
            "metadata": '{"user_id": "mu", "session_id": 7, "feature": "mf", "tenant_id": "mt"}',
            "error.type": "Timeout",
        },
        "events": [
            ("First Token Stream Event", 120_000_000, {}),
            ("exception", 200_000_000, {"exception.type": "ValueError", "exception.message": "bad"}),
            ("gen_ai.content.prompt", 1, {"gen_ai.prompt": "hi"}),
        ],
        "status": ("error", "it failed"),
    }
    shuffled = list(attrs.items())
    rnd.shuffle(shuffled)
    yield {**spec, "attrs": dict(shuffled), "status": ("ok", "fine")}


def _bench_spans() -> list[dict[str, Any]]:
    openinference = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.provider": "openai",
        "llm.model_name": "gpt-4o-mini-2024-07-18",
        "llm.invocation_parameters": '{"temperature": 0.2, "max_tokens": 512}',
        "input.value": json.dumps({"messages": [{"role": "user", "content": TEXT_2KB}]}),
        "input.mime_type": "application/json",
        "output.value": TEXT_2KB[::-1],
        "output.mime_type": "text/plain",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": TEXT_2KB,
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": TEXT_2KB[::-1],
        "session.id": "session-1",
        "user.id": "user-7",
        "llm.token_count.prompt": 512,
        "llm.token_count.completion": 380,
        "llm.token_count.total": 892,
    }
    without_messages = {k: v for k, v in openinference.items() if "_messages." not in k}
    many = {"openinference.span.kind": "LLM", "llm.model_name": "m"}
    for i in range(300):
        many[f"llm.input_messages.{i}.message.role"] = "user" if i % 3 else "system"
        many[f"llm.input_messages.{i}.message.content"] = f"m{i}"
    return [
        {"attrs": openinference},
        {"attrs": without_messages},
        {"attrs": many},
        {"attrs": {**openinference, "app.request_1": "x"}},
        {"attrs": {"http.route": "/a/{id}", "http.response.status_code": 200, "server.port": 443}},
    ]


def _any_value_spans() -> list[dict[str, Any]]:
    nested = AnyValue()
    nested.kvlist_value.values.extend(
        [
            KeyValue(key="b", value=AnyValue(int_value=1)),
            KeyValue(key="a<&>", value=AnyValue(string_value='q"\\\n\t\x01\u2028<>&é')),
            KeyValue(key="b", value=AnyValue(bool_value=False)),
            KeyValue(key="n", value=AnyValue()),
        ]
    )
    array = AnyValue()
    array.array_value.values.extend(
        [AnyValue(double_value=1e21), AnyValue(double_value=-0.0), AnyValue(bytes_value=b"\x00\xff"), nested]
    )
    doubles = [0.1, 1.0, -2.5, 1e21, 1e20, 1e-6, 1e-7, 5e-324, 1.7976931348623157e308, math.nan, math.inf, -math.inf]
    attrs = [KeyValue(key=f"d{i}", value=AnyValue(double_value=d)) for i, d in enumerate(doubles)]
    attrs += [
        KeyValue(key="i", value=AnyValue(int_value=-(2**63))),
        KeyValue(key="imax", value=AnyValue(int_value=2**63 - 1)),
        KeyValue(key="zero", value=AnyValue(int_value=0)),
        KeyValue(key="t", value=AnyValue(bool_value=True)),
        KeyValue(key="f", value=AnyValue(bool_value=False)),
        KeyValue(key="bytes", value=AnyValue(bytes_value=b"\x00\x01binary")),
        KeyValue(key="empty_bytes", value=AnyValue(bytes_value=b"")),
        KeyValue(key="unset", value=AnyValue()),
        KeyValue(key="empty", value=AnyValue(string_value="")),
        KeyValue(key="array", value=array),
        KeyValue(key="empty_array", value=AnyValue(array_value={})),
        KeyValue(key="kvlist", value=nested),
        KeyValue(key="empty_kvlist", value=AnyValue(kvlist_value={})),
        KeyValue(key="dup", value=AnyValue(string_value="first")),
        KeyValue(key="dup", value=AnyValue(int_value=2)),
        KeyValue(key="", value=AnyValue(string_value="no key")),
        KeyValue(key="unicode ☃", value=AnyValue(string_value="日本語 \U0001f600")),
        KeyValue(key="llm.token_count.prompt", value=AnyValue(double_value=12.0)),
        KeyValue(key="openinference.span.kind", value=AnyValue(string_value="llm")),
        KeyValue(key="llm.input_messages.0.message.content", value=array),
        KeyValue(key="tag.tags", value=array),
    ]
    return [
        {"attrs": attrs},
        {"attrs": attrs[::-1], "kind": 9, "status": ("other", "odd code"), "trace_state": "a=b"},
        {
            "attrs": {"gen_ai.operation.name": "chat"},
            "events": [("e0", None, {"k": 1}), ("e1", 2**63, {}), ("gen_ai.choice", 5, {"message": '{"content":"x"}'})],
            "links": [(b"\x01" * 16, b"\x02" * 8, "s=1", {"l": True}), (b"", b"", "", {})],
            "parent_span_id": b"\x03" * 8,
        },
        {"attrs": {"a": "end before start"}, "end": START - 1},
        {"attrs": {"a": "no end"}, "end": 0},
    ]


def _rejected_spans() -> list[dict[str, Any]]:
    return [
        {"attrs": {"a": "1"}, "trace_id": b"\x01" * 15},
        {"attrs": {"a": "1"}, "trace_id": bytes(16)},
        {"attrs": {"a": "1"}, "span_id": b"\x01" * 7},
        {"attrs": {"a": "1"}, "span_id": bytes(8)},
        {"attrs": {"a": "1"}, "parent_span_id": b"\x01" * 3},
        {"attrs": {"a": "1"}, "start": 0},
        {"attrs": {"a": "1"}, "start": 2**63},
        {"attrs": {"llm.model_name": "kept"}, "name": "the good one"},
    ]


def _garbage_spans(rnd: random.Random, keys: list[str], rows: int) -> list[dict[str, Any]]:
    def value() -> Any:
        choice = rnd.randrange(8)
        if choice == 0:
            return rnd.choice(_SPECIAL)
        if choice == 1:
            return rnd.randint(-(2**62), 2**62)
        if choice == 2:
            return rnd.uniform(-1e6, 1e6)
        if choice == 3:
            return json.dumps([{"role": rnd.choice(["user", "system", "ai", "tool"]), "content": "c"}])
        if choice == 4:
            return json.dumps({"content": [{"type": rnd.choice(["text", "tool_call", "image"]), "text": "t"}]})
        if choice == 5:
            return rnd.choice([True, False, ("a", "b"), {"k": "v"}])
        return "".join(rnd.choice('ab {}[]":,0') for _ in range(rnd.randint(0, 30)))

    spans = []
    for _ in range(rows):
        attrs = {rnd.choice(keys): value() for _ in range(rnd.randint(0, 14))}
        events = [
            (rnd.choice(["exception", "First Token Stream Event", "gen_ai.user.message", "gen_ai.choice"]), 10, {})
            for _ in range(rnd.randint(0, 2))
        ]
        spans.append({"attrs": attrs, "events": events, "status": (rnd.choice(["ok", "error", "unset"]), "m")})
    return spans


def cases() -> dict[str, bytes]:
    """Case name -> the protobuf request body."""
    corpus = _unpack(json.loads(CORPUS.read_text()))
    rnd = random.Random(19)
    out: dict[str, bytes] = {}
    keys: set[str] = set()
    for index, recorded in enumerate(corpus):
        out[f"corpus-{index}"] = _request(recorded["spans"], recorded["resource"])
        for span_index, spec in enumerate(recorded["spans"]):
            keys.update(spec.get("attrs", {}))
            for variant, mutated in enumerate(_mutations(rnd, spec)):
                out[f"corpus-{index}-{span_index}-mutated-{variant}"] = _request([mutated], recorded["resource"])
    for index, spec in enumerate(_bench_spans()):
        out[f"bench-{index}"] = _request([spec], None)
    for index, spec in enumerate(_any_value_spans()):
        out[f"any-value-{index}"] = _request([spec], {"tracehouse.tenant": "rt", "n": 1.5})
    out["rejected"] = _request(_rejected_spans(), None, copies=1)
    out["empty"] = ExportTraceServiceRequest().SerializeToString()
    two = ExportTraceServiceRequest()
    for service in ("a", "b"):
        resource_spans = two.resource_spans.add()
        resource_spans.resource.attributes.extend(key_values({"service.name": service}))
        for scope_name in ("s1", "s2"):
            scope = resource_spans.scope_spans.add()
            scope.scope.name = scope_name
            _add_span(scope, len(two.resource_spans) * 7 + len(resource_spans.scope_spans), {"attrs": {"x": 1}})
    out["resources-and-scopes"] = two.SerializeToString()
    ordered_keys = sorted(keys)
    for index in range(40):
        out[f"garbage-{index}"] = _request(_garbage_spans(rnd, ordered_keys, 25), None, copies=1)
    return out


# --- the digest --------------------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode("utf-8", "surrogatepass")).hexdigest()[:24]


def digests(body: bytes) -> list[str]:
    """[decode's columns and outcome, every column after normalize]."""
    result = decode_request(parse_protobuf(body))
    columns = result.batch.columns
    decoded = _digest(([(name, columns[name]) for name in sorted(columns)], result.rejected, result.message))
    batch = normalize(result.batch)
    return [decoded, _digest([(name, batch.columns[name]) for name in sorted(batch.columns)])]


def test_decode_and_normalize_give_the_pinned_output():
    computed = {name: digests(body) for name, body in cases().items()}
    if os.environ.get("TRACEHOUSE_REPIN"):
        DIGESTS.write_text(json.dumps(computed, indent=1, sort_keys=True) + "\n")
        pytest.skip("re-pinned: review the diff of " + DIGESTS.name)
    pinned = json.loads(DIGESTS.read_text())
    assert sorted(computed) == sorted(pinned), "the cases changed: re-pin on the code before the change"
    changed = {name: (pinned[name], got) for name, got in computed.items() if got != pinned[name]}
    assert not changed, f"{len(changed)} case(s) give other columns: {sorted(changed)[:20]}"


def test_the_copies_of_a_span_get_the_same_columns():
    # The memos answer the first sighting of a key set and the later ones differently; the columns must not care.
    body = cases()["bench-0"]
    batch = normalize(decode_request(parse_protobuf(body)).batch)
    for name, column in batch.columns.items():
        if name not in ("TraceId", "SpanId"):
            assert column[0] == column[1] == column[2], name
