"""End to end: an OpenInference-instrumented OpenAI call against a local fake server, exported over
OTLP to a real `tracehouse serve`. The e-mail, card number and API key in the prompt must not be in
any stored column, attribute or event, in the data directory's bytes, or in the collector's log.

The same run with redaction turned off proves the checks can fail: there the values are found."""

from __future__ import annotations

import json
import random
import string
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from collector_process import sql_rows
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

openai = pytest.importorskip("openai")
OpenAIInstrumentor = pytest.importorskip("openinference.instrumentation.openai").OpenAIInstrumentor

EMAIL = "jane.roe.7731@example.org"
CARD = "4539 1488 0343 6467"
_rng = random.Random(5)
API_KEY = "sk-proj-" + "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(64))
VALUES = (EMAIL, CARD, API_KEY)


class _FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server API)
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        body = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1_714_567_890,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Noted: I will e-mail {EMAIL} about card {CARD}."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_openai():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def _send_llm_call(collector, base_url: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-redaction", "owner": EMAIL}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url)))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=base_url, api_key="not-a-real-key")
        tracer = provider.get_tracer("e2e")
        with tracer.start_as_current_span(f"support ticket from {EMAIL}") as span:
            span.set_attribute("ticket.note", f"customer pasted card {CARD}")
            span.add_event("customer.message", {"text": f"my key is {API_KEY}"})
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {"role": "system", "content": "You are a support assistant."},
                    {"role": "user", "content": f"I am {EMAIL}, card {CARD}, and my key is {API_KEY}. Help!"},
                ],
            )
    finally:
        instrumentor.uninstrument()
        provider.force_flush()
        provider.shutdown()


def _stored(data_dir: Path) -> tuple[list[dict], str]:
    rows = sql_rows(data_dir, "SELECT * FROM otel_traces WHERE ServiceName = 'e2e-redaction'")
    return rows, json.dumps(rows, ensure_ascii=False)


