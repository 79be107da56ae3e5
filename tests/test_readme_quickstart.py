"""The README's first-screen example for someone with no instrumented app: its shell block, as written but for
the collector's port and data dir, sends one LLM call with curl (OTLP/JSON) and reads it back with `tracehouse
sql`, priced from the catalogue and with the e-mail address redacted, as the README says it prints."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from collector_process import CollectorProcess, wait_drained

README = Path(__file__).parent.parent / "README.md"


def _quickstart_block() -> str:
    text = README.read_text()
    start = text.index("No app at hand?")
    match = re.compile(r"```sh\n(.*?)```", re.S).search(text, start)
    assert match is not None, "the quickstart's shell block is missing"
    return match.group(1)


def test_the_readme_quickstart_sends_a_call_and_reads_it_back_priced_and_redacted(tmp_path):
    block = _quickstart_block()
    send, sql_at, query = block.partition(".venv/bin/tracehouse sql")
    assert sql_at, block
    collector = CollectorProcess(tmp_path / "data").start()
    try:
        send = send.replace("http://127.0.0.1:4318", collector.http_endpoint)
        sent = subprocess.run(["bash", "-e", "-c", send], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() in ("{}", '{"partialSuccess":{}}'), sent.stdout  # accepted whole
        wait_drained(collector.data_dir)
        command = f"{shlex.quote(sys.executable)} -m tracehouse.collector sql --data-dir {collector.data_dir}"
        shown = subprocess.run(["bash", "-c", command + query], capture_output=True, text=True, timeout=120)
    finally:
        collector.stop()
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert re.search(r"gpt-4o-mini[\s│]+1200[\s│]+300[\s│]+0\.00036\b", out), out
    assert "[EMAIL]" in out and "jane@example.org" not in out, out
    assert "Reset my password" in out, out
