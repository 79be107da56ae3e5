"""Export rate: `tracehouse export` of N stored LLM calls to every format, rows/s.

A fresh embedded store (a data dir of its own) gets N synthetic LLM calls straight from SQL, as the other
bench scripts load theirs: a system prompt, a user message and a tool result in InputMessages, an assistant
answer (every fifth one a tool call) in OutputMessages, 3 tenants, 10 features, 3 models over 30 days. Then
`tracehouse export` runs as a user runs it (a subprocess, no collector: it opens the store itself) once per
format, and the rate printed is calls written per second of the whole command, start-up included.

    .venv/bin/python bench/bench_export.py [--calls 1000000] [--formats jsonl,csv,parquet,openai-chat]

1M calls take about 4 minutes on 2 shared cores: loading 10 s, then (measured, rows/s of the whole command)
jsonl 32k (1.5 GB), csv 29k, parquet 91k (one query), openai-chat 17.5k and openai-eval 10k (both built in
Python from JSONEachRow pages; eval reads llm_calls_scored, with its score and review joins).
--calls 100000 runs in well under a minute; its rates are lower, process start-up weighs more.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracehouse.collector import store

FORMATS = ("jsonl", "csv", "parquet", "openai-chat", "openai-eval")

CALLS = r"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration,
    StatusCode, LlmSpanKind, LlmProvider, LlmRequestModel, TenantId, Feature, InputTokens, OutputTokens,
    CostUsd, CostSource, SystemPrompt, InputMessages, OutputMessages, ToolCalls, FinishReason)
SELECT
    now64(9) - toIntervalSecond(number % (30 * 86400)) - toIntervalNanosecond(number),
    leftPad(lower(hex(intDiv(number, 4) + 1)), 32, '0'),
    leftPad(lower(hex(number + 1)), 16, '0'),
    '', 'chat', 'Client', 'bench-app', 200000000 + number % 3000000000, 'Unset', 'LLM', 'openai',
    ['gpt-4o-mini', 'gpt-4o', 'o3-mini'][1 + number % 3],
    concat('tenant-', toString(number % 3)), concat('feature-', toString(number % 10)),
    500 + number % 1000, 50 + number % 300, toDecimal128((500 + number % 1000) * 0.00000015, 12), 'catalogue',
    'You are a support assistant for an online shop. Answer briefly and politely.',
    concat('[{"role":"user","content":[{"type":"text","text":"Where is my order ', toString(number),
        '? It was due yesterday and the tracking page says nothing."}]}]'),
    if(number % 5 = 0,
        concat('[{"role":"assistant","content":[],"tool_calls":[{"id":"call_', toString(number),
            '","name":"lookup_order","arguments":{"order":', toString(number), '}}]}]'),
        concat('[{"role":"assistant","content":[{"type":"text","text":"Order ', toString(number),
            ' left the warehouse this morning and arrives tomorrow before noon."}]}]')),
    if(number % 5 = 0,
        concat('[{"id":"call_', toString(number), '","name":"lookup_order","arguments":{"order":',
            toString(number), '}}]'), ''),
    if(number % 5 = 0, 'tool_calls', 'stop')
FROM numbers({calls})
"""


def load(data_dir: Path, calls: int) -> float:
    client = store.connect(f"chdb://{data_dir / 'clickhouse'}")
    try:
        store.migrate(client)
        started = time.perf_counter()
        client.command(CALLS.replace("{calls}", str(calls)))
        client.command("OPTIMIZE TABLE otel_traces FINAL")
        return time.perf_counter() - started
    finally:
        client.close()


def export(data_dir: Path, fmt: str, out: Path, calls: int) -> float:
    command = [
        sys.executable,
        "-m",
        "tracehouse.collector",
        "export",
        "--data-dir",
        str(data_dir),
        "--since",
        "60d",
        "--format",
        fmt,
        "--out",
        str(out),
        # parquet is one query: room for the whole result
        "--query-max-result-rows",
        str(max(calls, 1_000_000)),
        "--query-max-result-bytes",
        str(4 << 30),
        "--query-max-execution-seconds",
        "600",
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"export --format {fmt} failed: {result.stderr.strip()}")
    expected = f"exported {calls} calls to {out}"
    if expected not in result.stderr:
        raise SystemExit(f"export --format {fmt}: expected {expected!r}, got {result.stderr.strip()!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, of " + ", ".join(FORMATS))
    args = parser.parse_args()
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        data_dir = Path(tmp) / "data"
        loaded = load(data_dir, args.calls)
        print(f"store: {args.calls} LLM calls, loaded in {loaded:.1f}s")
        print(f"{'format':<12} {'seconds':>8} {'rows/s':>10} {'file MB':>8}")
        for fmt in formats:
            out = Path(tmp) / f"export.{fmt}"
            elapsed = export(data_dir, fmt, out, args.calls)
            size = out.stat().st_size / 1e6
            print(f"{fmt:<12} {elapsed:>8.1f} {args.calls / elapsed:>10.0f} {size:>8.1f}")
            out.unlink()


if __name__ == "__main__":
    main()
