"""Batch jobs, app side (issue 18): `tracehouse.instrumentation.batch` with the official openai and anthropic
SDKs against a local fake of both batch APIs (tests/fake_batch_provider.py), exporting over OTLP/gRPC to a real
collector; SQL over llm_calls and otel_traces checks what landed.

The OpenAI batch is submitted here and collected in other processes (this file run as
`python test_batch_app.py collect PROVIDER FAKE_URL BATCH_ID`, with tracehouse's setup()), twice: the second
collect emits nothing. An OpenAI batch of the Responses API (`endpoint="/v1/responses"`) is collected in
another process the same way. The Anthropic batch is submitted and collected here. The README's "Batch jobs"
example and its SQL run as written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained
from fake_batch_provider import (
    ANTHROPIC_RESPONSE_MODEL,
    CANCELED,
    ERROR,
    EXPIRED,
    INCOMPLETE,
    OPENAI_RESPONSE_MODEL,
    PROVIDER_ERROR,
    RESPONSES_MODEL,
    FakeBatchProvider,
    answer_text,
    reasoning_summary,
    usage_for,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracehouse.instrumentation import attributes as names
from tracehouse.instrumentation import batch, prompts

pytestmark = pytest.mark.timeout(180)

PROMPTS = Path(__file__).parent / "data" / "prompts"
README = Path(__file__).parent.parent / "README.md"
FENCED = re.compile(r"^```\w*\n(.*?)^```", re.S | re.M)

OPENAI_IDS = ("r-ok", "r-tool", "r-fail", "r-error", "r-expired")
ANTHROPIC_IDS = ("a-ok", "a-tool", "a-error", "a-canceled")
OUTCOMES = {"r-error": ERROR, "r-expired": EXPIRED, "a-error": ERROR, "a-canceled": CANCELED}
HANDLER_FAILS, HANDLER_ERROR = "r-fail", "ticket r-fail has no record"
PURPOSE, ANTHROPIC_PURPOSE = "nightly-summaries", "claude-summaries"
SUBMITTER, WORKER = "batch-submitter", "batch-worker"
LOOKUP_TOOL = {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}
ANTHROPIC_TOOL = {"name": "lookup_order", "description": "Find an order", "input_schema": {"type": "object"}}


def _question(custom_id: str) -> str:
    return f"Summarize ticket {custom_id}: the parcel never arrived."


@dataclass
class Run:
    collector: CollectorProcess
    fake: FakeBatchProvider
    state_dir: Path
    openai: batch.Submitted
    anthropic: batch.Submitted
    enqueued: dict[str, str]  # custom id -> enqueuing trace id
    enqueue_spans: dict[str, str]  # custom id -> enqueuing span id
    pending: batch.CollectSummary
    pending_spans: int
    first: dict[str, Any]  # the collect process's output
    second: batch.CollectSummary
    second_spans: int
    anthropic_summary: batch.CollectSummary
    anthropic_handled: list[str]
    prompt_version: str
    calls: list[dict[str, Any]]  # llm_calls rows of both batches
    spans: list[dict[str, Any]]  # otel_traces rows of every batch span

    def call(self, custom_id: str) -> dict[str, Any]:
        (row,) = [r for r in self.calls if r["batch_custom_id"] == custom_id]
        return row

    def span(self, span_id: str) -> dict[str, Any]:
        (row,) = [s for s in self.spans if s["SpanId"] == span_id]
        return row


def _provider(endpoint: str, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=30)))
    return provider


def _collect_process(run_env: dict[str, str], provider: str, base_url: str, batch_id: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "collect", provider, base_url, batch_id],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **run_env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _summary_json(summary: batch.CollectSummary) -> dict[str, Any]:
    return {
        "status": summary.status,
        "pending": summary.pending,
        "counts": summary.counts,
        "outcomes": summary.outcomes,
        "already_collected": summary.already_collected,
        "emitted": summary.emitted,
    }


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector for the module: the batches of `run`, then the README's."""
    process = CollectorProcess(tmp_path_factory.mktemp("batch-collector") / "data").start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, collector: CollectorProcess) -> Run:
    import anthropic
    import openai

    state_dir = tmp_path_factory.mktemp("batch") / "state"
    previous_state_dir = os.environ.get(batch.STATE_DIR_ENV)
    os.environ[batch.STATE_DIR_ENV] = str(state_dir)
    try:
        with FakeBatchProvider() as fake:
            fake.outcomes.update(OUTCOMES)
            provider = _provider(collector.grpc_endpoint, SUBMITTER)
            tracer = provider.get_tracer("batch-test")
            answer = prompts.load("answer", PROMPTS)
            enqueued, enqueue_spans, requests = {}, {}, []
            for custom_id in OPENAI_IDS:
                with tracer.start_as_current_span(f"enqueue {custom_id}") as span:
                    enqueued[custom_id] = format(span.get_span_context().trace_id, "032x")
                    enqueue_spans[custom_id] = format(span.get_span_context().span_id, "016x")
                    if custom_id == "r-ok":  # from the prompt registry's file: its version rides along
                        messages = answer.render(shop="Acme", policies=["Refunds"], question=_question(custom_id))
                    else:
                        messages = [{"role": "user", "content": _question(custom_id)}]
                    extra = {"tools": [LOOKUP_TOOL]} if custom_id == "r-tool" else {}
                    requests.append(batch.request(custom_id, model="gpt-4o-mini", messages=messages, **extra))
            openai_client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
            fake.hold = True
            submitted = batch.submit(
                openai_client, requests, purpose=PURPOSE, metadata={"team": "support"}, tracer_provider=provider
            )
            # Still running at the provider: a summary saying so, and no span.
            memory = InMemorySpanExporter()
            in_memory = TracerProvider()
            in_memory.add_span_processor(SimpleSpanProcessor(memory))
            pending = batch.collect(openai_client, submitted.batch_id, lambda r: None, tracer_provider=in_memory)
            pending_spans = len(memory.get_finished_spans())
            fake.hold = False
            worker_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, batch.STATE_DIR_ENV: str(state_dir)}
            first = _collect_process(worker_env, "openai", fake.openai_base_url, submitted.batch_id)
            # Collected again (here: the submitting process, where the requests' bodies are known too).
            second = batch.collect(openai_client, submitted.batch_id, _refuse, tracer_provider=in_memory)
            second_spans = len(memory.get_finished_spans())

            anthropic_client = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake", max_retries=0)
            claude_requests = [
                batch.request(
                    custom_id,
                    model="claude-sonnet-4-5",
                    max_tokens=300,
                    system="You summarize support tickets.",
                    messages=[{"role": "user", "content": _question(custom_id)}],
                    **({"tools": [ANTHROPIC_TOOL]} if custom_id == "a-tool" else {}),
                )
                for custom_id in ANTHROPIC_IDS
            ]
            claude = batch.submit(
                anthropic_client, claude_requests, purpose=ANTHROPIC_PURPOSE, tracer_provider=provider
            )
            handled: list[str] = []
            anthropic_summary = batch.collect(
                anthropic_client, claude.batch_id, lambda r: handled.append(r.text), tracer_provider=provider
            )
            provider.shutdown()
        calls = sql_rows(
            collector.data_dir, "SELECT * FROM llm_calls WHERE batch_id != '' ORDER BY batch_id, batch_custom_id"
        )
        spans = sql_rows(
            collector.data_dir,
            "SELECT TraceId, SpanId, ParentSpanId, SpanName, ServiceName, StatusCode, StatusMessage, SpanAttributes,"
            " Links.TraceId AS link_traces, Links.SpanId AS link_spans, Links.Attributes AS link_attributes,"
            " Events.Name AS event_names, Events.Attributes AS event_attributes FROM otel_traces",
        )
        return Run(
            collector,
            fake,
            state_dir,
            submitted,
            claude,
            enqueued,
            enqueue_spans,
            pending,
            pending_spans,
            first,
            second,
            second_spans,
            anthropic_summary,
            handled,
            answer.version,
            calls,
            spans,
        )
    finally:
        if previous_state_dir is None:
            os.environ.pop(batch.STATE_DIR_ENV, None)
        else:
            os.environ[batch.STATE_DIR_ENV] = previous_state_dir


