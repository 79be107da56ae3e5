"""Encryption at rest end to end, on real collectors and the real engine: spans (OTel SDK OTLP exporter) and
scores written under a key file, then the raw bytes of the whole data dir (store, spool, dead letters) and of
the driver's temp dir grepped for known phrases: none, where the same run without a key finds them. Queries
keep working; without the key, or with the wrong one, every command refuses naming why; a new key appended to
the file keeps the old data (and spool records sealed under the old key) readable; a store written before
encryption was on has its parts moved onto the encrypted disk. Bad settings are refused naming the setting."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained

pytestmark = pytest.mark.timeout(300)

PROMPT = "Ingrid asks about the Tromso lighthouse contract"
ANSWER = "The Tromso lighthouse contract renews in April"
COMMENT = "Ingrid found the Tromso answer wrong"
PROBE = "uncompressed-probe-phrase-7f3a91"


def _config(tmp_path: Path, keys: list[str]) -> Path:
    key_file = tmp_path / "keys" / "tracehouse.key"
    key_file.parent.mkdir(exist_ok=True)
    key_file.write_text("# tracehouse keys, the last one is current\n" + "\n".join(keys) + "\n")
    config = tmp_path / "tracehouse.toml"
    config.write_text(f'[encryption]\nkey_file = "{key_file}"\n')
    return config


def _send(collector: CollectorProcess, label: str = "") -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "sealed-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url)))
    with provider.get_tracer("encryption-test").start_as_current_span("chat" + label) as span:
        span.set_attributes(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": 10,
                "llm.token_count.completion": 5,
                "input.value": PROMPT + label,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": PROMPT + label,
                "output.value": ANSWER,
            }
        )
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    body = json.dumps({"trace_id": trace_id, "name": "thumbs", "value": 0, "comment": COMMENT}).encode()
    request = urllib.request.Request(
        collector.http_endpoint + "/v1/scores", data=body, headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).close()


def _probe(data_dir: Path, config: Path | None) -> None:
    """A table without compression, written through the project's one client path: were the disk not
    encrypted, its value would be on disk as is."""
    code = f"""
import sys
from tracehouse.collector import store
from tracehouse.collector.config import load_config
config = load_config({str(config) if config else None!r}, {{"data_dir": {str(data_dir)!r}}})
store.use_encryption(config.data_dir, config.encryption, True)
client = store.connect(config.store_url)
client.command("CREATE TABLE IF NOT EXISTS probe (s String CODEC(NONE)) ENGINE = MergeTree ORDER BY tuple()")
client.command("INSERT INTO probe VALUES ('{PROBE}')")
client.command("OPTIMIZE TABLE probe FINAL")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _phrases_on_disk(*roots: Path) -> set[str]:
    found = set()
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found |= {phrase for phrase in (PROMPT, ANSWER, COMMENT, PROBE) if phrase.encode() in data}
    return found


def tracehouse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_an_encrypted_data_dir_holds_no_plaintext_and_queries_still_work(tmp_path):
    key = secrets.token_hex(32)
    config = _config(tmp_path, [key])
    data, plain = tmp_path / "data", tmp_path / "plain"
    for data_dir, flags in ((data, ["--config", str(config)]), (plain, [])):
        collector = CollectorProcess(data_dir, *flags).start()
        try:
            _send(collector)
            wait_drained(data_dir)
        finally:
            collector.stop()
        _probe(data_dir, config if flags else None)

    # Without a key, every phrase is on disk (the spool's records, the uncompressed table); with it, none.
    assert _phrases_on_disk(plain) == {PROMPT, ANSWER, COMMENT, PROBE}
    temp = next(Path("/dev/shm").glob(f"tracehouse-{os.getuid()}-*"))
    assert _phrases_on_disk(data, temp) == set()
    raw = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert key.encode() not in raw and bytes.fromhex(key) not in raw  # nor the key itself
    assert "fingerprints" in json.loads((data / "encryption.json").read_text())

    # Queries, commands and the views keep working.
    flags = ("--data-dir", str(data), "--config", str(config))
    rows = tracehouse("sql", *flags, "--format", "jsonl", "SELECT messages, cost_usd FROM llm_calls")
    assert rows.returncode == 0, rows.stderr
    assert PROMPT in json.loads(rows.stdout)["messages"]
    disks = tracehouse(
        "sql",
        *flags,
        "--format",
        "jsonl",
        "SELECT groupUniqArray(disk_name) AS disks FROM system.parts WHERE active AND database = currentDatabase()",
    )
    assert json.loads(disks.stdout)["disks"] == ["encrypted"]
    scored = tracehouse("sql", *flags, "--format", "jsonl", "SELECT Comment FROM scores")
    assert json.loads(scored.stdout)["Comment"] == COMMENT

    # Without its key, or with another, the data dir is refused, naming why; nothing is opened.
    refused = tracehouse("sql", "--data-dir", str(data), "SELECT 1")
    assert refused.returncode == 2
    assert f"the data in {data} is encrypted: give its keys ([encryption] key_file" in refused.stderr
    other = tracehouse(
        "sql", "--data-dir", str(data), "SELECT 1", env={"TRACEHOUSE_ENCRYPTION_KEY": secrets.token_hex(32)}
    )
    assert other.returncode == 2 and "needs the key(s) with fingerprint" in other.stderr
    assert "not among the 1 key(s) from TRACEHOUSE_ENCRYPTION_KEY" in other.stderr


