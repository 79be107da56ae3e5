"""`tracehouse export` end to end on a real collector process and the real engine: calls sent over OTLP/HTTP
(OTLP/JSON bodies; a tool-calling call with its tool result, a system prompt, a redacted e-mail, two features
and models), scores and reviews through POST /v1/scores and /v1/reviews. Every format is read back by its own
reader (json, the csv module, pyarrow for parquet) and compared with `tracehouse sql` rows of the same views;
the openai-chat file is validated line by line against the chat message schema; samples are reproducible;
the read-only guard applies to --where; exports run with the collector running and after it stopped; the
README's commands run as written."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, seed_store, sql_rows, tracehouse_sql, wait_drained
from test_scores import post

pytestmark = pytest.mark.timeout(420)

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- export-commands -->\n```sh\n"
TRACE_PREFIX = "5bf92f3577b34da6"
TOOL_CALL = "00000000000000b1"  # a tool call and its result in the input, a redacted e-mail, scored, approved
CALLS_A_TOOL = "00000000000000b2"  # its response is a tool call
SUPPORT = [TOOL_CALL, CALLS_A_TOOL, *(f"00000000000000{n:02x}" for n in range(0x11, 0x1A))]  # 11 calls
SEARCH = [f"00000000000000{n:02x}" for n in range(0x21, 0x27)]  # 6 calls
APPROVED = {TOOL_CALL, SUPPORT[2]}
EMAIL = "jane.doe@example.com"


def trace_of(span_id: str) -> str:
    return TRACE_PREFIX + span_id


def _attributes(span_id: str, n: int) -> dict[str, Any]:
    support = span_id in SUPPORT
    attributes: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.model_name": "gpt-4o-mini" if support else "gpt-4o",
        "llm.token_count.prompt": 100 + n,
        "llm.token_count.completion": 20,
        "tracehouse.feature": "support" if support else "search",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "You are the support bot of ACME." if support else "Search the docs.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": f"Question {n}: where is order {span_id}?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": f"Answer {n}: it ships tomorrow.",
    }
    if span_id == TOOL_CALL:
        attributes |= {
            "llm.input_messages.1.message.content": f"Where is order 42? Write to {EMAIL}",
            "llm.input_messages.2.message.role": "assistant",
            "llm.input_messages.2.message.tool_calls.0.tool_call.id": "call_abc",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "lookup_order",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": '{"order": 42}',
            "llm.input_messages.3.message.role": "tool",
            "llm.input_messages.3.message.tool_call_id": "call_abc",
            "llm.input_messages.3.message.content": '{"status": "shipped"}',
            "llm.output_messages.0.message.content": "Order 42 has shipped.",
        }
    if span_id == CALLS_A_TOOL:
        del attributes["llm.output_messages.0.message.content"]
        attributes |= {
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_xyz",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup_order",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order": 7}',
        }
    return attributes


def _otlp_json() -> bytes:
    now = time.time_ns()
    spans = []
    for n, span_id in enumerate(SUPPORT + SEARCH):
        start = now - (n + 1) * 1_000_000_000
        spans.append(
            {
                "traceId": trace_of(span_id),
                "spanId": span_id,
                "name": "ChatCompletion",
                "kind": 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 400_000_000),
                "status": {"code": 0},
                "attributes": [
                    {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                    for k, v in _attributes(span_id, n).items()
                ],
            }
        )
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop-bot"}}]}
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}).encode()


def tracehouse(data_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def export(data_dir: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    result = tracehouse(data_dir, "export", "--since", "1d", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    return result


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fill_store(collector: CollectorProcess) -> None:
    request = urllib.request.Request(
        collector.traces_url, data=_otlp_json(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    status, _ = post(
        collector.http_endpoint + "/v1/scores",
        [{"trace_id": trace_of(TOOL_CALL), "span_id": TOOL_CALL, "name": "accuracy", "value": 0.9, "source": "eval"}],
    )
    assert status == 200
    reviews = [{"trace_id": trace_of(s), "span_id": s, "state": "approved", "reviewer": "kim"} for s in APPROVED]
    reviews.append({"trace_id": trace_of(SEARCH[0]), "span_id": SEARCH[0], "state": "flagged", "reviewer": "kim"})
    status, _ = post(collector.http_endpoint + "/v1/reviews", reviews)
    assert status == 200
    wait_drained(collector.data_dir)


# --- the OpenAI chat schema -------------------------------------------------------------------------------


def check_chat_messages(messages: list[dict[str, Any]], ends_with_answer: bool = True) -> None:
    """The chat format fine-tuning reads: known roles and keys, string contents, tool calls in the
    function shape with JSON arguments, every tool message answering a call the assistant just made."""
    assert messages, "no messages"
    open_calls: set[str] = set()
    for message in messages:
        role = message["role"]
        assert role in ("system", "user", "assistant", "tool"), message
        allowed = {"system": {"role", "content"}, "user": {"role", "content", "name"}}.get(role)
        if role == "assistant":
            assert set(message) <= {"role", "content", "tool_calls", "name"}, message
            calls = message.get("tool_calls", [])
            assert isinstance(message["content"], str) or (message["content"] is None and calls), message
            for call in calls:
                assert set(call) == {"id", "type", "function"} and call["type"] == "function", call
                assert isinstance(call["id"], str) and call["id"], call
                assert set(call["function"]) == {"name", "arguments"} and call["function"]["name"], call
                json.loads(call["function"]["arguments"])  # a JSON string, as the API sends it
            open_calls = {call["id"] for call in calls}
            continue
        if role == "tool":
            assert set(message) == {"role", "tool_call_id", "content"}, message
            assert message["tool_call_id"] in open_calls, (message, open_calls)
            open_calls.discard(message["tool_call_id"])
        else:
            assert set(message) <= allowed, message
        assert isinstance(message["content"], str), message
    if ends_with_answer:
        assert messages[-1]["role"] == "assistant"


def parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return [{k: v.decode() if isinstance(v, bytes) else v for k, v in row.items()} for row in rows]


# --- the tests ----------------------------------------------------------------------------------------------


def test_every_format_matches_the_store_with_and_without_the_collector(start_collector, tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "out"
    out.mkdir()
    collector = start_collector(migrated=True)
    fill_store(collector)
    stored = sql_rows(data, "SELECT * FROM llm_calls ORDER BY ts, id")
    assert {row["id"] for row in stored} == set(SUPPORT + SEARCH)

    # jsonl: ClickHouse's JSONEachRow of every llm_calls column, in time order; pages change nothing.
    result = export(data, out / "calls.jsonl", "--format", "jsonl")
    assert result.stderr.strip().endswith(f"exported {len(stored)} calls to {out / 'calls.jsonl'}")
    assert jsonl(out / "calls.jsonl") == stored
    export(data, out / "paged.jsonl", "--format", "jsonl", "--page-rows", "4")
    assert (out / "paged.jsonl").read_bytes() == (out / "calls.jsonl").read_bytes()

    # csv: CSVWithNames, one header, whatever the page size; the same as `tracehouse sql` writes it.
    export(data, out / "calls.csv", "--format", "csv", "--page-rows", "5")
    expected_csv = tracehouse_sql(data, "SELECT * FROM llm_calls ORDER BY ts, id", "CSVWithNames").stdout.decode()
    exported_csv = list(csv.DictReader(io.StringIO((out / "calls.csv").read_text())))
    assert exported_csv == list(csv.DictReader(io.StringIO(expected_csv)))
    assert [row["id"] for row in exported_csv] == [row["id"] for row in stored]

    # parquet: one file, every row and column.
    export(data, out / "calls.parquet", "--format", "parquet")
    table = parquet_rows(out / "calls.parquet")
    assert [row["id"] for row in table] == [row["id"] for row in stored]
    for got, want in zip(table, stored, strict=True):
        for column in ("trace_id", "feature", "model", "messages", "response", "system_prompt", "tool_calls"):
            assert got[column] == want[column], column
        assert got["prompt_tokens"] == int(want["prompt_tokens"])

    # traces: one row per trace, as the traces view has them.
    export(data, out / "traces.csv", "--traces", "--format", "csv")
    expected = tracehouse_sql(data, "SELECT * FROM traces ORDER BY start, trace_id", "CSVWithNames").stdout.decode()
    assert list(csv.DictReader(io.StringIO((out / "traces.csv").read_text()))) == list(
        csv.DictReader(io.StringIO(expected))
    )

    # openai-chat: one valid conversation per call; the tool call and its result round-trip; redacted stays so.
    export(data, out / "chat.jsonl", "--format", "openai-chat")
    chats = jsonl(out / "chat.jsonl")
    assert len(chats) == len(stored)
    for line in chats:
        assert set(line) == {"messages"}
        check_chat_messages(line["messages"])
    assert EMAIL not in (out / "chat.jsonl").read_text()
    tool_chat = next(line["messages"] for line in chats if "order 42" in line["messages"][1]["content"])
    assert tool_chat[0] == {"role": "system", "content": "You are the support bot of ACME."}
    assert tool_chat[1] == {"role": "user", "content": "Where is order 42? Write to [EMAIL]"}
    assert tool_chat[2]["content"] is None
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in tool_chat[2]["tool_calls"]
    ] == [("call_abc", "lookup_order", {"order": 42})]
    assert tool_chat[3] == {"role": "tool", "tool_call_id": "call_abc", "content": '{"status": "shipped"}'}
    assert tool_chat[4] == {"role": "assistant", "content": "Order 42 has shipped."}

    # openai-eval: the input, the reference answer, and what the call was (scores and review included).
    export(data, out / "eval.jsonl", "--format", "openai-eval")
    evals = {line["metadata"]["span_id"]: line for line in jsonl(out / "eval.jsonl")}
    assert set(evals) == set(SUPPORT + SEARCH)
    for line in evals.values():
        check_chat_messages(line["messages"], ends_with_answer=False)
    tool_eval = evals[TOOL_CALL]
    assert tool_eval["messages"] == tool_chat[:4]
    assert tool_eval["ideal"] == "Order 42 has shipped."
    metadata = tool_eval["metadata"]
    assert metadata["scores"] == {"accuracy": 0.9} and metadata["review_state"] == "approved"
    assert (metadata["trace_id"], metadata["model"], metadata["feature"]) == (
        trace_of(TOOL_CALL),
        "gpt-4o-mini",
        "support",
    )
    assert evals[CALLS_A_TOOL]["ideal"] == ""
    assert [c["function"]["name"] for c in evals[CALLS_A_TOOL]["ideal_tool_calls"]] == ["lookup_order"]
    assert "scores" not in evals[SEARCH[1]]["metadata"] and "review_state" not in evals[SEARCH[1]]["metadata"]

    # Stratified samples: 6 of 17 calls, each feature/model its share (11 -> 4, 6 -> 2); same seed, same file.
    sample = ("--format", "jsonl", "--sample", "6", "--stratify-by", "feature,model")
    export(data, out / "s1.jsonl", *sample, "--seed", "1")
    export(data, out / "s1-again.jsonl", *sample, "--seed", "1")
    export(data, out / "s2.jsonl", *sample, "--seed", "2")
    assert (out / "s1.jsonl").read_bytes() == (out / "s1-again.jsonl").read_bytes()
    first, second = jsonl(out / "s1.jsonl"), jsonl(out / "s2.jsonl")
    assert {r["id"] for r in first} != {r["id"] for r in second}
    for rows in (first, second):
        assert sorted(r["feature"] for r in rows) == ["search"] * 2 + ["support"] * 4
        assert rows == [r for r in stored if r["id"] in {x["id"] for x in rows}]  # stored rows, in time order

    # --only-reviewed: the approved calls (llm_calls_scored rows); --exclude-redacted: all but the e-mail's call.
    export(data, out / "approved.jsonl", "--format", "jsonl", "--only-reviewed", "approved")
    approved = jsonl(out / "approved.jsonl")
    assert {r["id"] for r in approved} == APPROVED and {r["review_state"] for r in approved} == {"approved"}
    redacted = {r["id"] for r in stored if r["redaction_counts"]}
    assert redacted == {TOOL_CALL}
    export(data, out / "clean.jsonl", "--format", "jsonl", "--exclude-redacted")
    assert [r["id"] for r in jsonl(out / "clean.jsonl")] == [r["id"] for r in stored if r["id"] not in redacted]
    result = export(data, out / "limited.jsonl", "--format", "jsonl", "--where", "feature = 'search'", "--limit", "2")
    assert [r["id"] for r in jsonl(out / "limited.jsonl")] == [r["id"] for r in stored if r["feature"] == "search"][-2:]
    assert "exported 2 calls to" in result.stderr

    # The collector stopped: the same exports from the store itself, byte for byte.
    assert collector.stop() == 0
    for fmt, name in (("jsonl", "calls.jsonl"), ("openai-chat", "chat.jsonl"), ("openai-eval", "eval.jsonl")):
        export(data, out / f"stopped-{name}", "--format", fmt)
        assert (out / f"stopped-{name}").read_bytes() == (out / name).read_bytes(), fmt
    export(data, out / "stopped.parquet", "--format", "parquet")
    assert parquet_rows(out / "stopped.parquet") == table
    assert not list(out.glob(".*partial")), "no partial file left behind"


def test_the_guard_and_bad_input_are_refused_with_a_message(start_collector, tmp_path):
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    fill_store(collector)
    out = tmp_path / "refused.jsonl"
    refused = {
        # The condition tries to leave the WHERE: the guard sees the whole query and refuses the file read.
        "1) UNION ALL SELECT line FROM file('/etc/passwd', 'LineAsString')--": "table function file()",
        "id IN (SELECT query FROM system.processes)": "system.processes is not readable here",
        # ClickHouse itself refuses the setting while the guard checks the query (reads run with readonly=1).
        "1) SETTINGS readonly = 0 --": "Cannot modify 'readonly' setting in readonly mode",
        "id IN (SELECT id FROM url('http://127.0.0.1:1/x', 'CSV', 'id String'))": "table function url()",
        # Passes the guard (still a read of llm_calls) but is not one condition.
        "1) OR (1": "balanced parentheses",
    }
    for condition, message in refused.items():
        result = tracehouse(data, "export", "--where", condition, "--format", "jsonl", "--out", str(out))
        assert result.returncode == 1, (condition, result.stderr)
        assert message in result.stderr, (condition, result.stderr)
        assert result.stderr.startswith("tracehouse export: --where"), result.stderr
        assert not out.exists()
    bad = {
        ("--format", "xml", "--out", str(out)): (2, "invalid choice: 'xml'"),
        ("--format", "jsonl"): (2, "the following arguments are required: --out"),
        ("--out", str(out)): (2, "the following arguments are required: --format"),
        ("--format", "openai-chat", "--traces", "--out", str(out)): (1, "not with --traces"),
        ("--format", "jsonl", "--since", "yesterday", "--out", str(out)): (1, "--since: not a date"),
        ("--format", "jsonl", "--stratify-by", "feature", "--out", str(out)): (1, "add --sample N"),
        ("--format", "jsonl", "--sample", "3", "--stratify-by", "feature;x", "--out", str(out)): (1, "column name"),
        ("--format", "jsonl", "--sample", "3", "--stratify-by", "nope", "--out", str(out)): (1, "nope"),
        ("--format", "jsonl", "--out", str(tmp_path / "missing" / "x.jsonl")): (1, "no directory"),
    }
    for args, (code, message) in bad.items():
        result = tracehouse(data, "export", *args)
        assert (result.returncode, message in result.stderr) == (code, True), (args, result.stderr)
        assert not out.exists()
    assert not list(tmp_path.glob(".*partial"))


def test_the_readme_export_commands_run_as_written(start_collector, tmp_path):
    """The "Export and datasets" commands of the README, as written."""
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    fill_store(collector)
    text = README.read_text()
    block = text.split(MARKER, 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) >= 6
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "tracehouse", command
        result = tracehouse(data, *words[1:], cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        target = tmp_path / words[words.index("--out") + 1]
        noun = "traces" if "--traces" in words else "calls"
        assert "exported " in result.stderr and f" {noun} to {target.name}" in result.stderr, result.stderr
        assert target.stat().st_size > 0, command
    assert len(jsonl(tmp_path / "approved.jsonl")) == len(APPROVED)
    assert len(jsonl(tmp_path / "eval.jsonl")) == len(SUPPORT + SEARCH)  # fewer calls than the sample's 200


# --- the parts that need no store ---------------------------------------------------------------------------


def test_stratum_quotas_keep_each_share_and_sum_to_the_sample():
    from tracehouse.collector.export_cli import stratum_quotas

    assert stratum_quotas([11, 6], 6) == [4, 2]
    assert stratum_quotas([1, 1, 1], 2) == [1, 1, 0]  # ties: the earlier stratum
    assert stratum_quotas([5, 3], 100) == [5, 3]  # a sample larger than the rows: every row
    quotas = stratum_quotas([700, 200, 99, 1], 50)
    assert sum(quotas) == 50 and quotas == [35, 10, 5, 0]


def test_a_condition_must_stay_one_condition():
    from tracehouse.collector.export_cli import ExportFailed, check_condition

    for fine in ("feature = 'a) -- not code'", "error != '' AND (model = 'x' OR model = \"y\")", "id = 'it\\'s'"):
        check_condition(fine)
    for bad in ("1) OR (1", "1 -- rest", "1 /* x */", "1; SELECT 1", "(1", "model = 'x", "1 # x"):
        with pytest.raises(ExportFailed):
            check_condition(bad)


def test_canonical_messages_become_openai_chat_messages():
    """Tool results without an id answer the open call; images on user messages become content parts;
    reasoning is left out; a response that only calls tools has content null."""
    from tracehouse.collector.export_cli import openai_chat_record

    call = {
        "system_prompt": "Be brief.",
        "messages": json.dumps(
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Look"}, {"type": "image", "url": "https://x/a.png"}],
                },
                {
                    "role": "assistant",
                    "content": [],
                    "tool_calls": [{"id": "", "name": "zoom", "arguments": {"by": 2}}],
                },
                {"role": "tool", "content": [{"type": "text", "text": "zoomed"}]},
            ]
        ),
        "response": json.dumps(
            [
                {
                    "role": "assistant",
                    "content": [{"type": "reasoning", "text": "hmm"}, {"type": "text", "text": "A cat."}],
                }
            ]
        ),
        "tool_calls": "",
    }
    messages = openai_chat_record(call)["messages"]
    assert messages[1] == {
        "role": "user",
        "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
    }
    assert messages[2]["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "zoom", "arguments": '{"by":2}'}}
    ]
    assert messages[3] == {"role": "tool", "tool_call_id": "call_0", "content": "zoomed"}
    assert messages[4] == {"role": "assistant", "content": "A cat."}
    assert openai_chat_record({**call, "response": ""}) is None  # nothing to learn from: skipped, counted
    assert openai_chat_record({**call, "messages": "[]"}) is None


def test_progress_is_one_line_rewritten_on_a_terminal_and_silent_otherwise():
    from tracehouse.collector.export_cli import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream, "calls")
        progress.update(10, 30)
        progress.update(30, 30)
        progress.clear()
    assert terminal.getvalue() == "\rexporting: 10/30 calls\rexporting: 30/30 calls\r\033[K"
    assert pipe.getvalue() == ""


def test_ctrl_c_stops_the_export_and_leaves_no_file(tmp_path, store_template):
    """Without a collector (the command opens the store itself): Ctrl-C mid-way stops the read, removes the
    partial file and says so; nothing is left at --out."""
    import signal

    from tracehouse.collector import store

    data = tmp_path / "data"
    seed_store(data, store_template)
    client = store.connect(f"chdb://{data / 'clickhouse'}")
    store.migrate(client)
    client.command(
        "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, LlmSpanKind, InputMessages,"
        " OutputMessages) SELECT now64(9) - toIntervalSecond(number % 86400) - toIntervalNanosecond(number),"
        " leftPad(lower(hex(number + 1)), 32, '0'), leftPad(lower(hex(number + 1)), 16, '0'), 'chat', 'app', 'LLM',"
        ' concat(\'[{"role":"user","content":[{"type":"text","text":"question \', toString(number), \'"}]}]\'),'
        ' \'[{"role":"assistant","content":[{"type":"text","text":"an answer"}]}]\' FROM numbers(300000)'
    )
    client.close()
    out = tmp_path / "chat.jsonl"
    command = [sys.executable, "-m", "tracehouse.collector", "export", "--data-dir", str(data)]
    command += ["--format", "openai-chat", "--out", str(out), "--page-rows", "10000"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".chat.jsonl.*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().endswith("tracehouse export: cancelled, nothing written"), err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