def _refuse(result: batch.BatchResult) -> None:
    raise AssertionError(f"{result.custom_id} handled twice")


def _json(value: Any) -> Any:
    """A JSON column as sql_rows returns it: text, or already parsed."""
    return json.loads(value) if isinstance(value, str) else value


def _batch_cost(model: str, provider: str, ts: str, batch_rates: bool, usage: dict[str, int]) -> Decimal:
    from genai_prices import Usage, calc_price

    when = datetime.fromisoformat(ts.replace(" ", "T")).replace(tzinfo=UTC)
    return calc_price(
        Usage(**usage),
        model,
        provider_id=provider,
        genai_request_timestamp=when,
        price_context={"processing": "batch"} if batch_rates else None,
    ).total_price


def _close(stored: Any, expected: Decimal) -> bool:
    return abs(Decimal(str(stored)) - expected) < Decimal("1e-12")


# ------------------------------------------------------------------------------------------- what was emitted


def test_a_batch_still_running_says_so_and_emits_nothing(run: Run) -> None:
    assert run.pending.pending == len(OPENAI_IDS) and not run.pending.ended
    assert run.pending.status == "in_progress" and run.pending.emitted == 0 and run.pending_spans == 0


def test_each_request_is_one_llm_span_with_its_outcome(run: Run) -> None:
    first = run.first["summary"]
    assert first["outcomes"] == {
        "r-ok": "handled",
        "r-tool": "handled",
        "r-fail": "handler_failed",
        "r-error": "provider_failed",
        "r-expired": "expired",
    }
    assert first["counts"] == {"handled": 2, "handler_failed": 1, "provider_failed": 1, "expired": 1, "canceled": 0}
    assert sorted(run.first["handled"]) == ["r-ok", "r-tool"]
    openai_calls = [r for r in run.calls if r["batch_id"] == run.openai.batch_id]
    assert sorted(r["batch_custom_id"] for r in openai_calls) == sorted(OPENAI_IDS)
    assert {r["batch_custom_id"]: r["batch_outcome"] for r in openai_calls} == first["outcomes"]
    for row in openai_calls:
        assert row["service"] == WORKER and row["batch_purpose"] == PURPOSE and row["provider"] == "openai"
        assert row["span_name"] == "ChatCompletion" and row["request_model"] == "gpt-4o-mini"
        assert (row["status"] == "Ok") == (row["batch_outcome"] == "handled")
        submitted_at = datetime.fromisoformat(row["batch_submitted_at"].replace(" ", "T")).timestamp()
        assert abs(submitted_at - run.openai.submitted_at) < 0.002


def test_the_second_collect_emits_nothing_and_says_so(run: Run) -> None:
    second = run.second
    assert second.emitted == 0 and second.outcomes == {} and run.second_spans == 0
    assert second.already_collected == len(OPENAI_IDS) and second.status == "expired" and second.ended
    worker_spans = [s for s in run.spans if s["ServiceName"] == WORKER]
    request_spans = [s for s in worker_spans if s["SpanAttributes"].get(names.BATCH_OPERATION) == "request"
                     and s["SpanAttributes"][names.BATCH_ID] == run.openai.batch_id]  # fmt: skip
    assert len(request_spans) == len(OPENAI_IDS)  # not twice


