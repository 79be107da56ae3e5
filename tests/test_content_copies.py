"""`[content_copies] raw_messages = "drop"`: a prompt and its answer stored once, in the typed columns.

A collector started with TRACEHOUSE_RAW_MESSAGES=drop receives the real openai client's spans, instrumented by
OpenInference (OTLP/gRPC) and by OpenLLMetry (OTLP/HTTP) against the local fake provider, and spans the OTel
SDK sends over OTLP/HTTP whose typed form is not the whole of what they carry (a clipped text, inline media,
messages and parts past normalize's limits). What the store holds is read back through the collector's SQL
endpoint, and the Grafana trace view's own query (dashboards/queries.py trace_spans) is run on it.
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, sql_rows
from fake_openai import FakeOpenAI
from instrumented_openai_app import QUESTION, SYSTEM_PROMPT
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tracehouse.collector.columns import RAW_INPUT_MESSAGE_KEYS, RAW_OUTPUT_MESSAGE_KEYS
from tracehouse.collector.config import ConfigError, parse_config
from tracehouse.dashboards.queries import trace_spans

APP = Path(__file__).with_name("instrumented_openai_app.py")
INSTRUMENTATIONS = ("openinference", "openllmetry")
ANSWER = "Paris is the capital of France."

pytestmark = pytest.mark.timeout(240)


def _key_shaped(prefix: str, n: int) -> str:
    """A key-shaped string built at run time, so no literal credential sits in the repository."""
    rng = random.Random(7)
    return prefix + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(n - 2)) + "7Q"


AWS_KEY = _key_shaped("AKIA", 16)


def _flattened(side: str, messages: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, (role, content) in enumerate(messages):
        out[f"llm.{side}_messages.{n}.message.role"] = role
        out[f"llm.{side}_messages.{n}.message.content"] = content
    return out


def _llm_span(inputs: dict[str, str], answer: str = ANSWER) -> dict[str, Any]:
    """An OpenInference LLM span: the flattened messages, the request and response JSON, the parameters."""
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.provider": "openai",
        "llm.invocation_parameters": json.dumps({"temperature": 0.1}),
        "llm.token_count.prompt": 12,
        "llm.token_count.completion": 7,
        "input.value": json.dumps({"messages": "as the app sent them"}),
        "input.mime_type": "application/json",
        "output.value": json.dumps({"choices": [{"message": {"content": answer}}]}),
        "output.mime_type": "application/json",
        **inputs,
        **_flattened("output", [("assistant", answer)]),
    }


def _image_inputs() -> dict[str, str]:
    prefix = "llm.input_messages.0.message"
    return {
        f"{prefix}.role": "user",
        f"{prefix}.contents.0.message_content.type": "text",
        f"{prefix}.contents.0.message_content.text": "What is in this picture?",
        f"{prefix}.contents.1.message_content.type": "image",
        f"{prefix}.contents.1.message_content.image.image.url": "data:image/png;base64," + "iVBORw0KGgo" * 50,
    }


def _parts_inputs(count: int) -> dict[str, str]:
    prefix = "llm.input_messages.0.message"
    out = {f"{prefix}.role": "user"}
    for n in range(count):
        out[f"{prefix}.contents.{n}.message_content.type"] = "text"
        out[f"{prefix}.contents.{n}.message_content.text"] = f"part {n}"
    return out


def _genai_span(parts: int, messages: int = 1, tool_calls: int = 0, history: list | None = None) -> dict[str, Any]:
    """An OTel GenAI chat span: its messages as JSON, `messages` user messages of `parts` text parts, then (with
    `tool_calls`) an assistant turn with that many calls; or `history` as given."""
    texts = [{"type": "text", "content": f"part {m}.{n}"} for m in range(messages) for n in range(parts)]
    history = history or [{"role": "user", "parts": texts[m * parts : (m + 1) * parts]} for m in range(messages)]
    if tool_calls:
        calls = [{"type": "tool_call", "id": f"c{n}", "name": "find", "arguments": {"n": n}} for n in range(tool_calls)]
        history.append({"role": "assistant", "parts": calls})
    answer = {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": json.dumps(history),
        "gen_ai.output.messages": json.dumps([answer]),
    }


def _tool_result(n: int) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": f"c{n}", "response": f"result {n}"}


def _call(n: int) -> dict[str, Any]:
    return {"type": "tool_call", "id": f"c{n}", "name": "find", "arguments": {"n": n}}


def _texts(count: int) -> list[dict[str, str]]:
    return [{"type": "text", "content": f"text {n}"} for n in range(count)]


# span name -> its attributes, and whether its input / output side is dropped
SDK_SPANS: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "whole, with a secret": (
        _llm_span(_flattened("input", [("system", "Be brief."), ("user", f"my key is {AWS_KEY}, keep it")])),
        True,
        True,
    ),
    "a clipped text": (_llm_span(_flattened("input", [("user", "long " * 30_000)])), False, True),
    "past the message limit": (
        _llm_span(_flattened("input", [("user", f"message {n}") for n in range(300)])),
        False,
        True,
    ),
    "inline media": (_llm_span(_image_inputs()), False, True),
    "63 parts": (_llm_span(_parts_inputs(63)), True, True),
    "past the part limit": (_llm_span(_parts_inputs(70)), False, True),
    "GenAI, 3 parts": (_genai_span(3), True, True),
    "GenAI, 70 parts": (_genai_span(70), False, True),
    "GenAI, 40 parts in each of 3 messages": (_genai_span(40, messages=3), True, True),
    "GenAI, 64 tool calls": (_genai_span(1, tool_calls=64), True, True),
    "GenAI, 70 tool calls": (_genai_span(1, tool_calls=70), False, True),
    # Items of a part list are not parts one for one: tool results become messages, calls go apart, nulls vanish.
    "GenAI, 70 tool results": (
        _genai_span(0, history=[{"role": "tool", "parts": [_tool_result(n) for n in range(70)]}]),
        False,
        True,
    ),
    "GenAI, 10 calls and 60 texts": (
        _genai_span(0, history=[{"role": "assistant", "parts": [_call(n) for n in range(10)] + _texts(60)}]),
        False,
        True,
    ),
    "GenAI, 300 messages, most null": (
        _genai_span(0, history=[None] * 8 + [{"role": "user", "parts": _texts(1)}] * 44 + [None] * 248),
        False,
        True,
    ),
    "GenAI, a system message with an image": (
        _genai_span(
            0,
            history=[
                {"role": "system", "parts": _texts(1) + [{"type": "uri", "modality": "image", "uri": "s3://b/k.png"}]},
                {"role": "user", "parts": _texts(1)},
            ],
        ),
        False,
        True,
    ),
    "GenAI, a chat span with a tool's result": (
        {**_genai_span(1), "gen_ai.tool.name": "find", "gen_ai.tool.call.result": "42"},
        True,
        True,
    ),
    # A system message later in the conversation stays where it sat; only the opening ones go to SystemPrompt.
    "a system message mid-conversation": (
        _llm_span(
            _flattened(
                "input",
                [("system", "Be brief."), ("user", "hi"), ("system", "Reminder: cite sources."), ("user", "why?")],
            )
        ),
        True,
        True,
    ),
    "GenAI, a system message mid-conversation": (
        _genai_span(
            0,
            history=[  # gen_ai.system_instructions says "Be brief."
                {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
                {"role": "system", "parts": [{"type": "text", "content": "Reminder: cite sources."}]},
                {"role": "user", "parts": [{"type": "text", "content": "why?"}]},
            ],
        ),
        True,
        True,
    ),
    "two conventions": (
        {
            **_llm_span(_flattened("input", [("user", "hello")])),
            "gen_ai.input.messages": json.dumps([{"role": "user"}]),
        },
        False,
        True,
    ),
    "a retriever": (
        {
            "openinference.span.kind": "RETRIEVER",
            "input.value": "what is tracehouse?",
            "output.value": json.dumps({"documents": ["a pipeline"], "retriever": "bm25"}),
            "retrieval.documents.0.document.id": "d1",
            "retrieval.documents.0.document.content": "a pipeline",
        },
        False,
        False,
    ),
    "a chain": ({"openinference.span.kind": "CHAIN", "input.value": "plan", "output.value": "done"}, False, False),
}


def _send_sdk_spans(traces_url: str) -> str:
    """The SDK_SPANS in one trace over OTLP/HTTP; returns its trace id."""
    limits = SpanLimits(max_span_attributes=2_000)  # the SDK keeps 128 by default: 300 messages need more
    provider = TracerProvider(resource=Resource.create({"service.name": "svc-sdk"}), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=traces_url, timeout=30)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        for name, (attributes, _, _) in SDK_SPANS.items():
            with tracer.start_as_current_span(name, attributes=attributes):
                pass
    provider.shutdown()
    return trace_id


def _raw_keys(attributes: dict[str, str], globs: tuple[str, ...]) -> set[str]:
    return {key for key in attributes if any(fnmatchcase(key, glob) for glob in globs)}


def _tags(span: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


SPAN_COLUMNS = (
    "TraceId, SpanId, SpanName, ServiceName, LlmSpanKind, SpanAttributes, InputMessages, SystemPrompt,"
    " OutputMessages, ToolCalls"
)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    collector = CollectorProcess(
        tmp_path_factory.mktemp("content-copies") / "data", env={"TRACEHOUSE_RAW_MESSAGES": "drop"}
    ).start()
    try:
        with FakeOpenAI() as fake:
            endpoints = {"openinference": collector.grpc_endpoint, "openllmetry": collector.http_endpoint}
            apps = {}
            for name in INSTRUMENTATIONS:
                proc = subprocess.run(
                    [sys.executable, str(APP), name, endpoints[name], fake.base_url, f"svc-{name}"],
                    capture_output=True,
                    text=True,
                    timeout=180,
                )
                assert proc.returncode == 0, f"{name} app failed:\n{proc.stderr}"
                apps[name] = json.loads(proc.stdout)
        sdk_trace = _send_sdk_spans(collector.traces_url)
        spans = sql_rows(collector.data_dir, f"SELECT {SPAN_COLUMNS} FROM otel_traces ORDER BY Timestamp")
        calls = sql_rows(collector.data_dir, "SELECT * FROM llm_calls ORDER BY ts")
        (chat_trace,) = {s["trace_id"] for s in apps["openinference"]["scenarios"]["chat"]["spans"]}
        view = {trace: sql_rows(collector.data_dir, trace_spans(f"'{trace}'")) for trace in (sdk_trace, chat_trace)}
        return {
            "apps": apps,
            "spans": spans,
            "calls": calls,
            "sdk_trace": sdk_trace,
            "chat_trace": chat_trace,
            "view": view,
        }
    finally:
        collector.kill()


def _app_spans(stored: dict[str, Any], instrumentation: str, scenario: str) -> list[dict[str, Any]]:
    ids = {s["span_id"] for s in stored["apps"][instrumentation]["scenarios"][scenario]["spans"]}
    return [span for span in stored["spans"] if span["SpanId"] in ids]


def _app_attributes(stored: dict[str, Any], instrumentation: str, span_id: str) -> dict[str, str]:
    for scenario in stored["apps"][instrumentation]["scenarios"].values():
        for span in scenario["spans"]:
            if span["span_id"] == span_id:
                return span["attributes"]
    raise AssertionError(span_id)


@pytest.mark.parametrize("instrumentation", INSTRUMENTATIONS)
def test_an_instrumented_chat_call_is_stored_once_in_the_typed_columns(stored, instrumentation) -> None:
    (chat,) = [s for s in _app_spans(stored, instrumentation, "chat") if s["InputMessages"]]
    sent = _app_attributes(stored, instrumentation, chat["SpanId"])
    assert _raw_keys(sent, RAW_INPUT_MESSAGE_KEYS) and _raw_keys(sent, RAW_OUTPUT_MESSAGE_KEYS)  # the app sent them
    attributes = chat["SpanAttributes"]
    assert not _raw_keys(attributes, RAW_INPUT_MESSAGE_KEYS)
    assert not _raw_keys(attributes, RAW_OUTPUT_MESSAGE_KEYS)
    # every other attribute is stored as sent
    kept = {k: v for k, v in sent.items() if not _raw_keys({k: v}, RAW_INPUT_MESSAGE_KEYS + RAW_OUTPUT_MESSAGE_KEYS)}
    assert set(attributes) == set(kept)
    # and the typed columns hold the messages as they do with the raw copies kept (tests/test_instrumented_openai.py)
    answer = stored["apps"][instrumentation]["scenarios"]["chat"]["result"]["content"]
    assert json.loads(chat["InputMessages"]) == [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    assert chat["SystemPrompt"] == SYSTEM_PROMPT
    assert json.loads(chat["OutputMessages"]) == [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


@pytest.mark.parametrize("instrumentation", INSTRUMENTATIONS)
def test_every_llm_call_of_every_scenario_keeps_what_the_typed_columns_lack(stored, instrumentation) -> None:
    checked = 0
    for scenario in stored["apps"][instrumentation]["scenarios"]:
        for span in _app_spans(stored, instrumentation, scenario):
            sent = _app_attributes(stored, instrumentation, span["SpanId"])
            attributes = span["SpanAttributes"]
            for globs, typed in (
                (RAW_INPUT_MESSAGE_KEYS, span["InputMessages"]),
                (RAW_OUTPUT_MESSAGE_KEYS, span["OutputMessages"]),
            ):
                if typed:
                    assert not _raw_keys(attributes, globs), (scenario, span["SpanName"])
                    checked += 1
                else:  # nothing typed (a chain, a tool step, a failed call's answer): as sent
                    assert _raw_keys(attributes, globs) == _raw_keys(sent, globs), (scenario, span["SpanName"])
    assert checked >= 8


def test_a_side_whose_typed_form_is_not_whole_keeps_its_raw_attributes(stored) -> None:
    by_name = {span["SpanName"]: span for span in stored["spans"] if span["TraceId"] == stored["sdk_trace"]}
    for name, (sent, input_dropped, output_dropped) in SDK_SPANS.items():
        attributes = by_name[name]["SpanAttributes"]
        for globs, dropped in ((RAW_INPUT_MESSAGE_KEYS, input_dropped), (RAW_OUTPUT_MESSAGE_KEYS, output_dropped)):
            expected = set() if dropped else _raw_keys(sent, globs)
            assert _raw_keys(attributes, globs) == expected, name
        assert attributes.get("llm.invocation_parameters", "") == sent.get("llm.invocation_parameters", ""), name
    assert "…[" in by_name["a clipped text"]["InputMessages"]
    assert '"role":"truncated"' in by_name["past the message limit"]["InputMessages"]
    cut = json.loads(by_name["past the part limit"]["InputMessages"])[0]["content"]
    assert len(cut) == 64 and cut[-1] == {"type": "text", "text": "…[parts after the first 63 omitted]"}
    assert len(json.loads(by_name["63 parts"]["InputMessages"])[0]["content"]) == 63
    assert "…[" not in by_name["GenAI, 40 parts in each of 3 messages"]["InputMessages"]  # 120 parts, none cut
    assert len(json.loads(by_name["GenAI, 40 parts in each of 3 messages"]["InputMessages"])[-1]["content"]) == 40
    for name in ("GenAI, 70 tool results", "GenAI, 10 calls and 60 texts"):
        assert "…[the source's items after the first 65 omitted]" in by_name[name]["InputMessages"], name
    assert (
        "non-text part(s) of the system message omitted]"
        in by_name["GenAI, a system message with an image"]["SystemPrompt"]
    )
    for name in ("a system message mid-conversation", "GenAI, a system message mid-conversation"):
        span = by_name[name]
        assert span["SystemPrompt"] == "Be brief.", name
        conversation = [(m["role"], m["content"][0]["text"]) for m in json.loads(span["InputMessages"])]
        assert conversation == [("user", "hi"), ("system", "Reminder: cite sources."), ("user", "why?")], name
    assert ANSWER in by_name["GenAI, a chat span with a tool's result"]["OutputMessages"]  # the answer, not "42"
    assert "a pipeline" in by_name["a retriever"]["OutputMessages"]  # typed documents, and output.value kept
    whole = json.loads(by_name["GenAI, 64 tool calls"]["InputMessages"])[-1]
    assert len(whole["tool_calls"]) == 64 and "…[" not in json.dumps(whole, ensure_ascii=False)
    cut = json.loads(by_name["GenAI, 70 tool calls"]["InputMessages"])[-1]
    assert len(cut["tool_calls"]) == 64
    assert cut["content"][-1]["text"].endswith("tool calls after the first 64 omitted]")


def test_the_one_copy_left_is_redacted(stored) -> None:
    (span,) = [s for s in stored["spans"] if s["SpanName"] == "whole, with a secret"]
    assert AWS_KEY not in json.dumps(span)
    assert "keep it" in span["InputMessages"] and "my key is" in span["InputMessages"]
    assert span["SystemPrompt"] == "Be brief."


def test_the_trace_view_shows_the_typed_messages_where_the_raw_ones_were_left_out(stored) -> None:
    view = {span["operationName"]: _tags(span) for span in stored["view"][stored["sdk_trace"]]}
    whole = view["whole, with a secret"]
    assert json.loads(whole["llm.output_messages"]) == [
        {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]}
    ]
    assert whole["llm.system_prompt"] == "Be brief." and "my key is" in whole["llm.input_messages"]
    assert "input.value" not in whole and "output.value" not in whole
    clipped = view["a clipped text"]  # its input kept raw: shown as sent, not twice
    assert "llm.input_messages" not in clipped and "llm.input_messages.0.message.content" in clipped
    assert "llm.output_messages" in clipped
    assert "llm.input_messages" not in view["a chain"] and view["a chain"]["input.value"] == "plan"
    (chat,) = [tags for tags in map(_tags, stored["view"][stored["chat_trace"]]) if "llm.input_messages" in tags]
    assert json.loads(chat["llm.input_messages"])[0]["content"][0]["text"] == QUESTION


def test_llm_calls_read_the_same_messages(stored) -> None:
    (row,) = [r for r in stored["calls"] if r["trace_id"] == stored["sdk_trace"] and "my key is" in r["messages"]]
    assert row["system_prompt"] == "Be brief." and ANSWER in row["response"]


def test_the_setting_is_checked() -> None:
    assert parse_config({}, environ={}).content_copies.raw_messages == "keep"
    assert parse_config({"content_copies": {"raw_messages": "drop"}}, environ={}).content_copies.drops_raw
    assert parse_config({}, environ={"TRACEHOUSE_RAW_MESSAGES": "drop"}).content_copies.drops_raw
    with pytest.raises(ConfigError, match='raw_messages must be "keep" or "drop", got \'once\''):
        parse_config({"content_copies": {"raw_messages": "once"}}, environ={})
    with pytest.raises(ConfigError, match="did you mean 'raw_messages'"):
        parse_config({"content_copies": {"raw_message": "drop"}}, environ={})
