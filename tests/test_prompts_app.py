"""The app side of the prompt registry (issue 16): prompt files, rendering, tagging the next LLM call, and the
registry fetch with its fallback to the file.

Tagging runs the real OpenInference OpenAI instrumentor against the fake provider (tests/fake_openai.py) in a
subprocess (instrumentors patch the openai module globally): this file is also that app, run as
`python test_prompts_app.py app PROMPTS_DIR OPENAI_BASE_URL`; it prints the spans an SDK InMemorySpanExporter
kept, per scenario. The registry is a real HTTP server on 127.0.0.1 serving the collector's JSON shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tracehouse.instrumentation import prompts

FIXTURES = Path(__file__).parent / "data" / "prompts"
ANSWER_NAME = "answer"
QUESTION = "Where is my order #42?"
HTML_VALUE = '<b>&"'

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """A copy of tests/data/prompts the test may change."""
    target = tmp_path / "prompts"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the defaults: no configure(), no prompt or OTLP variables, no warning given yet."""
    for name in (
        prompts.PROMPTS_DIR_ENV,
        prompts.PROMPTS_ENDPOINT_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ):
        monkeypatch.delenv(name, raising=False)
    prompts.configure()
    prompts._warned.clear()
    yield
    prompts.configure()
    prompts._warned.clear()