def test_succeeded_requests_carry_the_live_calls_attributes_tokens_and_batch_cost(run: Run) -> None:
    for index, custom_id in enumerate(OPENAI_IDS):
        if custom_id in OUTCOMES:
            continue
        row, usage = run.call(custom_id), usage_for("openai", index)
        assert (row["response_model"], row["model"]) == (OPENAI_RESPONSE_MODEL, "gpt-4o-mini")
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["total_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"],
            usage["total_tokens"],
        )
        tokens = {
            "input_tokens": usage["prompt_tokens"],
            "cache_read_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "output_tokens": usage["completion_tokens"],
        }
        batch_cost = _batch_cost(OPENAI_RESPONSE_MODEL, "openai", row["ts"], True, tokens)
        live_cost = _batch_cost(OPENAI_RESPONSE_MODEL, "openai", row["ts"], False, tokens)
        assert batch_cost < live_cost
        assert row["price_variant"] == "batch" and row["cost_source"] == "catalogue"
        assert _close(row["cost_usd"], batch_cost) and _close(row["standard_cost_usd"], live_cost)
        assert row["standard_cost_usd"] > row["cost_usd"]
        messages = _json(row["messages"])
        assert messages[-1] == {"role": "user", "content": [{"type": "text", "text": _question(custom_id)}]}
    ok = run.call("r-ok")
    assert _json(ok["response"]) == [{"role": "assistant", "content": [{"type": "text", "text": answer_text("r-ok")}]}]
    assert ok["system_prompt"].startswith("You are the support assistant of Acme.")
    assert (ok["prompt_name"], ok["prompt_version"]) == ("answer", run.prompt_version)
    assert ok["finish_reason"] == "stop" and ok["temperature"] is None
    tool = run.call("r-tool")
    (call,) = _json(tool["tool_calls"])
    assert call["name"] == "lookup_order" and _json(call["arguments"]) == {"ticket": "r-tool"}
    assert [t["name"] for t in _json(tool["tools"])] == ["lookup_order"]
    assert tool["finish_reason"] == "tool_call"  # normalized


def test_a_failing_handler_is_an_error_with_its_exception(run: Run) -> None:
    row = run.call("r-fail")
    assert row["batch_outcome"] == "handler_failed" and row["status"] == "Error"
    assert row["error_type"] == "ValueError" and HANDLER_ERROR in row["error"]
    assert row["prompt_tokens"] == usage_for("openai", OPENAI_IDS.index("r-fail"))["prompt_tokens"]
    (handler,) = [s for s in run.spans if s["ParentSpanId"] == row["id"]]
    assert handler["SpanName"] == "batch handle" and handler["StatusCode"] == "Error"
    assert handler["SpanAttributes"][names.BATCH_OPERATION] == "handle"
    assert handler["SpanAttributes"][names.BATCH_OUTCOME] == "handler_failed"
    exception = handler["event_attributes"][handler["event_names"].index("exception")]
    assert exception["exception.type"] == "ValueError" and exception["exception.message"] == HANDLER_ERROR
    assert "raise ValueError" in exception["exception.stacktrace"]
    # A handled request's handler span is Ok.
    (handled,) = [s for s in run.spans if s["ParentSpanId"] == run.call("r-ok")["id"]]
    assert handled["StatusCode"] == "Ok" and handled["SpanAttributes"][names.BATCH_OUTCOME] == "handled"


def test_provider_failures_and_expired_requests_get_spans_with_their_state(run: Run) -> None:
    error = run.call("r-error")
    assert (error["batch_outcome"], error["status"], error["error_type"]) == (
        "provider_failed",
        "Error",
        "invalid_request_error",
    )
    assert PROVIDER_ERROR in error["error"] and error["prompt_tokens"] is None
    expired = run.call("r-expired")
    assert (expired["batch_outcome"], expired["status"]) == ("expired", "Error") and "expired" in expired["error"]
    assert run.span(expired["id"])["SpanAttributes"][names.BATCH_REQUEST_STATE] == "expired"
    assert expired["model"] == "gpt-4o-mini"  # from the state: the provider returned nothing for it
    for row in (error, expired):
        assert not any(s["ParentSpanId"] == row["id"] for s in run.spans)  # no handler ran


def test_the_submission_span_links_every_enqueuing_trace(run: Run) -> None:
    (submission,) = [s for s in run.spans if s["SpanAttributes"].get(names.BATCH_OPERATION) == "submit"
                     and s["SpanAttributes"][names.BATCH_ID] == run.openai.batch_id]  # fmt: skip
    attributes = submission["SpanAttributes"]
    assert submission["SpanId"] == run.openai.span_id and submission["ServiceName"] == SUBMITTER
    assert (attributes[names.BATCH_PROVIDER], attributes[names.BATCH_PURPOSE]) == ("openai", PURPOSE)
    assert attributes[names.BATCH_REQUEST_COUNT] == str(len(OPENAI_IDS))
    assert json.loads(attributes[names.BATCH_MODELS]) == ["gpt-4o-mini"]
    assert json.loads(attributes["metadata"]) == {"team": "support"}
    linked = {
        a[names.BATCH_CUSTOM_ID]: t
        for t, a in zip(submission["link_traces"], submission["link_attributes"], strict=True)
    }
    assert linked == run.enqueued
    prompt_link = submission["link_attributes"][list(linked).index("r-ok")]
    assert prompt_link["llm.prompt_template.version"] == run.prompt_version
    # The enqueuing spans themselves are stored: one click from the batch to them.
    stored = {s["SpanId"] for s in run.spans}
    assert set(run.enqueue_spans.values()) <= stored


def test_each_request_span_links_its_enqueuing_span_and_the_submission(run: Run) -> None:
    for custom_id in OPENAI_IDS:
        span = run.span(run.call(custom_id)["id"])
        links = set(zip(span["link_traces"], span["link_spans"], strict=True))
        assert links == {
            (run.enqueued[custom_id], run.enqueue_spans[custom_id]),
            (run.openai.trace_id, run.openai.span_id),
        }
        # Its own trace, not the enqueuing one's (that request ended long ago).
        assert span["TraceId"] not in run.enqueued.values()


