"""The store side of the prompt registry (issue 16) on a real collector process and the real engine.

Calls are sent with the OTel SDK's OTLP/HTTP exporter (API keys, so tenants), tagged with prompt templates
as the app side tags them (tracehouse.instrumentation.prompts: template body, content hash, variables, name).
`tracehouse prompts sync` registers prompt files (twice: the second adds nothing), the collector registers a
version it sees only on spans (`observed`), `list`, `show`, `diff` and `label` work through the running
collector and on the store without one, GET /v1/prompts/NAME serves the labelled version in the shape the app
reads (and the app's own `prompts.load(label=)` gets it), llm_calls_scored numbers each call's version, and
every bad input has its message with nothing written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from collector_process import STORE_DIR, CollectorProcess, seed_store, sql_rows, wait_drained

from tracehouse.instrumentation import prompts

pytestmark = pytest.mark.timeout(300)

KEYS = {"TRACEHOUSE_API_KEYS": "key-alpha=alpha, key-beta=beta"}
ALPHA = {"Authorization": "Bearer key-alpha"}
BETA = {"x-api-key": "key-beta"}
README = Path(__file__).resolve().parents[1] / "README.md"
README_MARKER = "<!-- prompts-commands -->"

ANSWER_V1 = """---
name: answer
description: Answers a question about an order.
model: gpt-4o-mini
labels: [support]
---
<!-- system -->
You are the support assistant of {{shop}}. Answer in one short paragraph.
<!-- user -->
{{question}}
"""
ANSWER_V2 = ANSWER_V1.replace("in one short paragraph", "in one sentence")
SUMMARY = "Summarize the text below in {{sentences}} sentences.\n\n{{text}}\n"


def tracehouse(data_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def write_prompts(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def parsed(text: str, name: str = "answer") -> prompts.Prompt:
    return prompts.parse(text, "test", name)


def send_calls(
    collector: CollectorProcess, headers: dict[str, str], versions: list[prompts.Prompt], with_version: bool = True
) -> None:
    """One LLM call per prompt version, through the SDK's OTLP/HTTP exporter, tagged as render() tags it
    (with_version=False: the template and name only, as other instrumentations may send them)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url, headers=headers)))
    tracer = provider.get_tracer("prompts-store-test")
    for n, prompt in enumerate(versions):
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 100 + n,
            "llm.token_count.completion": 20,
            prompts.TEMPLATE_ATTRIBUTE: prompt.template,
            prompts.VERSION_ATTRIBUTE: prompt.version,
            prompts.VARIABLES_ATTRIBUTE: json.dumps({"question": f"question {n}"}),
            prompts.NAME_ATTRIBUTE: prompt.name,
        }
        if not with_version:
            del attributes[prompts.VERSION_ATTRIBUTE]
        tracer.start_span("ChatCompletion", attributes=attributes).end()
    provider.shutdown()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def versions(data_dir: Path, name: str = "answer") -> list[dict[str, Any]]:
    wait_drained(data_dir)
    return sql_rows(
        data_dir,
        "SELECT version_number, version, source, tenants, calls FROM prompt_versions "
        f"WHERE name = '{name}' ORDER BY version_number",
    )