def _write(directory: Path, filename: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_bytes(text.encode())
    return path


# ------------------------------------------------------------------------------------------ files, versions


def test_a_chat_prompt_file_loads_with_its_name_version_front_matter_and_messages(prompts_dir: Path) -> None:
    p = prompts.load(ANSWER_NAME, prompts_dir)
    raw = (prompts_dir / "answer.md").read_bytes()
    assert p.name == ANSWER_NAME
    assert p.version == hashlib.sha256(raw).hexdigest()[:12]
    assert p.version_number is None and p.path == prompts_dir / "answer.md"
    assert p.metadata["model"] == p.model == "gpt-4o-mini"
    assert p.parameters == {"temperature": 0.2, "max_tokens": 200}
    assert p.labels == ("support",)
    assert p.template == raw.decode().split("---\n", 2)[2]  # the body, front matter left out
    assert p.is_chat and [m.role for m in p.messages] == ["system", "user"]
    assert p.messages[1].template == "{{question}}" and p.messages[1].line == 17
    assert p.variables == {"shop", "policies", "question"} and p.required == p.variables


def test_a_chat_prompt_renders_to_messages_and_a_plain_one_to_text(prompts_dir: Path) -> None:
    messages = prompts.load(ANSWER_NAME, prompts_dir).render(
        shop="Acme", policies=["Refunds within 30 days", "No returns on food"], question=QUESTION, unused="extra"
    )
    assert messages == [
        {
            "role": "system",
            "content": "You are the support assistant of Acme. Answer in one short paragraph.\n"
            "- Refunds within 30 days\n- No returns on food",
        },
        {"role": "user", "content": QUESTION},
    ]
    summary = prompts.load("summary", prompts_dir)
    assert summary.name == "summary" and not summary.is_chat and summary.metadata == {}
    text = summary.render(sentences=2, audience="engineers", text="The build is green.")
    assert text == "Summarize the text below in 2 sentences for engineers.\n\nThe build is green."


def test_values_are_inserted_as_they_are_not_html_escaped(prompts_dir: Path) -> None:
    summary = prompts.load("summary", prompts_dir)
    assert (
        summary.render(sentences=1, audience=HTML_VALUE, text="x")
        == f"Summarize the text below in 1 sentences for {HTML_VALUE}.\n\nx"
    )
    _write(prompts_dir, "raw.md", "{{{a}}} {{&b}} {{c}}")
    assert prompts.load("raw", prompts_dir).render(a=HTML_VALUE, b=HTML_VALUE, c=HTML_VALUE) == " ".join(
        [HTML_VALUE] * 3
    )


def test_the_version_follows_the_content_not_the_line_endings_or_the_machine(prompts_dir: Path) -> None:
    path = prompts_dir / "answer.md"
    first = prompts.load(ANSWER_NAME, prompts_dir).version
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert prompts.load(ANSWER_NAME, prompts_dir).version == first
    path.write_text(path.read_text().replace("short paragraph", "short sentence"))
    changed = prompts.load(ANSWER_NAME, prompts_dir).version
    assert changed != first
    path.write_text(path.read_text().replace("in the shop's voice", "politely"))  # front matter only
    assert prompts.load(ANSWER_NAME, prompts_dir).version not in (first, changed)
    assert prompts.content_version("a\r\nb\rc\n") == prompts.content_version("\ufeffa\nb\nc\n")


def test_the_name_comes_from_front_matter_else_the_stem(prompts_dir: Path) -> None:
    _write(prompts_dir, "reply-v2.md", "---\nname: reply\n---\nHello {{who}}")
    assert prompts.load("reply", prompts_dir).render(who="you") == "Hello you"
    with pytest.raises(prompts.PromptNotFound, match=r"'reply-v2'.*no file in"):
        prompts.load("reply-v2", prompts_dir)


def test_the_directory_comes_from_the_argument_configure_the_variable_or_dot_prompts(
    prompts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    _write(other, "summary.md", "other {{x}}")
    monkeypatch.chdir(tmp_path)  # ./prompts is prompts_dir
    assert prompts.load("summary").source == str(Path("prompts") / "summary.md")
    monkeypatch.setenv(prompts.PROMPTS_DIR_ENV, str(other))
    assert prompts.load("summary").render(x=1) == "other 1"
    prompts.configure(directory=prompts_dir)
    assert prompts.load("summary").path == prompts_dir / "summary.md"
    assert prompts.load("summary", other).path == other / "summary.md"


# -------------------------------------------------------------------------------------------- bad input


def test_a_missing_variable_is_an_error_naming_it_and_the_file(prompts_dir: Path) -> None:
    p = prompts.load(ANSWER_NAME, prompts_dir)
    with pytest.raises(prompts.PromptVariableMissing) as caught:
        p.render(shop="Acme", policies=[])
    message = str(caught.value)
    assert "'question'" in message and str(prompts_dir / "answer.md") in message
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    assert caught.value.variables == ("question",)
    # A section's name counts; the names used inside it come from the section's items.
    with pytest.raises(prompts.PromptVariableMissing, match="'policies'"):
        p.render(shop="Acme", question=QUESTION)
    _write(prompts_dir, "items.md", "{{#items}}{{title}} {{/items}}{{^items}}none{{/items}}")
    items = prompts.load("items", prompts_dir)
    assert items.required == {"items"} and items.variables == {"items", "title"}
    assert items.render(items=[{"title": "a"}, {"title": "b"}]) == "a b"
    assert items.render(items=[]) == "none"


def test_a_template_that_does_not_parse_names_the_file_and_line(prompts_dir: Path) -> None:
    path = _write(prompts_dir, "broken.md", "---\nname: broken\n---\n<!-- system -->\nHi\n{{#open}} never closed\n")
    with pytest.raises(prompts.PromptError, match=r"broken\.md: line 6: template does not parse.*open"):
        prompts.load("broken", prompts_dir)
    path.write_text("line one\n{{#a}}x{{/b}}\n")
    with pytest.raises(prompts.PromptError, match=r"broken\.md: line \d+: template does not parse.*\"b\""):
        prompts.load("broken", prompts_dir)
    path.write_text("{{> header}}\nHi")
    with pytest.raises(prompts.PromptError, match=r"broken\.md: partials"):
        prompts.load("broken", prompts_dir)


def test_front_matter_that_is_not_yaml_names_the_file_and_line(prompts_dir: Path) -> None:
    path = _write(prompts_dir, "bad.md", "---\nname: bad\nlabels: [one, two\n---\nHello")
    with pytest.raises(prompts.PromptError, match=r"bad\.md: line \d: front matter is not YAML") as caught:
        prompts.load("bad", prompts_dir)
    assert caught.type is not prompts.PromptNotFound
    path.write_text("---\n- a list\n---\nHello")
    with pytest.raises(prompts.PromptError, match=r"bad\.md: line 2: front matter must be a YAML mapping"):
        prompts.load("bad", prompts_dir)
    path.write_text("---\nname: bad\nHello, never closed")
    with pytest.raises(prompts.PromptError, match=r"bad\.md: line 1: front matter .* never closed"):
        prompts.load("bad", prompts_dir)
    path.write_text("---\nname: bad\nparameters: 3\n---\nHello")
    with pytest.raises(prompts.PromptError, match=r"bad\.md: front matter 'parameters' must be a mapping"):
        prompts.load("bad", prompts_dir)


def test_two_files_claiming_one_name_is_an_error_naming_both(prompts_dir: Path) -> None:
    _write(prompts_dir, "answer-copy.md", "---\nname: answer\n---\nHi")
    with pytest.raises(prompts.PromptError, match="two files") as caught:
        prompts.load(ANSWER_NAME, prompts_dir)
    assert str(prompts_dir / "answer.md") in str(caught.value)
    assert str(prompts_dir / "answer-copy.md") in str(caught.value)
    with pytest.raises(prompts.PromptError, match="two files"):
        prompts.load_directory(prompts_dir)


def test_text_before_the_first_role_marker_and_non_utf8_files_are_errors(prompts_dir: Path) -> None:
    _write(prompts_dir, "stray.md", "Hello\n<!-- user -->\n{{q}}")
    with pytest.raises(prompts.PromptError, match=r"stray\.md: line 1: text before the first role marker"):
        prompts.load("stray", prompts_dir)
    (prompts_dir / "latin.md").write_bytes(b"ok\ncaf\xe9")
    with pytest.raises(prompts.PromptError, match=r"latin\.md: line 2: not UTF-8"):
        prompts.load("latin", prompts_dir)


def test_a_marker_must_be_alone_on_its_line_to_split_the_body(prompts_dir: Path) -> None:
    _write(prompts_dir, "inline.md", "Say <!-- user --> literally\n<!-- note: not a role -->")
    p = prompts.load("inline", prompts_dir)
    assert not p.is_chat and p.render() == "Say <!-- user --> literally\n<!-- note: not a role -->"


def test_load_directory_checks_every_file(prompts_dir: Path) -> None:
    loaded = prompts.load_directory(prompts_dir)
    assert sorted(loaded) == ["answer", "summary"]
    assert all(p.version == prompts.content_version(p.path.read_text()) for p in loaded.values() if p.path)


# --------------------------------------------------------------------------------------------- registry


class Registry:
    """A stand-in for the collector's GET /v1/prompts/NAME on 127.0.0.1: serves `answers[name]` (status, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                registry.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                name = self.path.split("?", 1)[0].removeprefix(prompts.PROMPTS_PATH)
                status, body = registry.answers.get(name, (404, {"error": f"no prompt {name}"}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    served = Registry()
    served.thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REGISTRY_TEMPLATE = "---\nname: answer\nmodel: gpt-4o\n---\n<!-- system -->\nBe brief.\n<!-- user -->\n{{question}}\n"


def _registry_answer(**changes: Any) -> dict[str, Any]:
    body = {
        "name": ANSWER_NAME,
        "version_number": 7,
        "version": prompts.content_version(REGISTRY_TEMPLATE),
        "template": REGISTRY_TEMPLATE,
        "metadata": {"name": ANSWER_NAME, "model": "gpt-4o"},
        "labels": ["production"],
    }
    body.update(changes)
    return body


def test_a_label_is_fetched_from_the_registry_with_the_otlp_headers(
    prompts_dir: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.answers[ANSWER_NAME] = (200, _registry_answer())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", registry.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=key%201")
    p = prompts.load(ANSWER_NAME, prompts_dir, label="production")
    assert (p.version_number, p.version, p.model, p.labels) == (
        7,
        _registry_answer()["version"],
        "gpt-4o",
        ("production",),
    )
    assert p.path is None and p.source.startswith("registry http://127.0.0.1:")
    assert p.render(question=QUESTION) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    ((path, headers),) = registry.requests
    assert path == "/v1/prompts/answer?label=production"
    assert headers["x-api-key"] == "key 1"
    # configure(endpoint=) and TRACEHOUSE_PROMPTS_ENDPOINT win over the OTLP endpoint.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv(prompts.PROMPTS_ENDPOINT_ENV, registry.url)
    assert prompts.load(ANSWER_NAME, prompts_dir, label="production").version_number == 7
    monkeypatch.setenv(prompts.PROMPTS_ENDPOINT_ENV, f"http://127.0.0.1:{_free_port()}")
    prompts.configure(endpoint=registry.url + "/", headers={"authorization": "Bearer t"})
    assert prompts.load(ANSWER_NAME, prompts_dir, label="production").version_number == 7
    assert registry.requests[-1][1]["authorization"] == "Bearer t"


def test_the_registry_endpoint_follows_the_otlp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert prompts.registry_base() == "http://127.0.0.1:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")  # gRPC: the HTTP port serves prompts
    assert prompts.registry_base() == "http://collector:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://otel.example.com/v1/traces")
    assert prompts.prompt_url("a b", "prod") == "https://otel.example.com/v1/prompts/a%20b?label=prod"


def test_an_unreachable_registry_falls_back_to_the_file_with_one_warning(
    prompts_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prompts.configure(endpoint=f"http://127.0.0.1:{_free_port()}")
    caplog.set_level(logging.WARNING, logger="tracehouse.instrumentation")
    local = prompts.load(ANSWER_NAME, prompts_dir)
    for _ in range(3):
        p = prompts.load(ANSWER_NAME, prompts_dir, label="production")
        assert (p.version, p.version_number, p.path) == (local.version, None, prompts_dir / "answer.md")
    (warning,) = [r.getMessage() for r in caplog.records if "not fetched" in r.getMessage()]
    assert "unreachable" in warning and "'production'" in warning and str(prompts_dir / "answer.md") in warning


@pytest.mark.parametrize(
    "answer",
    [
        (404, {"error": "no version of answer has label production"}),
        (401, {"error": "unknown API key"}),
        (500, b"oops"),
        (200, b"not json"),
        (200, {"name": ANSWER_NAME, "version_number": 1}),
        (200, {"name": ANSWER_NAME, "template": "{{#open}}"}),
    ],
    ids=["404", "401", "500", "not-json", "no-template", "template-does-not-parse"],
)
def test_a_registry_that_says_no_falls_back_to_the_file(
    prompts_dir: Path, registry: Registry, caplog: pytest.LogCaptureFixture, answer: tuple[int, Any]
) -> None:
    registry.answers[ANSWER_NAME] = answer
    prompts.configure(endpoint=registry.url)
    caplog.set_level(logging.WARNING, logger="tracehouse.instrumentation")
    p = prompts.load(ANSWER_NAME, prompts_dir, label="production")
    assert p.path == prompts_dir / "answer.md" and p.version_number is None
    assert any("not fetched" in r.getMessage() for r in caplog.records)


def test_no_file_and_no_registry_is_an_error_naming_both(tmp_path: Path, registry: Registry) -> None:
    prompts.configure(endpoint=registry.url)
    with pytest.raises(prompts.PromptNotFound) as caught:
        prompts.load("nowhere", tmp_path / "prompts", label="production")
    message = str(caught.value)
    assert "'nowhere'" in message and str(tmp_path / "prompts") in message
    assert f"{registry.url}/v1/prompts/nowhere?label=production answered 404" in message
    with pytest.raises(prompts.PromptNotFound, match="no prompts directory"):
        prompts.load("nowhere", tmp_path / "prompts")


# ------------------------------------------------------------------------------ tagging the next LLM call

APP_TIMEOUT = 90
POLICIES = ["Refunds within 30 days"]
SETUP_SERVICE = "prompts-setup-app"
CHANGED_SYSTEM_LINE = "You are the support assistant of {{shop}}. Answer in one sentence."


def _run_app(
    prompts_dir: Path, base_url: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "TRACEHOUSE_"))}
    proc = subprocess.run(
        [sys.executable, __file__, *args, str(prompts_dir), base_url],
        capture_output=True,
        text=True,
        timeout=APP_TIMEOUT,
        env={**clean, **(env or {})},
        cwd=cwd,
        check=False,
    )
    assert proc.returncode == 0, f"app failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def tagged_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The app's spans per scenario, the prompt files' versions before and after the app changed one, and the
    requests the fake provider got."""
    from fake_openai import FakeOpenAI

    directory = tmp_path_factory.mktemp("tagging") / "prompts"
    shutil.copytree(FIXTURES, directory)
    first = prompts.load(ANSWER_NAME, directory)
    with FakeOpenAI() as fake:
        spans = _run_app(directory, fake.base_url, "app")
        requests = [r.body for r in fake.requests]
    second = prompts.load(ANSWER_NAME, directory)  # the app changed the file
    return {"spans": spans, "first": first, "second": second, "requests": requests}


def _llm_spans(spans: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [s["attributes"] for s in spans if s["attributes"].get("openinference.span.kind") == "LLM"]


def _prompt_tags(attributes: dict[str, str]) -> dict[str, Any]:
    return {
        key: attributes.get(key)
        for key in (prompts.TEMPLATE_ATTRIBUTE, prompts.VERSION_ATTRIBUTE, prompts.NAME_ATTRIBUTE)
    }


def _expected_tags(p: prompts.Prompt) -> dict[str, Any]:
    return {
        prompts.TEMPLATE_ATTRIBUTE: p.template,
        prompts.VERSION_ATTRIBUTE: p.version,
        prompts.NAME_ATTRIBUTE: p.name,
    }


def test_render_then_call_tags_that_call_with_the_four_attributes(tagged_run: dict[str, Any]) -> None:
    first = tagged_run["first"]
    tagged_call, untagged_call = _llm_spans(tagged_run["spans"]["bare"])
    assert _prompt_tags(tagged_call) == _expected_tags(first)
    assert json.loads(tagged_call[prompts.VARIABLES_ATTRIBUTE]) == {
        "policies": POLICIES,
        "question": QUESTION,
        "shop": "Acme",
    }  # the extra variable the app passed is not one of the template's
    assert QUESTION in tagged_call["llm.input_messages.1.message.content"]
    # One render, one call: the next call made without rendering carries no prompt.
    assert all(value is None for value in _prompt_tags(untagged_call).values())
    assert prompts.VARIABLES_ATTRIBUTE not in untagged_call


def test_render_inside_a_span_tags_the_call_not_the_span(tagged_run: dict[str, Any]) -> None:
    spans = tagged_run["spans"]["in_span"]
    (call,) = _llm_spans(spans)
    assert _prompt_tags(call) == _expected_tags(tagged_run["first"])
    (handler,) = [s for s in spans if s["name"] == "handler"]
    assert prompts.VERSION_ATTRIBUTE not in handler["attributes"]
    (step,) = [s for s in spans if s["name"] == "retrieve"]  # a span that is not an LLM call keeps nothing
    assert prompts.VERSION_ATTRIBUTE not in step["attributes"]


def test_a_changed_file_is_a_new_version_and_two_renders_tag_two_calls(tagged_run: dict[str, Any]) -> None:
    first, second = tagged_run["first"], tagged_run["second"]
    assert second.version != first.version and CHANGED_SYSTEM_LINE in second.template
    old_call, new_call = _llm_spans(tagged_run["spans"]["sequence"])
    assert _prompt_tags(old_call) == _expected_tags(first)
    assert _prompt_tags(new_call) == _expected_tags(second)
    assert json.loads(old_call[prompts.VARIABLES_ATTRIBUTE])["question"] == "first"
    assert json.loads(new_call[prompts.VARIABLES_ATTRIBUTE])["question"] == "second"


def test_a_render_in_a_span_that_ended_tags_nothing(tagged_run: dict[str, Any]) -> None:
    (call,) = _llm_spans(tagged_run["spans"]["ended_span"])
    assert prompts.VERSION_ATTRIBUTE not in call


def test_concurrent_tasks_each_tag_their_own_call(tagged_run: dict[str, Any]) -> None:
    calls = _llm_spans(tagged_run["spans"]["tasks"])
    assert len(calls) == 2
    by_question = {json.loads(c[prompts.VARIABLES_ATTRIBUTE])["text"]: c[prompts.NAME_ATTRIBUTE] for c in calls}
    assert by_question == {"task one": "summary", "task two": "answer-short"}
    for call in calls:
        text = json.loads(call[prompts.VARIABLES_ATTRIBUTE])["text"]
        assert text in call["llm.input_messages.0.message.content"]


def test_the_provider_got_the_rendered_messages_unescaped(tagged_run: dict[str, Any]) -> None:
    (html_request,) = [r for r in tagged_run["requests"] if any(HTML_VALUE in m["content"] for m in r["messages"])]
    assert html_request["messages"][0]["content"].endswith(f"for {HTML_VALUE}.\n\nescaping")


def test_openllmetry_spans_carry_the_prompt_under_its_names_too(prompts_dir: Path) -> None:
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        (call,) = _run_app(prompts_dir, fake.base_url, "app-openllmetry")["openllmetry"]
    answer = prompts.load(ANSWER_NAME, prompts_dir)
    assert call["attributes"]["gen_ai.operation.name"] == "chat"
    assert _prompt_tags(call["attributes"]) == _expected_tags(answer)
    assert call["attributes"]["traceloop.prompt.version"] == answer.version
    assert call["attributes"]["traceloop.prompt.key"] == ANSWER_NAME
    assert call["attributes"]["traceloop.prompt.template"] == answer.template
    assert json.loads(call["attributes"]["traceloop.prompt.template_variables"])["question"] == QUESTION


def _app(prompts_dir: str, base_url: str) -> None:
    """The instrumented app: one scenario per key of the JSON it prints (the spans each one produced)."""
    import asyncio

    import openai
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # render() adds its PromptSpanProcessor to the global provider
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = trace.get_tracer("prompts-app")
    client = openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)
    results: dict[str, list[dict[str, Any]]] = {}

    def chat(messages: Any) -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    def done(scenario: str) -> None:
        results[scenario] = [
            {
                "name": s.name,
                "attributes": {k: v if isinstance(v, str) else json.dumps(v) for k, v in (s.attributes or {}).items()},
            }
            for s in exporter.get_finished_spans()
        ]
        exporter.clear()

    prompts.configure(directory=prompts_dir)
    answer = prompts.load(ANSWER_NAME)

    messages = answer.render(shop="Acme", policies=POLICIES, question=QUESTION, request_id="r-1")
    chat(messages)
    chat([{"role": "user", "content": "and now?"}])
    done("bare")

    with tracer.start_as_current_span("handler"):
        messages = answer.render(shop="Acme", policies=POLICIES, question=QUESTION)
        with tracer.start_as_current_span("retrieve"):
            pass
        chat(messages)
    done("in_span")

    path = Path(prompts_dir) / "answer.md"
    path.write_text(path.read_text().replace("Answer in one short paragraph.", "Answer in one sentence."))
    changed = prompts.load(ANSWER_NAME)
    chat(answer.render(shop="Acme", policies=POLICIES, question="first"))
    chat(changed.render(shop="Acme", policies=POLICIES, question="second"))
    done("sequence")

    with tracer.start_as_current_span("rendered-and-left"):
        messages = answer.render(shop="Acme", policies=POLICIES, question=QUESTION)
    chat(messages)
    done("ended_span")

    summary = prompts.load("summary")
    chat([{"role": "user", "content": summary.render(sentences=1, audience=HTML_VALUE, text="escaping")}])
    done("html")

    (Path(prompts_dir) / "short.md").write_text("---\nname: answer-short\n---\n<!-- user -->\nShort: {{text}}\n")
    short = prompts.load("answer-short")
    async_client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)

    async def task(p: prompts.Prompt, text: str, delay: float) -> None:
        rendered = p.render(sentences=1, audience="you", text=text)
        content = rendered if isinstance(rendered, str) else rendered[0]["content"]
        await asyncio.sleep(delay)  # both tasks have rendered before either calls
        await async_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])

    async def both() -> None:
        await asyncio.gather(task(summary, "task one", 0.2), task(short, "task two", 0.1))

    asyncio.run(both())
    done("tasks")
    print(json.dumps(results))