def test_anthropic_batches_the_same_way_with_cache_writes_and_provider_states(run: Run) -> None:
    summary = run.anthropic_summary
    assert summary.outcomes == {"a-ok": "handled", "a-tool": "handled", "a-error": "provider_failed",
                                "a-canceled": "canceled"}  # fmt: skip
    assert run.anthropic_handled == [answer_text("a-ok"), answer_text("a-tool")]
    for index, custom_id in enumerate(("a-ok", "a-tool")):
        row, usage = run.call(custom_id), usage_for("anthropic", index)
        prompt = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
        assert (row["provider"], row["response_model"], row["span_name"]) == (
            "anthropic",
            ANTHROPIC_RESPONSE_MODEL,
            "Messages",
        )
        assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"], row["completion_tokens"]) == (
            prompt,
            usage["cache_read_input_tokens"],
            usage["cache_creation_input_tokens"],
            usage["output_tokens"],
        )
        tokens = {
            "input_tokens": prompt,
            "cache_read_tokens": usage["cache_read_input_tokens"],
            "cache_write_tokens": usage["cache_creation_input_tokens"],
            "output_tokens": usage["output_tokens"],
        }
        assert row["price_variant"] == "batch"
        assert _close(row["cost_usd"], _batch_cost(ANTHROPIC_RESPONSE_MODEL, "anthropic", row["ts"], True, tokens))
        assert row["standard_cost_usd"] > row["cost_usd"] and row["batch_purpose"] == ANTHROPIC_PURPOSE
        assert row["system_prompt"] == "You summarize support tickets."
    (call,) = _json(run.call("a-tool")["tool_calls"])
    assert call["name"] == "lookup_order" and _json(call["arguments"]) == {"ticket": "a-tool"}
    canceled = run.call("a-canceled")
    assert (canceled["batch_outcome"], canceled["status"], canceled["model"]) == (
        "canceled",
        "Error",
        "claude-sonnet-4-5",
    )
    errored = run.call("a-error")
    assert errored["batch_outcome"] == "provider_failed" and PROVIDER_ERROR in errored["error"]
    (submission,) = [s for s in run.spans if s["SpanId"] == run.anthropic.span_id]
    assert submission["SpanAttributes"][names.BATCH_PROVIDER] == "anthropic"
    assert submission["link_traces"] == []  # built outside any span: nothing to link


def test_the_state_file_holds_ids_not_content(run: Run) -> None:
    path = run.state_dir / f"{run.openai.batch_id}.json"
    assert path == run.openai.state_path and oct(path.stat().st_mode & 0o777) == "0o600"
    for beside in (path.with_suffix(".collected"), path.with_suffix(".lock")):  # owner only, as the state file
        assert oct(beside.stat().st_mode & 0o777) == "0o600", beside
    text = path.read_text()
    for custom_id in OPENAI_IDS:
        assert _question(custom_id) not in text and "ticket" not in text.lower()
    assert "support assistant" not in text and answer_text("r-ok") not in text
    state = json.loads(text)
    assert set(state) == {"version", "batch_id", "provider", "endpoint", "purpose", "submitted_at", "submission",
                          "requests"}  # fmt: skip
    assert state["requests"]["r-ok"] == {
        "model": "gpt-4o-mini",
        "trace_id": run.enqueued["r-ok"],
        "span_id": run.enqueue_spans["r-ok"],
        "prompt_name": "answer",
        "prompt_version": run.prompt_version,
    }
    collected = [
        json.loads(line) for line in (run.state_dir / f"{run.openai.batch_id}.collected").read_text().splitlines()
    ]
    assert sorted(c["custom_id"] for c in collected) == sorted(OPENAI_IDS)
    # The OpenAI batch's metadata carries the submission, for a worker without the file.
    (create,) = [r for r in run.fake.requests if r.path == "/v1/batches" and r.method == "POST"
                 and json.loads(r.body)["metadata"]["tracehouse_purpose"] == PURPOSE]  # fmt: skip
    metadata = json.loads(create.body)["metadata"]
    assert metadata["tracehouse_submission"] == f"{run.openai.trace_id}-{run.openai.span_id}"
    assert metadata["team"] == "support"


# ------------------------------------------------------------------------------- OpenAI Batch, Responses API

RESPONSES_IDS = ("s-text", "s-list", "s-prompt", "s-tool", "s-long", "s-fail", "s-error")
RESPONSES_OUTCOMES = {"s-error": ERROR, "s-long": INCOMPLETE}
RESPONSES_HANDLER_FAILS, RESPONSES_HANDLER_ERROR = "s-fail", "ticket s-fail is closed"
RESPONSES_PURPOSE = "responses-summaries"
INSTRUCTIONS = "You summarize support tickets."
RESPONSES_TOOL = {"type": "function", "name": "lookup_order", "parameters": {"type": "object"}}
# s-list's input: the list form, with an earlier turn's function call and its output.
HISTORY = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": _question("s-list")}]},
    {"type": "function_call", "call_id": "call_prev", "name": "lookup_order", "arguments": '{"order": 42}'},
    {"type": "function_call_output", "call_id": "call_prev", "output": '{"status": "lost"}'},
    {"role": "user", "content": "Anything else to add?"},
]


@dataclass
class ResponsesRun:
    submitted: batch.Submitted
    enqueued: dict[str, tuple[str, str]]  # custom id -> enqueuing (trace id, span id)
    collected: dict[str, Any]  # the collect process's output
    calls: list[dict[str, Any]]  # llm_calls rows of the batch
    spans: list[dict[str, Any]]  # otel_traces rows of the batch (submission, requests, handlers)
    prompt_version: str  # the registry's version of s-prompt's prompt

    def call(self, custom_id: str) -> dict[str, Any]:
        (row,) = [r for r in self.calls if r["batch_custom_id"] == custom_id]
        return row

    def handler_span(self, custom_id: str) -> dict[str, Any]:
        (span,) = [s for s in self.spans if s["ParentSpanId"] == self.call(custom_id)["id"]]
        return span


