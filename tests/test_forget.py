"""`tracehouse forget` end to end on a real collector and the real engine: spans of two users (each trace with a
child tool span that carries no user id) sent with the OTel SDK's OTLP exporter, scores about them and written
by them, then the command as a user runs it. Through the running collector: a dry run changes nothing, the
erasure removes every row of that user's traces and their own scores, leaves the other user's intact and the
daily rollup's costs unchanged, deletes the spool segments that held the content, and writes an audit row
without the erased values. Without a collector: a spool left behind by a collector that could not reach its
store is drained first, then erased, with the user id hashed by redaction. Bad input is refused naming the
flag."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained

pytestmark = pytest.mark.timeout(240)

USERS = {"alice": "Alice asks about the Lisbon contract", "bob": "Bob asks about the Porto invoice"}
HASHED = """
[redaction]
hash_secret = "forget-test-secret"

[redaction.attributes]
"user.id" = "hash"
"""


def _send(endpoint: str) -> dict[str, str]:
    """One trace per user (an LLM span with the user and session ids, a tool child without); their trace ids."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import set_span_in_context

    provider = TracerProvider(resource=Resource.create({"service.name": "forget-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    tracer = provider.get_tracer("forget-test")
    traces = {}
    for user, prompt in USERS.items():
        with tracer.start_as_current_span("chat") as llm:
            llm.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.provider": "openai",
                    "llm.token_count.prompt": 1000,
                    "llm.token_count.completion": 100,
                    "input.value": prompt,
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": prompt,
                    "output.value": f"Answer for {user}",
                    "user.id": user,
                    "session.id": f"session-of-{user}",
                }
            )
            tool = tracer.start_span("lookup", context=set_span_in_context(llm))
            tool.set_attributes({"openinference.span.kind": "TOOL", "input.value": f"{prompt} (tool input)"})
            tool.end()
            traces[user] = format(llm.get_span_context().trace_id, "032x")
    provider.shutdown()
    return traces


def _score(endpoint: str, trace_id: str, author: str) -> None:
    body = {"trace_id": trace_id, "name": "helpful", "value": 1, "source": "user", "author": author}
    request = urllib.request.Request(
        endpoint + "/v1/scores", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def forget(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "forget", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=200,
    )


def _counts(data_dir: Path, traces: dict[str, str]) -> dict[str, int]:
    counts = {}
    for user, trace_id in traces.items():
        where = f"TraceId = '{trace_id}'"
        counts[f"{user} spans"] = int(sql_rows(data_dir, f"SELECT count() AS n FROM otel_traces WHERE {where}")[0]["n"])
    rows = sql_rows(data_dir, "SELECT TraceId, Author FROM scores ORDER BY Author, TraceId")
    counts["scores"] = len(rows)
    counts["scores by alice"] = sum(row["Author"] == "alice" for row in rows)
    counts["scores of alice's trace"] = sum(row["TraceId"] == traces["alice"] for row in rows)
    return counts


def _daily_cost(data_dir: Path) -> tuple[str, str]:
    row = sql_rows(data_dir, "SELECT toString(sum(calls)) AS calls, toString(sum(cost_usd)) AS cost FROM llm_daily")
    return row[0]["calls"], row[0]["cost"]


def _spool_bytes_on_disk(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted((data_dir / "spool").rglob("*")) if path.is_file())


def test_forget_a_user_through_the_running_collector(start_collector, tmp_path):
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    traces = _send(collector.http_endpoint)
    _score(collector.http_endpoint, traces["alice"], "support-agent")  # about alice's trace
    _score(collector.http_endpoint, traces["bob"], "alice")  # written by alice, about bob's trace
    _score(collector.http_endpoint, traces["bob"], "support-agent")
    wait_drained(data)
    before = _counts(data, traces)
    assert before == {
        "alice spans": 2,
        "bob spans": 2,
        "scores": 3,
        "scores by alice": 1,
        "scores of alice's trace": 1,
    }
    cost_before = _daily_cost(data)
    assert cost_before[0] == "2" and float(cost_before[1]) > 0
    assert USERS["alice"].encode() in _spool_bytes_on_disk(data)  # sent segments are kept for retry detection

    dry = forget(data, "--user", "alice", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "forget user: 1 trace(s) (dry run: nothing changed)" in dry.stdout
    assert "otel_traces_trace_id_ts" in dry.stdout and "would remove 2 row(s)" in dry.stdout
    assert _counts(data, traces) == before

    done = forget(data, "--user", "alice", "--requested-by", "dpo@example.org")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "forget user: 1 trace(s)"
    assert any(line.split() == ["otel_traces", "removed", "2", "row(s)"] for line in lines), done.stdout
    assert any(line.split() == ["scores", "removed", "2", "row(s)"] for line in lines), done.stdout
    assert "audit: erasure" in done.stdout
    assert collector.alive()

    assert _counts(data, traces) == {
        "alice spans": 0,
        "bob spans": 2,
        "scores": 1,
        "scores by alice": 0,
        "scores of alice's trace": 0,
    }
    trace_index = sql_rows(
        data, f"SELECT count() AS n FROM otel_traces_trace_id_ts WHERE TraceId = '{traces['alice']}'"
    )
    assert int(trace_index[0]["n"]) == 0
    assert sql_rows(data, "SELECT count() AS n FROM otel_traces WHERE SpanAttributes['user.id'] = 'alice'")[0]["n"] in (
        0,
        "0",
    )
    assert _daily_cost(data) == cost_before  # the rollup has no user dimension: costs stay
    mutations = list((data / "clickhouse").rglob("mutation_*.txt"))
    assert mutations and not any(b"alice" in path.read_bytes() for path in mutations)  # rows named by id
    assert USERS["alice"].encode() not in _spool_bytes_on_disk(data)

    audit = sql_rows(data, "SELECT * FROM erasures")
    assert len(audit) == 1
    assert audit[0]["RequestedBy"] == "dpo@example.org" and audit[0]["SubjectKind"] == "user"
    assert audit[0]["Route"] == "collector" and int(audit[0]["Traces"]) == 1
    assert {key: int(value) for key, value in audit[0]["Rows"].items()}["otel_traces"] == 2
    assert "alice" not in json.dumps(audit) and traces["alice"] not in json.dumps(audit)

    # A session and a single trace go the same way; the collector keeps taking spans throughout.
    session = forget(data, "--session", "session-of-bob", "--dry-run")
    assert session.returncode == 0 and "forget session: 1 trace(s)" in session.stdout
    by_trace = forget(data, "--trace", traces["bob"].upper())
    assert by_trace.returncode == 0, by_trace.stderr
    assert _counts(data, traces)["bob spans"] == 0
    later = _send(collector.http_endpoint)
    wait_drained(data)
    assert _counts(data, later)["alice spans"] == 2
    assert len(sql_rows(data, "SELECT ErasureId FROM erasures")) == 2  # dry runs are not recorded


def _replay(endpoint: str, of: str, text: str) -> str:
    """A span as `tracehouse replay` writes one (tests/test_replay.py drives the command): a trace of its own,
    the replayed call's span id in tracehouse.replay_of, its messages, no user. Its trace id."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tracehouse.instrumentation.attributes import REPLAY_OF

    provider = TracerProvider(resource=Resource.create({"service.name": "forget-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    with provider.get_tracer("replay").start_as_current_span("ChatCompletion") as span:
        span.set_attributes(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4.1-mini",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": text,
                REPLAY_OF: of,
            }
        )
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def test_forget_a_user_takes_the_replays_of_their_calls_too(start_collector, tmp_path):
    """A replay holds the call's messages in a trace of its own, without the user: forget follows
    tracehouse.replay_of (a replay of a replay too) and leaves the other users' replays."""
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    traces = _send(collector.http_endpoint)
    wait_drained(data)
    calls = {
        row["user"]: row["id"]
        for row in sql_rows(data, "SELECT user_id AS user, id FROM llm_calls WHERE service = 'forget-app'")
    }
    replay = _replay(collector.http_endpoint, calls["alice"], USERS["alice"])
    wait_drained(data)
    (replayed,) = sql_rows(data, f"SELECT SpanId FROM otel_traces WHERE TraceId = '{replay}'")
    again = _replay(collector.http_endpoint, replayed["SpanId"], USERS["alice"])
    bobs = _replay(collector.http_endpoint, calls["bob"], USERS["bob"])
    wait_drained(data)
    done = forget(data, "--user", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "forget user: 3 trace(s)"
    left = {
        row["TraceId"]
        for row in sql_rows(data, "SELECT DISTINCT TraceId FROM otel_traces WHERE ServiceName = 'forget-app'")
    }
    assert left == {traces["bob"], bobs} and not {traces["alice"], replay, again} & left


def test_forget_without_a_collector_drains_the_spool_left_behind_and_finds_hashed_ids(tmp_path):
    data = tmp_path / "data"
    config = tmp_path / "tracehouse.toml"
    config.write_text(HASHED)
    fault = tmp_path / "store-down"
    fault.touch()
    collector = CollectorProcess(
        data,
        "--config",
        str(config),
        "--shutdown-grace-seconds",
        "1",
        env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)},
    ).start()
    try:
        traces = _send(collector.http_endpoint)  # acknowledged into the spool: the store is away
    finally:
        collector.stop()
    assert USERS["alice"].encode() in _spool_bytes_on_disk(data)

    done = forget(data, "--config", str(config), "--user", "alice")
    assert done.returncode == 0, done.stderr
    assert "drained" in done.stdout and "into the store first" in done.stdout
    assert any(line.split() == ["otel_traces", "removed", "2", "row(s)"] for line in done.stdout.splitlines())
    assert USERS["alice"].encode() not in _spool_bytes_on_disk(data)

    # The drained spans of the other user are in the store, stored once; alice's hashed id is nowhere.
    counts = _counts(data, traces)
    assert counts["alice spans"] == 0 and counts["bob spans"] == 2
    users = {row["UserId"] for row in sql_rows(data, "SELECT DISTINCT UserId FROM otel_traces WHERE UserId != ''")}
    assert len(users) == 1 and "bob" not in users  # bob's id is stored as its hash too
    audit = sql_rows(data, "SELECT Route, Traces FROM erasures")
    assert audit == [{"Route": "store", "Traces": 1}] or audit == [{"Route": "store", "Traces": "1"}]

    # The collector starts again on the same data dir: nothing of alice comes back.
    again = CollectorProcess(data, "--config", str(config)).start()
    try:
        time.sleep(1)
        wait_drained(data)
        assert _counts(data, traces)["alice spans"] == 0
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "one of the arguments --user --session --trace is required"),
        (("--user", "a", "--trace", "b"), 2, "not allowed with argument"),
        (("--user", "   "), 1, "--user needs a non-empty id"),
        (("--trace", "xyz"), 1, "a trace id is 32 hex digits"),
        (("--session", "s" * 2000), 1, "--session: an id of at most 1024 characters"),
        (("--user", "alice"), 1, "no store in"),
    ],
)
def test_forget_bad_input_is_refused_naming_the_flag(tmp_path, args, code, message):
    result = forget(tmp_path / "empty", *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "empty").exists()  # a refused command leaves no data dir behind


def test_the_readme_forget_commands_run_as_written(start_collector, tmp_path):
    import shlex

    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    traces = _send(collector.http_endpoint)
    wait_drained(data)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- forget-commands -->\n```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 3
    outputs = []
    for command in commands:
        words = shlex.split(command.replace("SESSION_ID", "session-of-bob"))
        assert words[:2] == ["tracehouse", "forget"], command
        result = forget(data, *words[2:])
        assert result.returncode == 0, (command, result.stderr)
        outputs.append(result.stdout)
    assert "dry run" in outputs[0] and "forget user: 1 trace(s)" in outputs[1]
    assert "forget session: 1 trace(s)" in outputs[2]
    assert _counts(data, traces)["alice spans"] == _counts(data, traces)["bob spans"] == 0
    audit = sql_rows(data, "SELECT RequestedBy FROM erasures ORDER BY Timestamp")
    assert audit[0]["RequestedBy"] == "dpo@example.org" and len(audit) == 2