def test_sync_observe_list_show_diff_label_and_the_read_api(start_collector, tmp_path):
    data = tmp_path / "data"
    collector = start_collector(env=KEYS, migrated=True)
    folder = write_prompts(tmp_path / "prompts", {"answer.md": ANSWER_V1, "summary.md": SUMMARY})
    v1, v2 = parsed(ANSWER_V1), parsed(ANSWER_V2)

    # sync twice: the second run adds nothing and says so
    first = tracehouse(data, "prompts", "sync", str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"answer: v1 ({v1.version}) added  {folder / 'answer.md'}",
        f"summary: v1 ({parsed(SUMMARY, 'summary').version}) added  {folder / 'summary.md'}",
        "2 added, 0 unchanged (recorded through the collector)",
    ]
    again = tracehouse(data, "prompts", "sync", str(folder))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "0 added, 2 unchanged"
    assert "answer: v1" in again.stdout and "unchanged" in again.stdout
    assert sql_rows(data, "SELECT count() AS n FROM prompts")[0]["n"] in (2, "2")

    # calls of the synced version, then of a changed file nobody synced: the collector registers it (observed)
    send_calls(collector, ALPHA, [v1, v1, v2])
    assert [(r["version_number"], r["version"], r["source"]) for r in versions(data)] == [
        (1, v1.version, "sync"),
        (2, v2.version, "observed"),
    ]
    assert [(r["tenants"], int(r["calls"])) for r in versions(data)] == [(["", "alpha"], 2), (["alpha"], 1)]
    calls = sql_rows(
        data,
        "SELECT prompt_name, prompt_version, prompt_version_number FROM llm_calls_scored "
        "WHERE tenant_id = 'alpha' ORDER BY prompt_tokens",
    )
    assert [(c["prompt_version"], c["prompt_version_number"]) for c in calls] == [
        (v1.version, 1),
        (v1.version, 1),
        (v2.version, 2),
    ]
    # syncing the changed file later keeps its number and adds the file's text to it
    (folder / "answer.md").write_text(ANSWER_V2)
    synced = tracehouse(data, "prompts", "sync", str(folder))
    assert synced.returncode == 0, synced.stderr
    assert f"answer: v2 ({v2.version}) added" in synced.stdout
    assert [(r["version_number"], r["source"]) for r in versions(data)] == [(1, "sync"), (2, "sync")]

    listed = tracehouse(data, "prompts", "list", "--format", "jsonl")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert (rows["answer"]["versions"], rows["answer"]["latest"], rows["answer"]["latest_version"]) == (
        2,
        2,
        v2.version,
    )
    assert rows["summary"]["versions"] == 1
    table = tracehouse(data, "prompts", "list")
    assert table.stdout.splitlines()[0].split() == [
        "name", "versions", "latest", "hash", "source", "calls", "last", "seen", "labels"
    ]  # fmt: skip

    shown = tracehouse(data, "prompts", "show", "answer", "--version", "1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"prompt answer v1 ({v1.version})\n")
    assert shown.stdout.endswith("\n\n" + ANSWER_V1)

    diff = tracehouse(data, "prompts", "diff", "answer", "v1", "2")
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines()[:2] == [f"--- answer v1 ({v1.version})", f"+++ answer v2 ({v2.version})"]
    assert "-You are the support assistant of {{shop}}. Answer in one short paragraph." in diff.stdout
    assert "+You are the support assistant of {{shop}}. Answer in one sentence." in diff.stdout

    # labels move, every move is kept; a label on a missing version writes nothing
    for version in ("1", "2", v1.version):
        moved = tracehouse(data, "prompts", "label", "answer", version, "production", "--by", "kim")
        assert moved.returncode == 0, moved.stderr
    assert moved.stdout == f"answer: production -> v1 ({v1.version}) (was v2) (recorded through the collector)\n"
    missing = tracehouse(data, "prompts", "label", "answer", "9", "production")
    assert missing.returncode == 1
    assert "prompt 'answer' has no version '9' (it has v1 to v2" in missing.stderr
    assert "nothing written" in missing.stderr
    moves = sql_rows(data, "SELECT VersionNumber, MovedBy FROM prompt_labels ORDER BY Timestamp")
    assert [(m["VersionNumber"], m["MovedBy"]) for m in moves] == [(1, "kim"), (2, "kim"), (1, "kim")]
    by_label = tracehouse(data, "prompts", "show", "answer", "--label", "production")
    assert by_label.stdout.startswith(f"prompt answer v1 ({v1.version})\n") and "labels production" in by_label.stdout
    assert by_label.stdout.count("production -> v") == 3  # the audit of the moves
    no_label = tracehouse(data, "prompts", "show", "answer", "--label", "staging")
    assert no_label.returncode == 1 and "prompt 'answer' has no label 'staging'" in no_label.stderr

    # the collector's write route checks every row itself: one bad row, nothing written
    from tracehouse.collector.runtime import CollectorRefused, post_to_collector

    info = json.loads((data / "collector.json").read_text())
    good = {"Timestamp": 1, "TenantId": "", "Name": "answer", "Label": "canary", "Version": v1.version,
            "VersionNumber": 1, "MovedBy": "x", "LabelId": "a"}  # fmt: skip
    for body, message in (
        ({"table": "prompt_labels", "rows": [good, {**good, "Version": "HEAD"}]}, r"rows\[1\]\.Version 'HEAD'"),
        ({"table": "prompt_labels", "rows": [good, {**good, "Label": "no spaces"}]}, "label 'no spaces'"),
        ({"table": "otel_traces", "rows": [good]}, "table 'otel_traces': the registry writes only"),
        ({"table": "prompt_labels", "rows": [{**good, "Extra": 1}]}, r"unknown \['Extra'\]"),
    ):
        with pytest.raises(CollectorRefused, match=message):
            post_to_collector(info, "/prompts", json.dumps(body).encode(), 30)
    assert sql_rows(data, "SELECT count() AS n FROM prompt_labels WHERE Label = 'canary'")[0]["n"] in (0, "0")

    # the read API: the labelled version, the whole file, in the shape the app reads
    url = collector.http_endpoint + "/v1/prompts/answer"
    status, answer = get(url + "?label=production", ALPHA)
    assert status == 200, answer
    assert answer == {
        "name": "answer",
        "version_number": 1,
        "version": v1.version,
        "template": ANSWER_V1,
        "metadata": v1.metadata,
        "labels": ["production"],
    }
    assert prompts.content_version(answer["template"]) == answer["version"]
    status, latest = get(url, BETA)  # shared versions: every tenant sees them
    assert status == 200 and latest["version_number"] == 2 and latest["labels"] == []
    assert get(url + "?version=2", ALPHA)[1]["template"] == ANSWER_V2
    loaded = prompts.load("answer", tmp_path / "nowhere", label="production", endpoint=collector.http_endpoint,
                          headers={"authorization": "Bearer key-alpha"})  # fmt: skip
    assert (loaded.version_number, loaded.version, loaded.template) == (1, v1.version, v1.template)
    assert loaded.source.startswith("registry ")

    # a tenant's own observed version is its own; a tenant's label wins over the shared one
    beta_only = parsed(ANSWER_V1.replace("{{question}}", "{{question}} (beta)"))
    send_calls(collector, BETA, [beta_only])
    assert [r["version"] for r in versions(data)][-1] == beta_only.version
    assert get(url + "?version=3", BETA)[1]["version"] == beta_only.version
    status, refused = get(url + "?version=3", ALPHA)
    assert status == 404 and refused["message"] == "prompt 'answer' has no version 3"
    assert tracehouse(data, "prompts", "label", "answer", "3", "production", "--tenant", "beta").returncode == 0
    assert get(url + "?label=production", BETA)[1]["version_number"] == 3
    assert get(url + "?label=production", ALPHA)[1]["version_number"] == 1

    # unknown prompt or label, bad parameters, no key
    status, unknown = get(collector.http_endpoint + "/v1/prompts/nope?label=production", ALPHA)
    assert status == 404 and unknown["message"] == "prompt 'nope' has no label 'production'"
    status, unknown = get(collector.http_endpoint + "/v1/prompts/nope", ALPHA)
    assert status == 404 and unknown["message"] == "no prompt 'nope' in the registry"
    status, bad = get(url + "?version=x", ALPHA)
    assert status == 400 and "version 'x'" in bad["message"]
    assert get(url + "?label=production")[0] == 401

    # without the collector: the same commands on the store itself
    collector.stop()
    offline = tracehouse(data, "prompts", "label", "answer", "2", "staging", "--by", "kim")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.endswith("(recorded through the store)\n")
    assert tracehouse(data, "prompts", "sync", str(folder)).stdout.splitlines()[-1] == "0 added, 2 unchanged"
    assert "labels staging" in tracehouse(data, "prompts", "show", "answer", "--version", "2").stdout


BAD_INPUTS = {
    "template": ({"bad.md": "Hello {{#items}}{{name}}\n"}, r"bad\.md: line 1: template does not parse"),
    "front matter": ({"bad.md": "---\nname: [unclosed\n---\nHi\n"}, r"bad\.md: line \d+: front matter is not YAML"),
    "two files": (
        {"one.md": "---\nname: twin\n---\nA\n", "two.md": "---\nname: twin\n---\nB\n"},
        r"prompt 'twin' is claimed by two files: .*one\.md and .*two\.md",
    ),
    # The registry serves a prompt back as written: one with a secret is refused, not stored nor redacted.
    "a secret": (
        {"keys.md": "Call the billing API with " + "AKIA" + "QWERTYUIOPASDF7Q" + " for {{customer}}\n"},
        r"keys\.md: Template: holds what redaction removes \(secret\)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_sync_refuses_bad_files_naming_them_and_writes_nothing(case, tmp_path, store_template):
    """Without a collector: the command opens the store itself. A new good file next to the bad one is not
    registered either."""
    data = tmp_path / "data"
    seed_store(data, store_template)
    before = tracehouse(data, "prompts", "sync", str(write_prompts(tmp_path / "first", {"summary.md": SUMMARY})))
    assert before.returncode == 0, before.stderr
    files, message = BAD_INPUTS[case]
    folder = write_prompts(tmp_path / "prompts", {"answer.md": ANSWER_V1, **files})
    result = tracehouse(data, "prompts", "sync", str(folder))
    assert result.returncode == 1 and result.stdout == ""
    assert re.search(message, result.stderr), result.stderr
    assert "nothing written" in result.stderr
    assert sql_rows(data, "SELECT Name FROM prompts") == [{"Name": "summary"}]


def test_sync_refuses_a_folder_whose_path_redaction_would_remove(tmp_path, store_template):
    """The synced file's path is stored (prompts.File) and shown by `prompts show`: a folder named with an address
    reached disk (an attacker's helper); it is scanned like the prompt's text."""
    data = tmp_path / "data"
    seed_store(data, store_template)
    folder = write_prompts(tmp_path / "d-jane.doe@corp-example.net", {"answer.md": ANSWER_V1})
    result = tracehouse(data, "prompts", "sync", str(folder))
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert re.search(r"File: holds what redaction removes \(email\)", result.stderr), result.stderr
    assert int(sql_rows(data, "SELECT count() AS n FROM prompts")[0]["n"]) == 0


LABEL_REFUSALS = {
    "escape codes in the tenant": (("--tenant", "acme\n\x1b[31mEVIL"), r"TenantId: one line of at most 256 printable"),
    "a key as the mover": (("--by", "sk-proj-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCD"), r"MovedBy: holds what"),
    # The tenant was not scanned (an attacker's helper stored both in prompt_labels.TenantId).
    "a key as the tenant": (
        ("--tenant", "sk-proj-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCD"),
        r"TenantId: holds what",
    ),
    "an address as the tenant": (
        ("--tenant", "jane.doe@corp-example.net"),
        r"TenantId: holds what redaction removes \(email\)",
    ),
}


@pytest.mark.parametrize("case", LABEL_REFUSALS)
def test_label_refuses_a_tenant_or_mover_redaction_would_remove_or_a_terminal_would_run(case, tmp_path, store_template):
    """`--tenant` and `--by` are stored as written and printed back: scanned and checked like the prompt's text."""
    data = tmp_path / "data"
    seed_store(data, store_template)
    synced = tracehouse(data, "prompts", "sync", str(write_prompts(tmp_path / "prompts", {"answer.md": ANSWER_V1})))
    assert synced.returncode == 0, synced.stderr
    flags, message = LABEL_REFUSALS[case]
    result = tracehouse(data, "prompts", "label", "answer", "1", "production", *flags)
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert re.search(message, result.stderr), result.stderr
    assert "\x1b" not in result.stderr
    assert int(sql_rows(data, "SELECT count() AS n FROM prompt_labels")[0]["n"]) == 0
    # who moves it is user@host by default, which reads as an e-mail address: that is taken
    fine = tracehouse(data, "prompts", "label", "answer", "1", "production", "--by", "jane@Janes-MacBook-Pro.local")
    assert fine.returncode == 0, fine.stderr


def test_a_huge_template_on_a_span_is_registered_truncated(start_collector, tmp_path):
    """A template past 65536 characters is cut there with a marker: registered, never dropped."""
    import hashlib

    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    huge = parsed("x" * 70_000 + " {{question}}", "huge")
    send_calls(collector, {}, [huge])
    wait_drained(data)
    (row,) = sql_rows(data, "SELECT version, template, calls FROM prompt_versions WHERE name = 'huge'")
    assert (row["version"], int(row["calls"])) == (huge.version, 1)
    assert row["template"] == "x" * 65536 + " …[truncated]"

    # a template without a version: registered under its template's hash, and its calls get the number
    plain = parsed("Translate {{text}} to French.", "translate")
    send_calls(collector, {}, [plain], with_version=False)
    wait_drained(data)
    template_hash = hashlib.sha256(plain.template.encode()).hexdigest()[:12]
    (row,) = sql_rows(data, "SELECT version, version_number FROM prompt_versions WHERE name = 'translate'")
    assert (row["version"], row["version_number"]) == (template_hash, 1)
    (call,) = sql_rows(data, "SELECT prompt_version_number FROM llm_calls_scored WHERE prompt_name = 'translate'")
    assert call["prompt_version_number"] == 1


def test_a_template_that_is_not_utf8_is_registered_with_replacement_characters(tmp_path, store_template):
    """The receivers refuse protobuf strings that are not UTF-8, so such bytes reach otel_traces only from
    another writer (an OTel Collector's ClickHouse exporter, a backfill): inserted here straight into the
    real engine, the view registers the template with U+FFFD for the bad bytes, and a version from its hash
    when the span has none."""
    import hashlib

    from tracehouse.collector import store

    seed_store(tmp_path, store_template)
    client = store.connect(f"chdb://{tmp_path / STORE_DIR}")
    try:
        store.migrate(client)
        client.command(
            "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, PromptTemplateName, PromptTemplate) "
            "VALUES (now64(9), 't', 's', 'binary', unhex('636166E92D7B7B787D7D'))"
        )
        rows = client.query("SELECT version, template, source FROM prompt_versions WHERE name = 'binary'")
        ((version, template, source),) = rows.result_rows
    finally:
        client.close()
    assert template == "caf\ufffd-{{x}}" and source == "observed"
    assert version == hashlib.sha256(b"caf\xe9-{{x}}").hexdigest()[:12]


def readme_commands() -> list[str]:
    """The README's prompts commands."""
    text = README.read_text()
    block = text.split(README_MARKER + "\n```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_commands_run_as_written(start_collector, tmp_path):
    """In an app's directory with prompts/answer.md; an older version of answer was seen on spans first."""
    data = tmp_path / "data"
    collector = start_collector(migrated=True)
    app = tmp_path / "app"
    write_prompts(app / "prompts", {"answer.md": ANSWER_V2})
    send_calls(collector, {}, [parsed(ANSWER_V1)])
    wait_drained(data)
    commands = readme_commands()
    assert len(commands) >= 5
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "tracehouse", command
        result = tracehouse(data, *words[1:], cwd=app)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip(), command
    status, answer = get(collector.http_endpoint + "/v1/prompts/answer?label=production")
    assert status == 200 and answer["template"] == ANSWER_V2 and answer["version_number"] == 2
