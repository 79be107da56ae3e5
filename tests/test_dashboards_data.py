"""Helpers for test_dashboards.py (no tests here): known LLM traffic sent through the real OTLP path.

Every call is one trace: a root CHAIN span and one LLM span, OpenInference or OTel GenAI attributes,
so the collector's normalize and price stages fill the LLM columns. Two days: yesterday and today
(in ClickHouse's time zone), today's calls all within the last hour so the alert windows see them.
Then users score and reviewers review some of them (USER_FEEDBACK, REVIEWS) through POST /v1/scores and
POST /v1/reviews on the same collector.

Prices (genai-prices 0.2.3, per million tokens): gpt-4o-mini input 0.15, cache read 0.075, output 0.6;
claude-3-5-sonnet-20241022 input 3, output 15; mystery-model has no price.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
from collector_process import CollectorProcess, wait_drained
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

MS = 1_000_000
DAY_S = 86_400
EMAIL = "jane.doe@example.com"


@dataclass(frozen=True)
class Call:
    day: str  # "yesterday" | "today"
    service: str
    feature: str
    convention: str  # "openinference" | "genai"
    provider: str
    model: str
    user: str
    duration_ms: int
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read: int | None = None
    finish: str | None = "stop"
    error: str | None = None
    prompt: str = ""
    version: str = ""
    ttft_ms: int | None = None
    message: str = "What is the answer?"


def calls() -> list[Call]:
    found: list[Call] = []
    for day in ("yesterday", "today"):
        for i in range(10):
            error = None
            if day == "yesterday" and i == 9:
                error = "RateLimitError"
            if day == "today" and i in (8, 9):
                error = "RateLimitError" if i == 8 else "APITimeoutError"
            refusal = day == "today" and i in (6, 7)
            found.append(
                Call(
                    day,
                    "support-bot",
                    "chat",
                    "openinference",
                    "openai",
                    "gpt-4o-mini",
                    "u-alice" if i % 2 == 0 else "u-bob",
                    1000,
                    None if error else 1000,
                    None if error else (20 if refusal else 500),
                    400 if day == "today" and i < 4 else None,
                    None if error else ("content_filter" if refusal else "stop"),
                    error,
                    "answer",
                    "v1" if day == "yesterday" or i < 5 else "v2",
                    None if error else 150,
                    f"Mail the answer to {EMAIL}" if day == "today" and i == 0 else "What is the answer?",
                )
            )
        for i in range(10):
            error = "APITimeoutError" if day == "today" and i == 9 else None
            found.append(
                Call(
                    day,
                    "support-bot",
                    "summarize",
                    "genai",
                    "anthropic",
                    "claude-3-5-sonnet-20241022",
                    "u-carol",
                    2000 if day == "today" else 1000,
                    None if error else 2000,
                    None if error else 1000,
                    finish=None if error else "end_turn",
                    error=error,
                    prompt="summarize-doc",
                    ttft_ms=None if error else 250,
                )
            )
        for _ in range(12):
            found.append(Call(day, "search-api", "search", "genai", "openai", "mystery-model", "u-bob", 500, 100, 10))
    return found


def _attributes(call: Call) -> dict:
    if call.convention == "openinference":
        attrs: dict = {
            "openinference.span.kind": "LLM",
            "llm.provider": call.provider,
            "llm.model_name": call.model,
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": call.message,
            "llm.prompt_template.name": call.prompt,
            "llm.prompt_template.version": call.version,
            "llm.prompt_template.template": "Answer: {question}",
        }
        if call.input_tokens is not None:
            attrs["llm.token_count.prompt"] = call.input_tokens
            attrs["llm.token_count.completion"] = call.output_tokens
            attrs["llm.token_count.total"] = call.input_tokens + call.output_tokens
            attrs["llm.output_messages.0.message.role"] = "assistant"
            attrs["llm.output_messages.0.message.content"] = "42"
        if call.cache_read is not None:
            attrs["llm.token_count.prompt_details.cache_read"] = call.cache_read
        if call.finish:
            attrs["llm.finish_reason"] = call.finish
    else:
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.model,
            "gen_ai.input.messages": orjson.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": call.message}]}]
            ).decode(),
        }
        if call.input_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = call.input_tokens
            attrs["gen_ai.usage.output_tokens"] = call.output_tokens
        if call.finish:
            attrs["gen_ai.response.finish_reasons"] = (call.finish,)
        if call.prompt:
            attrs["gen_ai.prompt.name"] = call.prompt
        if call.ttft_ms is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = call.ttft_ms / 1000
    attrs["user.id"] = call.user
    attrs["session.id"] = f"session-{call.user}"
    attrs["tracehouse.feature"] = call.feature
    return attrs


# --- what users and reviewers said, through POST /v1/scores and POST /v1/reviews ---------------------------
# (day, feature, i): the i-th call of that day and feature in calls().

# The latest `user` score of each rated call: thumbs (booleans) on chat, a 0-1 rating on summarize, and on
# today's first 5 searches a score of the whole trace (sent without span_id: the call inherits it).
USER_FEEDBACK: dict[tuple[str, str, int], bool | float] = {
    **{("yesterday", "chat", i): value for i, value in enumerate((True, True, True, False))},
    **{
        ("today", "chat", i): value
        for i, value in enumerate((True, True, False, True, True, False, False, False, 0.5, False))
    },
    **{("today", "summarize", i): value for i, value in enumerate((1, 1, 1, 0.5, 0, 0, 0, 0, 0, 0))},
    **{("today", "search", i): 1 for i in range(5)},
}
WHOLE_TRACE_FEATURES = ("search",)
# Scores that must not count as user feedback: one the user replaced (older), one from an evaluator (on a
# call no user rated).
EARLIER_USER_SCORE = (("today", "chat", 0), False)
EVAL_SCORE = (("today", "search", 5), 0.1)

# (call, state, reviewer, reason, seconds before `now`), applied in time order: the latest is the state.
# today's chat 1 was flagged then approved; today's chat 2 flagged then reopened (pending again).
REVIEWS: tuple[tuple[tuple[str, str, int], str, str, str, int], ...] = (
    (("today", "chat", 1), "flagged", "kim", "looks off", 600),
    (("today", "chat", 2), "flagged", "kim", "check the facts", 590),
    (("today", "chat", 1), "approved", "kim", "fine on a second look", 500),
    (("today", "chat", 2), "pending", "kim", "reopened", 480),
    (("yesterday", "chat", 3), "flagged", "lee", "wrong answer", 400),
    (("today", "chat", 6), "rejected", "lee", f"refused a fair question from {EMAIL}", 300),
    (("today", "chat", 9), "flagged", "kim", "timeout shown to the user", 200),
    (("today", "chat", 0), "approved", "kim", "", 150),
    (("today", "summarize", 0), "approved", "lee", "", 120),
    (("today", "search", 0), "approved", "lee", "", 100),
)


def call_index(day: str, feature: str, i: int) -> int:
    """The index in calls() of the i-th call of `feature` on `day`."""
    found = [index for index, c in enumerate(calls()) if (c.day, c.feature) == (day, feature)]
    return found[i]


def _post_json(url: str, body: list[dict]) -> None:
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.read()


def _judge(collector: CollectorProcess, trace_ids: dict[int, str], span_ids: dict[int, str], now: int) -> None:
    """Score and review the loaded calls as apps and reviewers do: over HTTP, after the spans."""

    def ids(call: tuple[str, str, int], whole_trace: bool = False) -> dict[str, str]:
        index = call_index(*call)
        return {"trace_id": trace_ids[index], **({} if whole_trace else {"span_id": span_ids[index]})}

    def at(seconds_ago: int) -> int:
        return (now - seconds_ago) * 1_000_000_000

    (earlier_call, earlier_value), (eval_call, eval_value) = EARLIER_USER_SCORE, EVAL_SCORE
    scores = [
        {**ids(earlier_call), "name": "thumbs", "value": earlier_value, "source": "user", "timestamp": at(900)},
        {**ids(eval_call), "name": "relevance", "value": eval_value, "source": "eval"},
    ] + [
        {
            **ids(call, call[1] in WHOLE_TRACE_FEATURES),
            "name": "thumbs" if isinstance(value, bool) else "rating",
            "value": value,
            "source": "user",
            "author": "end-user",
        }
        for call, value in USER_FEEDBACK.items()
    ]
    _post_json(collector.http_endpoint + "/v1/scores", scores)
    reviews = [
        {**ids(call), "state": state, "reviewer": reviewer, "reason": reason, "timestamp": at(seconds)}
        for call, state, reviewer, reason, seconds in REVIEWS
    ]
    _post_json(collector.http_endpoint + "/v1/reviews", reviews)


class Store:
    """The running collector's read-only query endpoint, as any ClickHouse HTTP client reaches it."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        info = json.loads((collector.data_dir / "collector.json").read_text())
        self.url = info["query_url"]
        self.key = info["query_key"]

    def query(self, sql: str) -> tuple[list[tuple[str, str]], list[dict]]:
        """(columns as (name, type), rows); 64-bit integers come back as ints."""
        request = urllib.request.Request(
            self.url + "?default_format=JSON", sql.encode(), {"X-ClickHouse-Key": self.key}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{exc.read().decode(errors='replace')}\n--- query:\n{sql}") from None
        columns = [(c["name"], c["type"]) for c in body["meta"]]
        integer = {name for name, kind in columns if "Int64" in kind and "Array" not in kind}
        rows = [
            {k: int(v) if k in integer and isinstance(v, str) else v for k, v in row.items()} for row in body["data"]
        ]
        return columns, rows

    def scalar(self, sql: str):
        _, rows = self.query(sql)
        return next(iter(rows[0].values()))


@dataclass
class Loaded:
    store: Store
    today_start: int  # Unix seconds, ClickHouse's time zone
    now: int
    trace_ids: dict[int, str]  # index in calls() -> trace id
    span_ids: dict[int, str]  # index in calls() -> the LLM call's span id


def _wait_for_a_safe_time(store: Store) -> tuple[int, int]:
    """Keep clear of midnight: today's calls need a minute of today, and the test must end before the
    day (and with it today() and yesterday()) changes."""
    while True:
        _, rows = store.query("SELECT toUnixTimestamp(toStartOfDay(now())) AS today, toUnixTimestamp(now()) AS now")
        today, now = rows[0]["today"], rows[0]["now"]
        if now - today < 90:
            time.sleep(90 - (now - today))
        elif today + DAY_S - now < 300:
            time.sleep(today + DAY_S - now + 5)
        else:
            return today, now


def load(data_dir: Path) -> tuple[CollectorProcess, Loaded]:
    collector = CollectorProcess(data_dir).start()
    store = Store(collector)
    today_start, now = _wait_for_a_safe_time(store)
    window_start = max(today_start + 30, now - 50 * 60)
    everything = calls()
    todays = [c for c in everything if c.day == "today"]
    step_ns = (now - 30 - window_start) * 1_000_000_000 // max(len(todays), 1)
    providers = {}
    for service in ("support-bot", "search-api"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, timeout=30), max_export_batch_size=512)
        )
        providers[service] = provider
    trace_ids: dict[int, str] = {}
    span_ids: dict[int, str] = {}
    today_index = 0
    for index, call in enumerate(everything):
        if call.day == "yesterday":
            start = (today_start - DAY_S + 10 * 3600 + index * 60) * 1_000_000_000
        else:
            start = window_start * 1_000_000_000 + today_index * step_ns
            today_index += 1
        tracer = providers[call.service].get_tracer("tracehouse-tests")
        root = tracer.start_span(
            f"{call.feature} request",
            start_time=start,
            attributes={"openinference.span.kind": "CHAIN", "tracehouse.feature": call.feature},
        )
        child = tracer.start_span(
            "ChatCompletion" if call.convention == "openinference" else f"chat {call.model}",
            context=trace.set_span_in_context(root),
            start_time=start + MS,
            attributes=_attributes(call),
        )
        if call.convention == "openinference" and call.ttft_ms is not None:
            child.add_event("First Token Stream Event", timestamp=start + MS + call.ttft_ms * MS)
        if call.error:
            child.add_event(
                "exception", {"exception.type": call.error, "exception.message": f"{call.error} from provider"}
            )
            child.set_status(Status(StatusCode.ERROR, call.error))
        child.end(end_time=start + MS + call.duration_ms * MS)
        root.end(end_time=start + 2 * MS + call.duration_ms * MS)
        trace_ids[index] = format(root.get_span_context().trace_id, "032x")
        span_ids[index] = format(child.get_span_context().span_id, "016x")
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()
    _judge(collector, trace_ids, span_ids, now)
    wait_drained(collector.data_dir)
    return collector, Loaded(store, today_start, now, trace_ids, span_ids)