def _responses_body(custom_id: str, answer: prompts.Prompt) -> dict[str, Any]:
    """The body of the live `client.responses.create(...)` each request replaces."""
    body: dict[str, Any] = {"model": "gpt-5-mini", "instructions": INSTRUCTIONS, "reasoning": {"effort": "medium"}}
    if custom_id == "s-list":
        return body | {"input": HISTORY}
    if custom_id == "s-prompt":  # the registry's messages as the input (its system message a system item)
        rendered = answer.render(shop="Acme", policies=["Refunds"], question=_question(custom_id))
        return {"model": "gpt-5-mini", "input": rendered}
    body["input"] = _question(custom_id)
    if custom_id == "s-text":  # the reasoning summary asked for: it is part of the answer, as in a live call
        body["reasoning"] = {"effort": "medium", "summary": "auto"}
    if custom_id == "s-tool":
        body["tools"] = [RESPONSES_TOOL]
    body["max_output_tokens"] = 16 if custom_id == "s-long" else 2000
    return body


@pytest.fixture(scope="module")
def responses_run(tmp_path_factory: pytest.TempPathFactory, collector: CollectorProcess) -> ResponsesRun:
    """A /v1/responses batch: submitted here, collected in another process (the worker app), as `run`'s."""
    import openai

    state_dir = tmp_path_factory.mktemp("responses-batch") / "state"
    previous_state_dir = os.environ.get(batch.STATE_DIR_ENV)
    os.environ[batch.STATE_DIR_ENV] = str(state_dir)
    try:
        with FakeBatchProvider() as fake:
            fake.outcomes.update(RESPONSES_OUTCOMES)
            provider = _provider(collector.grpc_endpoint, SUBMITTER)
            tracer = provider.get_tracer("batch-test")
            answer = prompts.load("answer", PROMPTS)
            enqueued, requests = {}, []
            for custom_id in RESPONSES_IDS:
                with tracer.start_as_current_span(f"enqueue {custom_id}") as span:
                    context = span.get_span_context()
                    enqueued[custom_id] = (format(context.trace_id, "032x"), format(context.span_id, "016x"))
                    requests.append(batch.request(custom_id, **_responses_body(custom_id, answer)))
            client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
            submitted = batch.submit(
                client, requests, purpose=RESPONSES_PURPOSE, endpoint=batch.RESPONSES, tracer_provider=provider
            )
            provider.shutdown()
            worker_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, batch.STATE_DIR_ENV: str(state_dir)}
            collected = _collect_process(worker_env, "openai", fake.openai_base_url, submitted.batch_id)
            (create,) = [r for r in fake.requests if r.path == "/v1/batches" and r.method == "POST"]
            assert json.loads(create.body)["endpoint"] == "/v1/responses"
            uploaded = [json.loads(line) for f in fake.files.values() for line in f.splitlines() if b'"url"' in line]
            assert {line["url"] for line in uploaded} == {"/v1/responses"}
    finally:
        if previous_state_dir is None:
            os.environ.pop(batch.STATE_DIR_ENV, None)
        else:
            os.environ[batch.STATE_DIR_ENV] = previous_state_dir
    calls = sql_rows(
        collector.data_dir,
        f"SELECT * FROM llm_calls WHERE batch_id = '{submitted.batch_id}' ORDER BY batch_custom_id",
    )
    spans = sql_rows(
        collector.data_dir,
        "SELECT TraceId, SpanId, ParentSpanId, SpanName, ServiceName, StatusCode, StatusMessage, SpanAttributes,"
        " Links.TraceId AS link_traces, Links.SpanId AS link_spans, Events.Name AS event_names,"
        " Events.Attributes AS event_attributes FROM otel_traces"
        f" WHERE SpanAttributes['{names.BATCH_ID}'] = '{submitted.batch_id}'",
    )
    return ResponsesRun(submitted, enqueued, collected, calls, spans, answer.version)


def test_a_responses_batch_is_one_response_span_per_request_with_its_outcome(responses_run: ResponsesRun) -> None:
    summary = responses_run.collected["summary"]
    assert summary["outcomes"] == {
        "s-text": "handled",
        "s-list": "handled",
        "s-prompt": "handled",
        "s-tool": "handled",
        "s-long": "handled",
        "s-fail": "handler_failed",
        "s-error": "provider_failed",
    }
    # The handler got the SDK's Response: its own output_text reads the answer.
    sdk_texts = responses_run.collected["sdk_texts"]
    expected = {custom_id: answer_text(custom_id) for custom_id in ("s-text", "s-list", "s-prompt")}
    expected |= {"s-tool": "", "s-long": answer_text("s-long")[:10]}  # a function call has no text
    assert sdk_texts == expected
    assert sorted(r["batch_custom_id"] for r in responses_run.calls) == sorted(RESPONSES_IDS)
    for row in responses_run.calls:
        assert (row["span_name"], row["provider"], row["service"]) == ("Response", "openai", WORKER)
        assert row["request_model"] == "gpt-5-mini" and row["batch_purpose"] == RESPONSES_PURPOSE
        assert row["batch_outcome"] == summary["outcomes"][row["batch_custom_id"]]
        assert (row["status"] == "Ok") == (row["batch_outcome"] == "handled")
        span = [s for s in responses_run.spans if s["SpanId"] == row["id"]][0]
        trace_id, span_id = responses_run.enqueued[row["batch_custom_id"]]
        assert set(zip(span["link_traces"], span["link_spans"], strict=True)) == {
            (trace_id, span_id),
            (responses_run.submitted.trace_id, responses_run.submitted.span_id),
        }