README = Path(__file__).parent.parent / "README.md"
FENCED = re.compile(r"^```\w*\n(.*?)^```", re.S | re.M)


def _readme_block(marker: str) -> str:
    """The fenced block between `<!-- marker -->` and `<!-- marker:end -->` in the README."""
    region = README.read_text().split(f"<!-- {marker} -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    found = FENCED.search(region)
    assert found, f"no code block between the {marker} markers"
    return found.group(1)


def test_the_readme_example_runs_and_tags_its_call(tmp_path: Path, registry: Registry) -> None:
    from fake_openai import FakeOpenAI

    file_text, code = _readme_block("prompts-file"), _readme_block("prompts-app")
    _write(tmp_path / "prompts", "answer.md", file_text)
    (tmp_path / "app.py").write_text(code)
    from_file = prompts.parse(file_text, "README", ANSWER_NAME)
    registered = REGISTRY_TEMPLATE.replace("{{question}}", "{{question}} ({{shop}}, {{#policies}}{{.}}{{/policies}})")
    registry.answers[ANSWER_NAME] = (
        200,
        _registry_answer(template=registered, version=prompts.content_version(registered)),
    )
    with FakeOpenAI() as fake:
        down = {prompts.PROMPTS_ENDPOINT_ENV: f"http://127.0.0.1:{_free_port()}"}
        fallback = _run_app(tmp_path, fake.base_url, "readme", cwd=tmp_path, env=down)
        fetched = _run_app(
            tmp_path, fake.base_url, "readme", cwd=tmp_path, env={prompts.PROMPTS_ENDPOINT_ENV: registry.url}
        )
        sent = [r.body for r in fake.requests]
    (call,) = _llm_spans(fallback["spans"])
    assert _prompt_tags(call) == _expected_tags(from_file)
    assert "not fetched" in fallback["stderr"] and "unreachable" in fallback["stderr"]
    assert sent[0]["temperature"] == 0.2 and sent[0]["max_tokens"] == 300 and sent[0]["model"] == "gpt-4o-mini"
    assert sent[0]["messages"][0]["content"].endswith("- Refunds within 30 days")
    (call,) = _llm_spans(fetched["spans"])
    assert call[prompts.VERSION_ATTRIBUTE] == prompts.content_version(registered)
    assert sent[1]["model"] == "gpt-4o" and sent[1]["messages"][1]["content"].startswith("Where is my order? (Acme, ")
    assert fallback["reply"] and fetched["reply"]


def test_the_collector_stores_each_call_with_its_prompt_version(
    tmp_path: Path, prompts_dir: Path, collector: Any
) -> None:
    """tracehouse's own setup() over OTLP/gRPC to a real collector: llm_calls has each call's prompt columns."""
    from collector_process import sql_rows
    from fake_openai import FakeOpenAI

    first = prompts.load(ANSWER_NAME, prompts_dir)
    with FakeOpenAI() as fake:
        out = _run_app(
            prompts_dir, fake.base_url, "app-setup", env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint}
        )
    second = prompts.load(ANSWER_NAME, prompts_dir)
    rows = sql_rows(
        collector.data_dir,
        "SELECT trace_id, prompt_name, prompt_version, prompt_template, prompt_variables FROM llm_calls "
        f"WHERE service = '{SETUP_SERVICE}' ORDER BY ts",
    )
    assert [row["trace_id"] for row in rows] == out["trace_ids"]
    assert [(row["prompt_name"], row["prompt_version"], row["prompt_template"]) for row in rows] == [
        (ANSWER_NAME, first.version, first.template),
        (ANSWER_NAME, second.version, second.template),
    ]
    assert json.loads(rows[1]["prompt_variables"])["question"] == "second"


