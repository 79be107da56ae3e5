"""Every ```sql block of the README's "Everyday SQL" section runs, as written, against a collector filled with
known calls through OTLP, and returns the columns and (for most) the exact values worked out by hand below.

The known data: yesterday (D1) and the day before (D2), UTC, service "shop-app"; gpt-4o-mini is priced from
the catalogue (USD per million tokens: input 0.15, cached input 0.075, output 0.60), acme-large carries its
own cost, mystery-model has no price.

    trace A  D1 10:00  support / alice  answer-ticket (CHAIN) -> a1 (LLM), lookup-order (TOOL), a2 (LLM)
    trace B  D1 11:00  support / bob    b1
    trace C  D1 12:00  search  / bob    research (AGENT) -> plan (CHAIN) -> c1 (LLM); web-search (TOOL); c2 (LLM)
    trace D  D2 12:00  search  / alice  d1
    trace E  D1 13:00  support / carol  e1, a rate-limit error
    trace F  D1 14:00  support / carol  f1, a refusal (content_filter)
    trace G  D2 13:00  search  / dave   g1, an unpriced model

    call  model          in (cached)   out   ms     cost USD
    a1    gpt-4o-mini    1000          200   800    0.00027     (first token after 250 ms)
    a2    gpt-4o-mini    2000 (1024)   100   1200   0.0002832
    b1    gpt-4o-mini    500           50    400    0.000105
    c1    acme-large     3000          500   9000   0.05        (provided)
    c2    gpt-4o-mini    500           50    400    0.000105
    d1    gpt-4o-mini    4000          1000  2000   0.0012
    e1    gpt-4o-mini    -             -     150    0           (failed: no tokens, nothing billed)
    f1    gpt-4o-mini    100           10    300    0.000021
    g1    mystery-model  100           100   500    NULL
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, sql_rows
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- everyday-sql:start -->", "<!-- everyday-sql:end -->"

pytestmark = pytest.mark.timeout(180)

MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
D1 = MIDNIGHT - timedelta(days=1)
D2 = MIDNIGHT - timedelta(days=2)

Results = dict[str, list[dict[str, Any]] | AssertionError]


def readme_queries() -> list[tuple[str, str]]:
    """(description, sql) for every ```sql block between the markers, the description being the last
    non-empty line before the block."""
    text = README.read_text()
    region = text[text.index(START) + len(START) : text.index(END)]
    queries = []
    for match in re.finditer(r"```sql\n(.*?)```", region, re.S):
        before = [line for line in region[: match.start()].splitlines() if line.strip()]
        queries.append((before[-1].strip(), match.group(1).strip()))
    return queries


def _ns(day: datetime, hour: int, offset_ms: float = 0) -> int:
    return int((day + timedelta(hours=hour, milliseconds=offset_ms)).timestamp() * 1e9)


@dataclass
class Open:
    """A started span and the end time it will get (children end before their parent)."""

    span: Span
    end_ns: int


def _span(
    tracer: trace.Tracer,
    name: str,
    start_ns: int,
    duration_ms: float,
    attributes: dict[str, Any],
    parent: Open | None = None,
) -> Open:
    context = trace.set_span_in_context(parent.span) if parent is not None else None
    span = tracer.start_span(name, context=context, attributes=attributes, start_time=start_ns)
    return Open(span, start_ns + int(duration_ms * 1e6))


def _end(*spans: Open) -> None:
    for open_span in spans:
        open_span.span.end(end_time=open_span.end_ns)


def _openinference_llm(model: str, tokens_in: int, tokens_out: int, who: tuple[str, str, str], **extra: Any) -> dict:
    feature, user, session = who
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.model_name": model,
        "llm.token_count.prompt": tokens_in,
        "llm.token_count.completion": tokens_out,
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Where is my order?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "It ships tomorrow.",
        "llm.finish_reason": "stop",
        "user.id": user,
        "session.id": session,
        "metadata": json.dumps({"feature": feature}),
    }
    return {**attributes, **extra}


def _genai_llm(provider: str, model: str, who: tuple[str, str, str], **extra: Any) -> dict:
    feature, user, session = who
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Find it."}]}]),
        "user.id": user,
        "gen_ai.conversation.id": session,
        "tracehouse.feature": feature,
    }
    return {**attributes, **extra}


def _usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}


def send_known_calls(traces_url: str) -> None:
    """The calls of the module docstring, over OTLP/HTTP."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-app"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url, timeout=30)))
    tracer = provider.get_tracer("readme-sql")
    alice_a, bob_b, bob_c = ("support", "alice", "s-a"), ("support", "bob", "s-b"), ("search", "bob", "s-c")

    # A: a chain with two calls and a tool step.
    root = _span(tracer, "answer-ticket", _ns(D1, 10), 3000, {"openinference.span.kind": "CHAIN"})
    a1 = _span(
        tracer, "ChatCompletion", _ns(D1, 10, 100), 800, _openinference_llm("gpt-4o-mini", 1000, 200, alice_a), root
    )
    a1.span.add_event("First Token Stream Event", timestamp=_ns(D1, 10, 350))
    tool = _span(tracer, "lookup-order", _ns(D1, 10, 1000), 100, {"openinference.span.kind": "TOOL"}, root)
    cached = {"llm.token_count.prompt_details.cache_read": 1024}
    a2 = _span(
        tracer,
        "ChatCompletion",
        _ns(D1, 10, 1200),
        1200,
        _openinference_llm("gpt-4o-mini", 2000, 100, alice_a, **cached),
        root,
    )
    _end(a1, tool, a2, root)

    # B: one call.
    _end(
        _span(
            tracer, "chat gpt-4o-mini", _ns(D1, 11), 400, _genai_llm("openai", "gpt-4o-mini", bob_b, **_usage(500, 50))
        )
    )

    # C: an agent whose plan calls an expensive model, then a tool and a cheap call.
    research = _span(tracer, "research", _ns(D1, 12), 10000, {"openinference.span.kind": "AGENT"})
    plan = _span(tracer, "plan", _ns(D1, 12, 10), 9100, {"openinference.span.kind": "CHAIN"}, research)
    acme = {**_usage(3000, 500), "gen_ai.usage.cost": 0.05}
    c1 = _span(tracer, "chat acme-large", _ns(D1, 12, 20), 9000, _genai_llm("acme", "acme-large", bob_c, **acme), plan)
    search = _span(tracer, "web-search", _ns(D1, 12, 9200), 300, {"openinference.span.kind": "TOOL"}, research)
    c2 = _span(
        tracer,
        "chat gpt-4o-mini",
        _ns(D1, 12, 9550),
        400,
        _genai_llm("openai", "gpt-4o-mini", bob_c, **_usage(500, 50)),
        research,
    )
    _end(c1, plan, search, c2, research)

    # D: one call, the day before.
    _end(
        _span(
            tracer,
            "ChatCompletion",
            _ns(D2, 12),
            2000,
            _openinference_llm("gpt-4o-mini", 4000, 1000, ("search", "alice", "s-d")),
        )
    )

    # E: a failed call.
    e1 = _span(
        tracer, "chat gpt-4o-mini", _ns(D1, 13), 150, _genai_llm("openai", "gpt-4o-mini", ("support", "carol", "s-e"))
    )
    e1.span.record_exception(RuntimeError("Rate limit reached for gpt-4o-mini"), timestamp=_ns(D1, 13, 150))
    e1.span.set_status(Status(StatusCode.ERROR, "Rate limit reached for gpt-4o-mini"))
    _end(e1)

    # F: a refusal.
    refused = {"llm.finish_reason": "content_filter"}
    _end(
        _span(
            tracer,
            "ChatCompletion",
            _ns(D1, 14),
            300,
            _openinference_llm("gpt-4o-mini", 100, 10, ("support", "carol", "s-e"), **refused),
        )
    )

    # G: a model without a price.
    _end(
        _span(
            tracer,
            "chat mystery-model",
            _ns(D2, 13),
            500,
            _genai_llm("openai", "mystery-model", ("search", "dave", "s-g"), **_usage(100, 100)),
        )
    )

    provider.shutdown()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Each README query's rows, by its description."""
    collector = CollectorProcess(tmp_path_factory.mktemp("readme-sql") / "data").start()
    try:
        send_known_calls(collector.traces_url)
        out: Results = {}
        for description, sql in readme_queries():
            try:
                out[description] = sql_rows(collector.data_dir, sql)
            except AssertionError as exc:  # the failing query's test reports it, the others still run
                out[description] = exc
        return out
    finally:
        collector.kill()


def _result(results: Results, prefix: str) -> list[dict[str, Any]]:
    (rows,) = [rows for description, rows in results.items() if description.startswith(prefix)]
    if isinstance(rows, AssertionError):
        raise rows
    return rows


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _approx(value: Any) -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-12) if value is not None else None


def test_the_readme_has_every_everyday_query() -> None:
    descriptions = [description for description, _ in readme_queries()]
    expected = ("Daily cost by feature", "Top users by spend", "Cost per call by model", "Latency percentiles")
    expected += ("Calls worth sampling for evals", "One whole trace as a tree")
    assert len(descriptions) == len(expected)
    for prefix in expected:
        assert sum(d.startswith(prefix) for d in descriptions) == 1, prefix


def test_daily_cost_by_feature(results: Results) -> None:
    rows = _result(results, "Daily cost by feature")
    assert list(rows[0]) == ["day", "feature", "calls", "total_cost_usd", "unpriced_calls"]
    got = [(r["day"], r["feature"], int(r["calls"]), _num(r["total_cost_usd"]), int(r["unpriced_calls"])) for r in rows]
    assert got == [
        (str(D1.date()), "search", 2, _approx(0.050105), 0),
        (str(D1.date()), "support", 5, _approx(0.0006792), 0),
        (str(D2.date()), "search", 2, _approx(0.0012), 1),
    ]


def test_top_users_by_spend(results: Results) -> None:
    rows = _result(results, "Top users by spend")
    assert list(rows[0]) == ["user_id", "calls", "sessions", "tokens", "total_cost_usd"]
    got = [
        (r["user_id"], int(r["calls"]), int(r["sessions"]), int(r["tokens"]), _num(r["total_cost_usd"])) for r in rows
    ]
    assert got == [
        ("bob", 3, 2, 4600, _approx(0.05021)),
        ("alice", 3, 2, 8300, _approx(0.0017532)),
        ("carol", 2, 1, 110, _approx(0.000021)),
        ("dave", 1, 1, 200, None),
    ]


def test_cost_per_call_by_model(results: Results) -> None:
    rows = _result(results, "Cost per call by model")
    assert list(rows[0]) == [
        "provider",
        "model",
        "calls",
        "unpriced_calls",
        "avg_cost_usd",
        "p95_cost_usd",
        "total_cost_usd",
    ]
    got = [
        (r["provider"], r["model"], int(r["calls"]), int(r["unpriced_calls"]))
        + tuple(_num(r[k]) for k in ("avg_cost_usd", "p95_cost_usd", "total_cost_usd"))
        for r in rows
    ]
    # gpt-4o-mini's seven calls, sorted: 0 (the failed call: no tokens, nothing billed) 0.000021 0.000105
    # 0.000105 0.00027 0.0002832 0.0012; p95 interpolates between the last two: 0.0002832 + 0.7 * 0.0009168.
    assert got == [
        ("acme", "acme-large", 1, 0, _approx(0.05), _approx(0.05), _approx(0.05)),
        ("openai", "gpt-4o-mini", 7, 0, _approx(0.0019842 / 7), _approx(0.00092496), _approx(0.0019842)),
        ("openai", "mystery-model", 1, 1, None, None, None),
    ]


def test_latency_percentiles_by_feature_and_model(results: Results) -> None:
    rows = _result(results, "Latency percentiles")
    columns = ["feature", "model", "calls", "p50_ms", "p95_ms", "p99_ms", "p50_first_token_ms"]
    assert list(rows[0]) == columns
    got = [tuple(r[c] if c in ("feature", "model") else _num(r[c]) for c in columns) for r in rows]
    # support/gpt-4o-mini without the failed call: 300 400 800 1200 ms, linear interpolation.
    assert got == [
        ("search", "acme-large", 1, 9000, 9000, 9000, None),
        ("search", "gpt-4o-mini", 2, 1200, 1920, 1984, None),
        ("support", "gpt-4o-mini", 4, 600, 1140, 1188, 250),
        ("search", "mystery-model", 1, 500, 500, 500, None),
    ]


def test_calls_worth_sampling(results: Results) -> None:
    rows = _result(results, "Calls worth sampling for evals")
    assert list(rows[0]) == [
        "ts",
        "trace_id",
        "id",
        "feature",
        "model",
        "reasons",
        "error",
        "finish_reason",
        "latency_ms",
        "cost_usd",
    ]
    got = [(r["feature"], r["model"], r["reasons"], _num(r["latency_ms"])) for r in rows]
    assert got == [
        ("support", "gpt-4o-mini", ["refusal"], 300),
        ("support", "gpt-4o-mini", ["error"], 150),
        ("search", "acme-large", ["slow", "expensive"], 9000),
    ]
    assert "Rate limit reached" in rows[1]["error"]
    assert rows[0]["finish_reason"] == "content_filter"


def test_one_trace_as_a_tree(results: Results) -> None:
    rows = _result(results, "One whole trace as a tree")
    assert list(rows[0]) == ["span", "kind", "model", "tokens", "cost_usd", "duration_ms", "status"]
    got = [(r["span"], r["kind"], r["model"], r["tokens"] and int(r["tokens"]), _num(r["cost_usd"])) for r in rows]
    assert got == [
        ("research", "AGENT", "", None, None),
        ("  plan", "CHAIN", "", None, None),
        ("    chat acme-large", "LLM", "acme-large", 3500, _approx(0.05)),
        ("  web-search", "TOOL", "", None, None),
        ("  chat gpt-4o-mini", "LLM", "gpt-4o-mini", 550, _approx(0.000105)),
    ]
    assert [_num(r["duration_ms"]) for r in rows] == [10000, 9100, 9000, 300, 400]


# -- ties: several traces share the highest cost ----------------------------------------------------


def send_tied_traces(traces_url: str, count: int = 6) -> dict[str, str]:
    """`count` traces of equal cost on D1, each a chain over two gpt-4o-mini calls and a tool step;
    returns each trace's root name by trace id (hex)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-app"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url, timeout=30)))
    tracer = provider.get_tracer("readme-sql-ties")
    roots: dict[str, str] = {}
    for i in range(count):
        who = ("support", f"user-{i}", f"s-{i}")
        root = _span(tracer, f"tied-{i}", _ns(D1, 9, i * 10_000), 3000, {"openinference.span.kind": "CHAIN"})
        first = _span(tracer, "ChatCompletion", _ns(D1, 9, i * 10_000 + 100), 800, _openinference_llm(
            "gpt-4o-mini", 1000, 200, who), root)  # fmt: skip
        tool = _span(
            tracer, "lookup-order", _ns(D1, 9, i * 10_000 + 1000), 100, {"openinference.span.kind": "TOOL"}, root
        )
        second = _span(tracer, "ChatCompletion", _ns(D1, 9, i * 10_000 + 1200), 1200, _openinference_llm(
            "gpt-4o-mini", 1000, 200, who), root)  # fmt: skip
        _end(first, tool, second, root)
        roots[format(root.span.get_span_context().trace_id, "032x")] = f"tied-{i}"
    provider.shutdown()
    return roots


def test_one_trace_as_a_tree_is_one_whole_trace_when_costs_tie(tmp_path: Path) -> None:
    """The query picks one trace, the same one every time (ties broken by trace id), and shows all of it."""
    (sql,) = [sql for description, sql in readme_queries() if description.startswith("One whole trace as a tree")]
    collector = CollectorProcess(tmp_path / "data").start()
    try:
        roots = send_tied_traces(collector.traces_url)
        expected_root = roots[min(roots)]
        for _ in range(5):
            rows = sql_rows(collector.data_dir, sql)
            got = [(r["span"], r["kind"], _num(r["cost_usd"])) for r in rows]
            assert got == [
                (expected_root, "CHAIN", None),
                ("  ChatCompletion", "LLM", _approx(0.00027)),
                ("  lookup-order", "TOOL", None),
                ("  ChatCompletion", "LLM", _approx(0.00027)),
            ]
    finally:
        collector.kill()