def test_responses_tokens_with_cached_cache_write_and_reasoning_are_priced_at_batch_rates(
    responses_run: ResponsesRun,
) -> None:
    for index, custom_id in enumerate(RESPONSES_IDS):
        if custom_id == "s-error":
            continue
        row, usage = responses_run.call(custom_id), usage_for("responses", index)
        assert (row["response_model"], row["model"]) == (RESPONSES_MODEL, "gpt-5-mini")
        details = usage["input_tokens_details"]
        assert (
            row["prompt_tokens"],
            row["completion_tokens"],
            row["cached_tokens"],
            row["cache_write_tokens"],
            row["reasoning_tokens"],
            row["total_tokens"],
        ) == (
            usage["input_tokens"],
            usage["output_tokens"],
            details["cached_tokens"],
            details["cache_write_tokens"],
            usage["output_tokens_details"]["reasoning_tokens"],
            usage["total_tokens"],
        )
        tokens = {
            "input_tokens": usage["input_tokens"],
            "cache_read_tokens": details["cached_tokens"],
            "cache_write_tokens": details["cache_write_tokens"],
            "output_tokens": usage["output_tokens"],  # reasoning tokens are output tokens, at the output rate
        }
        batch_cost = _batch_cost(RESPONSES_MODEL, "openai", row["ts"], True, tokens)
        live_cost = _batch_cost(RESPONSES_MODEL, "openai", row["ts"], False, tokens)
        assert (row["price_variant"], row["cost_source"]) == ("batch", "catalogue")
        assert _close(row["cost_usd"], batch_cost) and _close(row["standard_cost_usd"], live_cost)
        # genai-prices gives gpt-5-mini's batch rates as half of every live rate.
        assert Decimal(str(row["cost_usd"])) * 2 == Decimal(str(row["standard_cost_usd"])) > 0