def _files_containing(root: Path, values: tuple[str, ...]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {value[:12]}..." for value in values if value.encode() in data]
    return found


def _run(start_collector, fake_openai, data_dir: Path, env: dict[str, str]) -> tuple[list[dict], str, object]:
    collector = start_collector(data_dir=data_dir, env=env)
    _send_llm_call(collector, fake_openai)
    assert collector.stop() == 0, collector.log()
    rows, dump = _stored(data_dir)
    return rows, dump, collector


def test_pii_in_an_instrumented_openai_call_never_reaches_disk(start_collector, fake_openai, tmp_path):
    # Control: with redaction off the same checks find every value, so they are able to fail.
    control_rows, control_dump, _ = _run(
        start_collector, fake_openai, tmp_path / "plain", {"TRACEHOUSE_REDACTION": "off"}
    )
    assert len(control_rows) == 2
    assert all(value in control_dump for value in VALUES)
    # ...and the byte scan of the data directory finds them too (spool segments, uncompressed parts).
    assert _files_containing(tmp_path / "plain", VALUES)

    rows, dump, collector = _run(start_collector, fake_openai, tmp_path / "redacted", {"TRACEHOUSE_REDACTION": "on"})
    assert len(rows) == 2
    for value in VALUES:
        assert value not in dump, f"{value[:12]}... is stored"
    assert _files_containing(tmp_path / "redacted", VALUES) == []
    log = collector.log()
    assert log and not [value for value in VALUES if value in log]

    llm = next(row for row in rows if row["SpanAttributes"].get("openinference.span.kind") == "LLM")
    parent = next(row for row in rows if row is not llm)
    assert "[EMAIL]" in llm["SpanAttributes"]["input.value"] and "[SECRET]" in llm["SpanAttributes"]["input.value"]
    assert "[CARD]" in llm["OutputMessages"]
    assert parent["SpanName"] == "support ticket from [EMAIL]"
    assert parent["Events.Attributes"] == [{"text": "my key is [SECRET]"}]
    assert parent["ResourceAttributes"]["owner"] == "[EMAIL]"
    counts = {key: int(n) for key, n in llm["RedactionCounts"].items()}
    assert counts["email"] >= 2 and counts["card"] >= 2 and counts["secret"] >= 1, counts
    assert int(llm["InputTokens"]) == 42 and int(llm["OutputTokens"]) == 12  # metadata untouched


def _post(collector, body: bytes) -> None:
    request = urllib.request.Request(
        collector.traces_url, data=body, headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _planted_run(start_collector, data_dir: Path, env: dict[str, str]) -> tuple[str, str, str]:
    """(every string of otel_traces, of llm_daily, the collector's log) after one planted request."""
    from test_redact_coverage import planted_request

    collector = start_collector(data_dir=data_dir, env=env)
    _post(collector, planted_request().SerializeToString())
    assert collector.stop() == 0, collector.log()
    traces = sql_rows(data_dir, "SELECT * FROM otel_traces")
    daily = sql_rows(data_dir, "SELECT * FROM llm_daily")
    assert len(traces) == 2 and daily, (traces, daily)
    return _text(traces), _text(daily), collector.log()


def _forms(needle: str) -> tuple[str, ...]:
    """The needle as text and as it looks inside a JSON-encoded row (the spool's format)."""
    return needle, json.dumps(needle)[1:-1]


def _text(value: object) -> str:
    """Every string in value (map keys included), as stored: no JSON escaping added."""
    if isinstance(value, dict):
        return "\n".join(f"{_text(k)}\n{_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    return str(value)


def test_a_secret_in_every_place_a_span_carries_text_never_reaches_disk(start_collector, tmp_path):
    """Attribute keys, event names, scope name and version, trace states, service.name, model names, prompt
    template name and version, error type, feature, tenant, tags, invocation parameters, link trace state, and
    the encoded forms (bytes values, URL and JSON escapes): none reaches a column, the rollup or a file."""
    from test_redact_coverage import EMAIL, KEY, NEEDLES

    plain_traces, plain_daily, _ = _planted_run(start_collector, tmp_path / "plain", {"TRACEHOUSE_REDACTION": "off"})
    # Control: without redaction every form is stored, the rollup keys carry it and the byte scan finds it.
    assert [needle for needle in NEEDLES if needle not in plain_traces] == []
    assert EMAIL in plain_daily and KEY in plain_daily
    assert [needle for needle in NEEDLES if not _files_containing(tmp_path / "plain", _forms(needle))] == []

    traces, daily, log = _planted_run(start_collector, tmp_path / "redacted", {"TRACEHOUSE_REDACTION": "on"})
    assert [needle[:12] for needle in NEEDLES if needle in traces] == []
    assert [needle[:12] for needle in NEEDLES if needle in daily] == []
    assert _files_containing(tmp_path / "redacted", tuple(f for needle in NEEDLES for f in _forms(needle))) == []
    assert [needle[:12] for needle in NEEDLES if needle in log] == []
    assert "billing [EMAIL]" in daily and "gpt-4o [SECRET]" in daily  # the rollup keys, redacted
    assert "[SECRET]" in traces and "[EMAIL]" in traces


def _filler(word: str, length: int) -> str:
    """`length` characters of text ending in a space, so that what follows starts a word."""
    return (f"{word} " * (length // (len(word) + 1) + 1))[-length:]


def test_a_secret_across_a_cut_leaves_no_piece_of_it(start_collector, tmp_path):
    """Normalization cuts long values (ids and features at 256 characters, error messages at 8 K, message
    texts at 128 K) before redaction, which runs last, sees them: a secret across the cut would keep its first
    characters, which no detector recognizes. Each value is redacted whole before it is cut."""
    card_start = CARD[:16]  # what a cut at the card's 16th character would leave: "4539 1488 0343 6"
    email_start = EMAIL[:-2]  # the e-mail without the end of its top-level domain
    aws_key = "AKIA" + "QWERTYUIOPASDF7Q"  # built here: no literal key-shaped string in the repository
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": _filler("model", 256 - 12) + aws_key,
        "llm.finish_reason": aws_key,  # not a reason: kept as sent (not lower-cased), so redaction sees it
        "user.id": _filler("user", 256 - 16) + CARD,
        "tracehouse.feature": _filler("feature", 256 - len(EMAIL) + 2) + EMAIL,
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": _filler("words", 131_072 - 16) + CARD + " and more",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": _filler("text", 131_072 - len(EMAIL) + 2) + EMAIL,
    }
    collector = start_collector(data_dir=tmp_path / "data")
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-redaction"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, timeout=30)))
    from opentelemetry.trace import Status, StatusCode

    for _ in range(2):  # the first span of a key set is mapped in full, the next ones on normalize's fast path
        with provider.get_tracer("test").start_as_current_span("cut", attributes=attributes) as span:
            span.set_status(Status(StatusCode.ERROR, _filler("error", 8_192 - 16) + CARD))
    provider.shutdown()
    assert collector.stop() == 0, collector.log()
    rows, dump = _stored(tmp_path / "data")
    assert len(rows) == 2
    assert card_start not in dump and email_start not in dump and aws_key[:8] not in dump
    for row in rows:
        assert row["UserId"] == _filler("user", 240) + "[CARD]"
        assert row["Feature"] == _filler("feature", 256 - len(EMAIL) + 2) + "[EMAIL]"
        assert row["ErrorMessage"] == _filler("error", 8_192 - 16) + "[CARD]"
        assert row["LlmRequestModel"] == row["LlmResponseModel"] == _filler("model", 244) + "[SECRET]"
        assert row["FinishReason"] == "[SECRET]"
        assert json.loads(row["InputMessages"])[0]["content"][0]["text"].endswith(" [CARD] and more")
        assert json.loads(row["OutputMessages"])[0]["content"][0]["text"].endswith(" [EMAIL]")
    assert _files_containing(tmp_path / "data", (*_forms(card_start), *_forms(email_start))) == []
