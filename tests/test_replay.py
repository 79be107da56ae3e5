"""`tracehouse replay` end to end: calls stored by a real collector from OTLP/JSON spans (OpenInference
attributes, as an instrumented app sends them), replayed against the local fake providers (OpenAI Chat
Completions and Anthropic Messages, tests/fake_providers.py) with each override. Checked: the request the
fake received (system prompt, messages with tool calls and tool results, tools, parameters), the comparison
printed, the replay stored as a priced LLM span in its own trace with a link and llm_calls.replay_of, through
the running collector and without it; batch replay with an endpoint failure reported, not fatal; each case
that cannot be replayed, with its message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained
from fake_providers import FakeProviders

pytestmark = pytest.mark.timeout(300)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def _attrs(values: dict) -> list[dict]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append({"key": key, "value": {"boolValue": value}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        elif isinstance(value, float):
            out.append({"key": key, "value": {"doubleValue": value}})
        else:
            out.append({"key": key, "value": {"stringValue": value}})
    return out


def _call(
    span_id: str,
    messages: list[tuple],
    *,
    provider="openai",
    model="gpt-4o-mini",
    answer="It is sunny.",
    feature="support",
    tools=None,
    params=None,
    extra=None,
) -> dict:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.provider": provider,
        "llm.model_name": model,
        "llm.invocation_parameters": json.dumps(params or {"temperature": 0.7, "max_tokens": 200}),
        "llm.token_count.prompt": 40,
        "llm.token_count.completion": 8,
        "tracehouse.feature": feature,
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": answer,
        **(extra or {}),
    }
    for n, (role, content, *rest) in enumerate(messages):
        prefix = f"llm.input_messages.{n}.message"
        attributes[f"{prefix}.role"] = role
        if content:
            attributes[f"{prefix}.content"] = content
        if role == "assistant" and rest:
            name, arguments, call_id = rest[0]
            attributes[f"{prefix}.tool_calls.0.tool_call.id"] = call_id
            attributes[f"{prefix}.tool_calls.0.tool_call.function.name"] = name
            attributes[f"{prefix}.tool_calls.0.tool_call.function.arguments"] = arguments
        if role == "tool":
            attributes[f"{prefix}.tool_call_id"] = rest[0]
    for n, tool in enumerate(tools or []):
        attributes[f"llm.tools.{n}.tool.json_schema"] = json.dumps(tool)
    now = time.time_ns()
    return {
        "traceId": span_id * 2,
        "spanId": span_id,
        "name": "ChatCompletion",
        "kind": 3,
        "startTimeUnixNano": str(now - 2_000_000_000),
        "endTimeUnixNano": str(now - 1_500_000_000),
        "attributes": _attrs(attributes),
    }


def send(collector: CollectorProcess, spans: list[dict], service: str = "support-bot") -> None:
    body = {
        "resourceSpans": [
            {"resource": {"attributes": _attrs({"service.name": service})}, "scopeSpans": [{"spans": spans}]}
        ]
    }
    request = urllib.request.Request(
        collector.traces_url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).close()
    wait_drained(collector.data_dir)


PLAIN = "00000000000000a1"
TOOL = "00000000000000b1"
CLAUDE = "00000000000000c1"
STREAMED = "00000000000000d1"
ORIGINALS = [
    _call(PLAIN, [("system", "You are terse."), ("user", "What is the capital of France?")], answer="Paris."),
    _call(
        TOOL,
        [
            ("system", "You answer about the weather."),
            ("user", "What is the weather in Lisbon?"),
            ("system", "Reminder: use the tool."),  # later in the conversation: it stays where it sat
            ("assistant", "", ("get_weather", '{"city": "Lisbon"}', "call_1")),
            ("tool", '{"forecast": "sunny, 24C"}', "call_1"),
        ],
        answer="It is sunny in Lisbon.",
        tools=TOOLS,
    ),
    _call(
        CLAUDE,
        [
            ("system", "Be brief."),
            ("user", "What is the weather in Porto?"),
            ("system", "Reminder: use the tool."),
            ("assistant", "", ("get_weather", '{"city": "Porto"}', "toolu_1")),
            ("tool", "rainy, 15C", "toolu_1"),
        ],
        provider="anthropic",
        model="claude-haiku-4-5",
        answer="Rainy.",
        tools=TOOLS,
    ),
    _call(STREAMED, [("user", "Tell me a Story")], params={"stream": True, "temperature": 1.0}, answer="Once."),
]


def replay(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "replay", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def fake():
    with FakeProviders() as server:
        yield server


def test_replay_each_kind_of_call_with_overrides_through_the_collector(start_collector, tmp_path, fake):
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    send(collector, ORIGINALS)
    env = {
        "OPENAI_API_KEY": "sk-fake",
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "OPENAI_BASE_URL": fake.base_url,
        "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
    }

    # A plain call, another model, another system prompt from a file, another temperature.
    prompt = tmp_path / "system.txt"
    prompt.write_text("You are verbose.")
    done = replay(
        data, PLAIN, "--model", "gpt-4.1-mini", "--system-prompt", f"@{prompt}", "--temperature", "0.1", env=env
    )
    assert done.returncode == 0, done.stderr
    sent = fake.exchanges[-1].request
    assert sent["model"] == "gpt-4.1-mini" and sent["temperature"] == 0.1 and sent["max_tokens"] == 200
    assert sent["messages"] == [
        {"role": "system", "content": "You are verbose."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    out = done.stdout
    assert out.startswith(f"replay of {PLAIN} -> span ")
    assert "gpt-4o-mini" in out and "gpt-4.1-mini" in out
    assert "-Paris.\n" in out and "+Fake answer to: What is the capital of France?" in out
    stored = sql_rows(
        data, f"SELECT id, trace_id, model, cost_usd, cost_source, feature FROM llm_calls WHERE replay_of = '{PLAIN}'"
    )
    assert len(stored) == 1
    new = stored[0]
    assert new["trace_id"] != PLAIN * 2 and new["model"].startswith("gpt-4.1-mini") and new["feature"] == "support"
    assert new["cost_source"] != "unknown" and float(new["cost_usd"]) > 0  # priced by the pipeline
    assert f"${float(new['cost_usd']):.6f}" in out
    links = sql_rows(
        data, f"SELECT `Links.TraceId` AS t, `Links.SpanId` AS s FROM otel_traces WHERE SpanId = '{new['id']}'"
    )
    assert links == [{"t": [PLAIN * 2], "s": [PLAIN]}]

    # A tool-calling call: the tool call and its result go back as they were; the fake answers from them.
    done = replay(data, TOOL, "--max-tokens", "50", env=env)
    assert done.returncode == 0, done.stderr
    sent = fake.exchanges[-1].request
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "system", "assistant", "tool"]
    assert sent["messages"][2] == {"role": "system", "content": "Reminder: use the tool."}
    assert sent["messages"][3]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'}}
    ]
    assert sent["messages"][4] == {"role": "tool", "content": '{"forecast": "sunny, 24C"}', "tool_call_id": "call_1"}
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["max_tokens"] == 50
    assert "sunny, 24C" in done.stdout

    # An Anthropic call: Messages API, system apart, tool_use and tool_result blocks.
    done = replay(data, CLAUDE, env=env)
    assert done.returncode == 0, done.stderr
    exchange = fake.exchanges[-1]
    assert exchange.path.endswith("/messages") and exchange.headers["x-api-key"] == "sk-ant-fake"
    sent = exchange.request
    # Anthropic takes system text only in `system`: the later system message joins it there.
    assert sent["system"] == "Be brief.\n\nReminder: use the tool." and sent["model"] == "claude-haiku-4-5"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Porto"},
    }
    assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]

    # A streamed call is replayed as one request (the answer compared whole).
    done = replay(data, STREAMED, env=env)
    assert done.returncode == 0, done.stderr
    assert "stream" not in fake.exchanges[-1].request and fake.exchanges[-1].request["temperature"] == 1.0
    replays = sql_rows(data, "SELECT replay_of FROM llm_calls WHERE replay_of != '' ORDER BY replay_of")
    assert [r["replay_of"] for r in replays] == [PLAIN, TOOL, CLAUDE, STREAMED]


def test_batch_replay_reports_a_failure_without_stopping(start_collector, tmp_path, fake):
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    calls = [
        _call(
            f"{n:016x}", [("user", f"Question {n}?")], model="error-500" if n == 7 else "gpt-4o-mini", feature="batch"
        )
        for n in range(1, 21)
    ]
    send(collector, calls + [_call("00000000000000ff", [("user", "Other feature")], feature="other")])
    collector.stop()  # without a collector: replays go through the same stages, in this process
    env = {"OPENAI_API_KEY": "sk-fake", "OPENAI_BASE_URL": fake.base_url}
    done = replay(data, "--where", "feature = 'batch'", "--limit", "50", "--concurrency", "4", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "replayed 20 of 20 call(s)"
    assert any(line.split()[:3] == ["changed", "20", "of"] for line in lines)
    assert any(line.split() == ["error", "rate", "0%", "5%"] for line in lines), done.stdout
    assert "worst regressions:" in done.stdout and f"{7:016x} -> " in done.stdout and "HTTP 500" in done.stdout
    stored = sql_rows(
        data, "SELECT count() AS n, countIf(status = 'Error') AS failed FROM llm_calls WHERE replay_of != ''"
    )
    assert stored == [{"n": 20, "failed": 1}]
    assert len([e for e in fake.exchanges if e.path.endswith("/chat/completions")]) == 19  # and one HTTP 500


def test_what_cannot_be_replayed_is_said(start_collector, tmp_path, fake, store_template):
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    send(
        collector,
        [
            _call("00000000000000e1", [("user", "Mail jane.doe@example.com the invoice")]),
            _call("00000000000000e2", [("user", "Hello")], provider="vertex_ai", model="gemini-2.5-flash"),
        ],
    )
    env = {"OPENAI_API_KEY": "sk-fake", "OPENAI_BASE_URL": fake.base_url}
    redacted = replay(data, "00000000000000e1", env=env)
    assert redacted.returncode == 1
    assert "redaction placeholders in message 1 (user): the replay would send them" in redacted.stderr
    assert "--allow-redacted" in redacted.stderr
    allowed = replay(data, "00000000000000e1", "--allow-redacted", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert fake.exchanges[-1].request["messages"][0]["content"] == "Mail [EMAIL] the invoice"
    other = replay(data, "00000000000000e2", env=env)
    assert other.returncode == 1 and "provider 'google' is not one this command speaks" in other.stderr
    assert replay(data, "00000000000000e2", "--provider", "openai", env=env).returncode == 0
    no_key = replay(
        data,
        "00000000000000e2",
        "--provider",
        "openai",
        "--api-key-env",
        "MY_KEY",
        env={"OPENAI_BASE_URL": fake.base_url},
    )
    assert no_key.returncode == 1 and "no API key for openai: set MY_KEY" in no_key.stderr
    unknown = replay(data, "0000000000000abc", env=env)
    assert unknown.returncode == 1 and "no LLM call with span id 0000000000000abc" in unknown.stderr
    bad = replay(data, "xyz", env=env)
    assert bad.returncode == 1 and "a span id is 16 hex digits" in bad.stderr
    both = replay(data, "00000000000000e1", "--where", "1", env=env)
    assert both.returncode == 1 and "give a SPAN_ID, or --where CONDITION" in both.stderr
    collector.stop()

    # Content dropped by sampling: nothing to replay, and it says so.
    sampled_dir = tmp_path / "sampled"
    config = tmp_path / "sampling.toml"
    config.write_text("[sampling]\ncontent_share = 0.0\n")
    sampled = CollectorProcess(sampled_dir, "--config", str(config), store_template=store_template).start()
    try:
        send(sampled, [_call("00000000000000f1", [("user", "Hello")])])
    finally:
        sampled.stop()
    dropped = replay(sampled_dir, "00000000000000f1", env=env)
    assert dropped.returncode == 1 and "its content was dropped by sampling; nothing to replay" in dropped.stderr


def test_the_readme_replay_commands_run_as_written(start_collector, tmp_path, fake, monkeypatch):
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    failing = _call("00000000000000a9", [("user", "Why did it fail?")], extra={})
    failing["status"] = {"code": 2, "message": "upstream timeout"}
    send(collector, [ORIGINALS[0], failing])
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "new.md").write_text("You are careful.")
    monkeypatch.chdir(tmp_path)
    env = {"OPENAI_API_KEY": "sk-fake", "OPENAI_BASE_URL": fake.base_url}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- replay-commands -->\n```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    import shlex

    for command in commands:
        words = shlex.split(command.replace("SPAN_ID", PLAIN))
        assert words[:2] == ["tracehouse", "replay"], command
        result = replay(data, *words[2:], env=env)
        assert result.returncode == 0, (command, result.stderr)
    assert fake.exchanges[1].request["messages"][0] == {"role": "system", "content": "You are careful."}
    assert fake.exchanges[2].request["messages"][-1]["content"] == "Why did it fail?"  # the failed support call
    assert len(sql_rows(data, "SELECT id FROM llm_calls WHERE replay_of != ''")) == 3