def test_responses_input_instructions_answer_and_parameters_are_the_live_calls(responses_run: ResponsesRun) -> None:
    text = responses_run.call("s-text")
    assert text["system_prompt"] == INSTRUCTIONS
    assert _json(text["messages"])[-1] == {"role": "user", "content": [{"type": "text", "text": _question("s-text")}]}
    # The reasoning summary asked for is a reasoning part before the answer, never answer text.
    assert _json(text["response"]) == [
        {"role": "assistant", "content": [{"type": "reasoning", "text": reasoning_summary("s-text")}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer_text("s-text")}]},
    ]
    assert text["finish_reason"] == "stop" and text["max_tokens"] == 2000
    assert _json(text["invocation_parameters"])["reasoning"] == {"effort": "medium", "summary": "auto"}
    listed = responses_run.call("s-list")
    # Without a summary asked for, the reasoning item leaves nothing in the answer.
    assert _json(listed["response"]) == [
        {"role": "assistant", "content": [{"type": "text", "text": answer_text("s-list")}]}
    ]
    assert listed["system_prompt"] == INSTRUCTIONS
    messages = [m for m in _json(listed["messages"]) if m["role"] != "system"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": _question("s-list")}]
    (earlier,) = messages[1]["tool_calls"]
    assert (earlier["id"], earlier["name"], _json(earlier["arguments"])) == ("call_prev", "lookup_order", {"order": 42})
    assert messages[2]["tool_call_id"] == "call_prev"
    assert messages[2]["content"] == [{"type": "text", "text": '{"status": "lost"}'}]
    assert messages[3]["content"] == [{"type": "text", "text": "Anything else to add?"}]
    rendered = responses_run.call("s-prompt")
    assert rendered["system_prompt"].startswith("You are the support assistant of Acme.")
    assert (rendered["prompt_name"], rendered["prompt_version"]) == ("answer", responses_run.prompt_version)
    last = _json(rendered["messages"])[-1]
    assert last == {"role": "user", "content": [{"type": "text", "text": _question("s-prompt")}]}


def test_a_responses_function_call_is_a_tool_call_and_an_incomplete_one_a_length_stop(
    responses_run: ResponsesRun,
) -> None:
    tool = responses_run.call("s-tool")
    (call,) = _json(tool["tool_calls"])
    assert (call["id"], call["name"], _json(call["arguments"])) == (
        f"call_{RESPONSES_IDS.index('s-tool')}",
        "lookup_order",
        {"ticket": "s-tool"},
    )
    assert [t["name"] for t in _json(tool["tools"])] == ["lookup_order"]
    assert tool["finish_reason"] == "tool_call"
    long = responses_run.call("s-long")
    assert long["finish_reason"] == "length" and long["max_tokens"] == 16
    assert _json(long["response"])[0]["content"] == [{"type": "text", "text": answer_text("s-long")[:10]}]


def test_responses_handler_and_provider_failures_are_errors(responses_run: ResponsesRun) -> None:
    failed = responses_run.call("s-fail")
    assert (failed["batch_outcome"], failed["status"], failed["error_type"]) == (
        "handler_failed",
        "Error",
        "ValueError",
    )
    assert RESPONSES_HANDLER_ERROR in failed["error"]
    assert failed["prompt_tokens"] == usage_for("responses", RESPONSES_IDS.index("s-fail"))["input_tokens"]
    handler = responses_run.handler_span("s-fail")
    assert (handler["SpanName"], handler["StatusCode"]) == ("batch handle", "Error")
    exception = handler["event_attributes"][handler["event_names"].index("exception")]
    assert exception["exception.message"] == RESPONSES_HANDLER_ERROR
    assert responses_run.handler_span("s-text")["StatusCode"] == "Ok"
    error = responses_run.call("s-error")
    assert (error["batch_outcome"], error["status"], error["error_type"]) == (
        "provider_failed",
        "Error",
        "invalid_request_error",
    )
    assert PROVIDER_ERROR in error["error"] and error["prompt_tokens"] is None and error["model"] == "gpt-5-mini"
    assert not any(s["ParentSpanId"] == error["id"] for s in responses_run.spans)  # no handler ran


def test_a_responses_results_file_without_cache_writes_still_gives_the_handler_a_response(fake_clients) -> None:
    """Older results files lack `input_tokens_details.cache_write_tokens`, which this SDK's type requires: the
    handler gets the SDK's Response all the same (built as the SDK builds a live one), and the span its tokens."""
    from openai.types.responses import Response

    fake, openai_client, _ = fake_clients
    fake.responses_cache_writes = False
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    request = batch.request("only", model="gpt-5-mini", input="hi")
    submitted = batch.submit(openai_client, [request], purpose="p", endpoint=batch.RESPONSES, tracer_provider=provider)
    got: list[Any] = []
    summary = batch.collect(
        openai_client, submitted.batch_id, lambda r: got.append(r.response), tracer_provider=provider
    )
    assert summary.outcomes == {"only": "handled"}
    (response,) = got
    assert isinstance(response, Response) and response.output_text == answer_text("only")
    (span,) = [s for s in memory.get_finished_spans() if s.name == "Response"]
    usage = usage_for("responses", 0)
    assert span.attributes["llm.token_count.prompt"] == usage["input_tokens"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    assert span.attributes["llm.token_count.prompt_details.cache_read"] == cached
    assert "llm.token_count.prompt_details.cache_write" not in span.attributes
    assert span.attributes["llm.input_messages.0.message.content"] == "hi"


# ------------------------------------------------------------------------------------------------ the README


def _readme_block(marker: str) -> str:
    region = README.read_text().split(f"<!-- {marker} -->", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    found = FENCED.search(region)
    assert found, f"no code block between the {marker} markers"
    return found.group(1)


def test_the_readme_example_and_its_sql_run(tmp_path: Path, collector: CollectorProcess, run: Run) -> None:
    (tmp_path / "app.py").write_text(_readme_block("batch-app"))
    with FakeBatchProvider() as fake:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": fake.openai_base_url,
            "OPENAI_API_KEY": "sk-fake",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint,
            batch.STATE_DIR_ENV: str(tmp_path / "state"),
        }
        result = subprocess.run(
            [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr
    assert "'handled': 2" in result.stdout
    everything = sql_rows(collector.data_dir, _readme_block("batch-sql"))
    purposes = {r["batch_purpose"] for r in everything} - {RESPONSES_PURPOSE}  # there when its tests ran first
    assert purposes == {PURPOSE, ANTHROPIC_PURPOSE, "ticket-summaries"}
    (row,) = [r for r in everything if r["batch_purpose"] == "ticket-summaries"]
    assert (row["batch_outcome"], int(row["requests"])) == ("handled", 2)
    assert Decimal(str(row["saved_usd"])) > 0 and Decimal(str(row["paid_usd"])) > 0
    calls = sql_rows(
        collector.data_dir,
        "SELECT batch_custom_id, messages FROM llm_calls WHERE service = 'ticket-summaries' ORDER BY 1",
    )
    assert [c["batch_custom_id"] for c in calls] == ["t-1", "t-2"]  # and no LLM span of the SDK's file calls
    assert "My parcel never arrived." in json.dumps(_json(calls[0]["messages"]))


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def fake_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import anthropic
    import openai

    monkeypatch.setenv(batch.STATE_DIR_ENV, str(tmp_path / "state"))
    with FakeBatchProvider() as fake:
        yield (
            fake,
            openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0),
            anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake", max_retries=0),
        )


def _silent() -> TracerProvider:
    return TracerProvider()


def test_a_batch_the_provider_does_not_know_is_an_error_naming_it(fake_clients) -> None:
    _, openai_client, anthropic_client = fake_clients
    with pytest.raises(batch.BatchNotFound, match="batch batch_missing: openai knows no such batch"):
        batch.collect(openai_client, "batch_missing", lambda r: None, tracer_provider=_silent())
    with pytest.raises(batch.BatchNotFound, match="batch msgbatch_missing: anthropic knows no such batch"):
        batch.collect(anthropic_client, "msgbatch_missing", lambda r: None, tracer_provider=_silent())


def test_a_batch_submitted_without_tracehouse_is_an_error_naming_it(fake_clients, tmp_path: Path) -> None:
    _, openai_client, anthropic_client = fake_clients
    uploaded = openai_client.files.create(file=("x.jsonl", b'{"custom_id":"x","body":{}}\n'), purpose="batch")
    raw = openai_client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                       completion_window="24h")  # fmt: skip
    with pytest.raises(batch.BatchStateMissing) as caught:
        batch.collect(openai_client, raw.id, lambda r: None, tracer_provider=_silent())
    assert raw.id in str(caught.value) and str(tmp_path / "state" / f"{raw.id}.json") in str(caught.value)
    claude = anthropic_client.messages.batches.create(requests=[{"custom_id": "x", "params": {
        "model": "claude-sonnet-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}}])  # fmt: skip
    with pytest.raises(batch.BatchStateMissing, match=claude.id):
        batch.collect(anthropic_client, claude.id, lambda r: None, tracer_provider=_silent())


@pytest.mark.parametrize(
    ("endpoint", "body", "span_name"),
    [
        (
            batch.CHAT_COMPLETIONS,
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            "ChatCompletion",
        ),
        (batch.RESPONSES, {"model": "gpt-5-mini", "input": "hi"}, "Response"),
    ],
)
def test_a_worker_without_the_state_file_still_links_the_submission(
    fake_clients, endpoint: str, body: dict[str, Any], span_name: str
) -> None:
    """OpenAI's batch metadata keeps the submission: the file gone, the spans still link it (no enqueuing link);
    the endpoint, and so the shape of the results, is the provider's batch's."""
    _, openai_client, _ = fake_clients
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    request = batch.request("only", **body)
    submitted = batch.submit(openai_client, [request], purpose="p", endpoint=endpoint, tracer_provider=provider)
    submitted.state_path.unlink()
    summary = batch.collect(openai_client, submitted.batch_id, lambda r: None, tracer_provider=provider)
    assert summary.outcomes == {"only": "handled"}
    (span,) = [s for s in memory.get_finished_spans() if s.name == span_name]
    assert span.attributes["llm.output_messages.0.message.content"] == answer_text("only")
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (int(submitted.trace_id, 16), int(submitted.span_id, 16))
    ]
    assert span.attributes[names.BATCH_PURPOSE] == "p"
    assert span.attributes["llm.input_messages.0.message.content"] == "hi"  # from OpenAI's input file
    again = batch.collect(openai_client, submitted.batch_id, lambda r: None, tracer_provider=provider)
    assert again.emitted == 0 and again.already_collected == 1


@pytest.mark.parametrize(
    ("requests", "problem"),
    [
        ([], "no requests"),
        ([("a", "gpt-4o-mini"), ("a", "gpt-4o-mini")], "custom_id 'a' appears twice"),
        ([("a", "")], "request 'a' names no model"),
        ([("x" * 65, "gpt-4o-mini")], "longer than 64 characters"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_sent(fake_clients, requests, problem) -> None:
    fake, openai_client, _ = fake_clients
    built = [batch.request(custom_id, model=model, messages=[]) for custom_id, model in requests]
    with pytest.raises(batch.BatchRequestError, match=re.escape(problem)):
        batch.submit(openai_client, built, purpose="p", tracer_provider=_silent())
    assert fake.requests == []


def test_bad_metadata_custom_ids_and_clients_are_refused(fake_clients) -> None:
    fake, openai_client, _ = fake_clients
    one = [batch.request("a", model="gpt-4o-mini", messages=[])]
    with pytest.raises(batch.BatchRequestError, match="14 metadata pairs.*at most 13"):
        batch.submit(openai_client, one, purpose="p", metadata={f"k{i}": "v" for i in range(14)})
    with pytest.raises(batch.BatchRequestError, match="'tracehouse_purpose' is reserved"):
        batch.submit(openai_client, one, purpose="p", metadata={"tracehouse_purpose": "x"})
    with pytest.raises(batch.BatchRequestError, match="custom_id must be a non-empty string"):
        batch.request("", model="gpt-4o-mini")
    with pytest.raises(batch.BatchError, match="dict is neither an openai nor an anthropic client"):
        batch.submit({}, one, purpose="p")
    with pytest.raises(batch.BatchError, match="'../x' is not a provider batch id"):
        batch.collect(openai_client, "../x", lambda r: None)
    assert fake.requests == []


# --------------------------------------------------------------------------------------------- the worker app


def _worker(provider_name: str, base_url: str, batch_id: str) -> None:
    """A background worker: tracehouse's setup() (OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT, the installed
    instrumentors), then one collect; prints the summary and the custom ids its handler processed."""
    import openai

    from tracehouse.instrumentation import setup, shutdown

    setup(service_name=WORKER, instrument=["openai"])
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    client = openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)
    handled: list[str] = []
    sdk_texts: dict[str, str] = {}  # custom id -> the answer as the SDK's own type gives it

    def handle(result: batch.BatchResult) -> None:
        if result.custom_id in (HANDLER_FAILS, RESPONSES_HANDLER_FAILS):
            raise ValueError(HANDLER_ERROR if result.custom_id == HANDLER_FAILS else RESPONSES_HANDLER_ERROR)
        if isinstance(result.response, Response):  # a /v1/responses batch
            sdk_texts[result.custom_id] = result.response.output_text
        else:
            assert isinstance(result.response, ChatCompletion)
            sdk_texts[result.custom_id] = result.response.choices[0].message.content or ""
        handled.append(result.custom_id)

    summary = batch.collect(client, batch_id, handle)
    shutdown()
    print(json.dumps({"summary": _summary_json(summary), "handled": handled, "sdk_texts": sdk_texts}))


def _crashing_worker(base_url: str, batch_id: str) -> None:
    """A worker whose process dies in the third request's handler, its spans still in the SDK's batch
    processor (tracehouse's setup(): exported every 5 s)."""
    import openai

    from tracehouse.instrumentation import setup

    setup(service_name=WORKER, instrument=[])
    client = openai.OpenAI(base_url=base_url, api_key="sk-fake", max_retries=0)
    handled: list[str] = []

    def handle(result: batch.BatchResult) -> None:
        handled.append(result.custom_id)
        if len(handled) == 3:
            os._exit(3)  # killed: no shutdown, no flush

    batch.collect(client, batch_id, handle)


def test_a_worker_that_dies_mid_collect_loses_no_requests_span(tmp_path: Path, collector: CollectorProcess) -> None:
    """The record of a collected request was written before the SDK exported its span: a worker that died
    then lost those spans for good (the next collect skipped them). Now a request is recorded once its span
    left the process; the next collect emits every other one again (and runs their handlers again)."""
    import openai

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, batch.STATE_DIR_ENV: str(tmp_path / "state")}
    ids = [f"crash-{n}" for n in range(5)]
    with FakeBatchProvider() as fake:
        os.environ[batch.STATE_DIR_ENV] = env[batch.STATE_DIR_ENV]
        try:
            client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
            requests = [
                batch.request(i, model="gpt-4o-mini", messages=[{"role": "user", "content": _question(i)}]) for i in ids
            ]
            submitted = batch.submit(client, requests, purpose="crash-test", tracer_provider=_silent())
        finally:
            os.environ.pop(batch.STATE_DIR_ENV, None)
        died = subprocess.run(
            [sys.executable, __file__, "collect-crash", fake.openai_base_url, submitted.batch_id],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )
        assert died.returncode == 3, died.stderr
        again = _collect_process(env, "openai", fake.openai_base_url, submitted.batch_id)
    assert again["summary"]["already_collected"] == 0 and again["summary"]["emitted"] == len(ids)
    wait_drained(collector.data_dir)
    stored = sql_rows(
        collector.data_dir,
        f"SELECT DISTINCT batch_custom_id AS id FROM llm_calls WHERE batch_id = '{submitted.batch_id}' ORDER BY id",
    )
    assert [row["id"] for row in stored] == ids


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        _worker(*sys.argv[2:5])
    elif sys.argv[1] == "collect-crash":
        _crashing_worker(*sys.argv[2:4])