def _setup_app(prompts_dir: str, base_url: str) -> None:
    """tracehouse's setup() (OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, the installed OpenInference instrumentors); one
    call per version of the prompt file, each in its own trace."""
    import openai
    from opentelemetry import trace

    from tracehouse.instrumentation import setup, shutdown

    setup(service_name=SETUP_SERVICE)
    client = openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)
    tracer = trace.get_tracer("prompts-app")
    trace_ids = []
    for question in ("first", "second"):
        if question == "second":
            path = Path(prompts_dir) / "answer.md"
            path.write_text(path.read_text().replace("Answer in one short paragraph.", "Answer in one sentence."))
        p = prompts.load(ANSWER_NAME, prompts_dir)
        with tracer.start_as_current_span("request") as span:
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
            client.chat.completions.create(
                model="gpt-4o-mini", messages=p.render(shop="Acme", policies=POLICIES, question=question)
            )
    shutdown()
    print(json.dumps({"trace_ids": trace_ids}))


def _readme_app(prompts_dir: str, base_url: str) -> None:
    """Runs the README's example (./app.py) with `client` defined, an in-memory provider and OpenInference."""
    import contextlib
    import io

    import openai
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    logs = io.StringIO()
    logging.basicConfig(stream=logs, level=logging.WARNING)
    namespace: dict[str, Any] = {"client": openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(Path("app.py").read_text(), "README example", "exec"), namespace)  # noqa: S102
    spans = [
        {"name": s.name, "attributes": {k: str(v) for k, v in (s.attributes or {}).items()}}
        for s in exporter.get_finished_spans()
    ]
    reply = namespace["reply"].choices[0].message.content
    print(json.dumps({"spans": spans, "reply": reply, "stderr": logs.getvalue()}))


def _openllmetry_app(prompts_dir: str, base_url: str) -> None:
    """OpenLLMetry's instrumentor instead: its GenAI spans get the prompt under its own names too."""
    import openai
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    prompts.install(provider)  # not the global provider: installed by hand
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)
    answer = prompts.load(ANSWER_NAME, prompts_dir)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=answer.render(shop="Acme", policies=POLICIES, question=QUESTION)
    )
    spans = [
        {"name": s.name, "attributes": {k: str(v) for k, v in (s.attributes or {}).items()}}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"openllmetry": spans}))


if __name__ == "__main__":
    {"app": _app, "app-openllmetry": _openllmetry_app, "readme": _readme_app, "app-setup": _setup_app}[sys.argv[1]](
        *sys.argv[2:4]
    )