def test_a_new_key_keeps_old_data_and_old_spool_records_readable(tmp_path, monkeypatch):
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    config = _config(tmp_path, [old])
    monkeypatch.setenv("TRACEHOUSE_CONFIG", str(config))  # for the queries (tracehouse sql)
    data = tmp_path / "data"
    collector = CollectorProcess(data, "--config", str(config)).start()
    try:
        _send(collector, " (stored under the old key)")
        wait_drained(data)
    finally:
        collector.stop()
    # Spans sealed into the spool under the old key while the store is away...
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
        _send(collector, " (spooled under the old key)")
    finally:
        collector.stop()
    # ...then the new key appended: the old data and those records still open, new data goes under the new key.
    _config(tmp_path, [old, new])
    collector = CollectorProcess(data, "--config", str(config)).start()
    try:
        _send(collector, " (under the new key)")
        wait_drained(data)
        time.sleep(0.5)
        wait_drained(data)
        names = sorted(row["name"] for row in sql_rows(data, "SELECT SpanName AS name FROM otel_traces"))
    finally:
        collector.stop()
    assert names == [
        "chat (spooled under the old key)",
        "chat (stored under the old key)",
        "chat (under the new key)",
    ]
    assert len(json.loads((data / "encryption.json").read_text())["fingerprints"]) == 2
    # Dropping the old key while data still needs it is refused, naming the missing key.
    _config(tmp_path, [new])
    refused = tracehouse("sql", "--data-dir", str(data), "--config", str(config), "SELECT 1")
    assert refused.returncode == 2 and "needs the key(s) with fingerprint" in refused.stderr


def test_turning_encryption_on_moves_the_old_parts_onto_the_encrypted_disk(tmp_path):
    data = tmp_path / "data"
    _probe(data, None)
    assert PROBE in _phrases_on_disk(data / "clickhouse")
    config = _config(tmp_path, [secrets.token_hex(32)])
    migrated = tracehouse("migrate", "--data-dir", str(data), "--config", str(config))
    assert migrated.returncode == 0, migrated.stderr
    assert "onto the encrypted disk" in migrated.stderr
    flags = ("--data-dir", str(data), "--config", str(config), "--format", "jsonl")
    assert json.loads(tracehouse("sql", *flags, "SELECT s FROM probe").stdout) == {"s": PROBE}
    parts = tracehouse(
        "sql", *flags, "SELECT disk_name, path FROM system.parts WHERE active AND database = currentDatabase()"
    )
    active = [json.loads(line) for line in parts.stdout.splitlines()]
    assert active and {part["disk_name"] for part in active} == {"encrypted"}
    # The active parts hold no plaintext; the old copies are outdated parts, which the engine deletes
    # within old_parts_lifetime (8 minutes) while a collector runs.
    assert PROBE not in _phrases_on_disk(*(Path(part["path"]) for part in active))
    assert PROBE not in _phrases_on_disk(data / "clickhouse" / "encrypted")


@pytest.mark.parametrize(
    ("keys", "where", "message"),
    [
        (["abc123"], "file", "key 1 must be 64 hex digits (a 256-bit key, e.g. from `openssl rand -hex 32`), got 6"),
        (["z" * 64], "file", "must be 64 hex digits"),
        ([], "file", "no key in it (64 hex digits per line)"),
        (["ab" * 32, "ab" * 32], "file", "the same key is listed twice"),
        (None, "missing", "encryption.key_file"),
        (["ab" * 32], "inside", "is inside the data dir: keep the keys elsewhere"),
        (["ab" * 32 + "00"], "env", "TRACEHOUSE_ENCRYPTION_KEY: key 1 must be 64 hex digits"),
    ],
)
def test_bad_encryption_settings_are_refused_naming_the_setting(tmp_path, keys, where, message):
    data = tmp_path / "data"
    data.mkdir()
    env: dict[str, str] = {}
    args = ["migrate", "--data-dir", str(data)]
    if where == "env":
        env["TRACEHOUSE_ENCRYPTION_KEY"] = ",".join(keys)
    else:
        key_file = (data if where == "inside" else tmp_path) / "tracehouse.key"
        if keys is not None:
            key_file.write_text("\n".join(keys) + "\n")
        config = tmp_path / "tracehouse.toml"
        config.write_text(f'[encryption]\nkey_file = "{key_file}"\n')
        args += ["--config", str(config)]
    result = tracehouse(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (data / "clickhouse").exists()  # nothing was opened or created


def test_the_readme_encryption_example_runs_as_written(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("<!-- encryption-example -->\n```toml\n", 1)[1].split("```", 1)[0]
    key_file = tmp_path / "keys"
    key_file.write_text(secrets.token_hex(32) + "\n")
    config = tmp_path / "tracehouse.toml"
    config.write_text(example.replace("/etc/tracehouse/keys", str(key_file)))
    data = tmp_path / "data"
    assert tracehouse("migrate", "--data-dir", str(data), "--config", str(config)).returncode == 0
    disks = tracehouse(
        "sql",
        "--data-dir",
        str(data),
        "--config",
        str(config),
        "--format",
        "jsonl",
        "SELECT groupUniqArray(disk_name) AS disks FROM system.parts WHERE active AND database = currentDatabase()",
    )
    assert disks.returncode == 0, disks.stderr
    assert json.loads(disks.stdout)["disks"] == ["encrypted"]
