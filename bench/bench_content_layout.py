"""Content stored once? (issue 19) Bytes on disk, insert CPU and query cost of each copy of a prompt.

    .venv/bin/python bench/bench_content_layout.py [--spans 20480] [--prompt 1024] [--repeat 3] [--only a,b]

An OpenInference LLM span holds its prompt three times: `input.value` (the request JSON), the flattened
`llm.input_messages.*` keys (both in SpanAttributes), and the typed InputMessages column; likewise the answer
(output.value, llm.output_messages.*, OutputMessages). The attribute maps also carry bloom-filter skip
indexes (schema/0001_otel_traces.sql, the OTel exporter's) and the content columns have codecs
(schema/0009_content_codecs.sql). This bench loads the same spans, through the real pipeline stages
(decode, normalize, price, sample, redact, encode: the rows the collector writes), into one fresh migrated
chDB store per variant and run, each in its own process (chDB opens one store per process):

  a  today
  b  SpanAttributes without the flattened message keys (llm.input_messages.*, llm.output_messages.*)
  c  SpanAttributes without input.value / output.value
  d  no bloom-filter indexes on the attribute maps (keys and values, span and resource)
  d2 no bloom-filter index on mapValues(SpanAttributes) only
  e1 ZSTD(3) on SpanAttributes and the content columns (InputMessages, OutputMessages, ...)
  e4 ZSTD(2) on the same
  e2 ZSTD(6) on the same
  e3 ZSTD(3) on SpanAttributes only
  and some combinations (b+d2, b+e3, ...);
  f  the collector's own `[content_copies] raw_messages = "drop"` (its pipeline run apart: the CPU of both
     pipelines, default and f, is printed first).

For each it prints bytes per span of otel_traces from system.parts (data_compressed_bytes, bytes_on_disk,
and all tables with the materialized views' targets) as loaded and after OPTIMIZE FINAL, the bytes of
SpanAttributes / InputMessages / OutputMessages / the map skip indexes, the ClickHouse insert CPU µs per
span (this process's CPU seconds, the embedded ClickHouse's threads included, best of --repeat runs), and
the wall ms of the queries that would use what a variant removes: a prompt search (`SpanAttributes
['input.value'] LIKE`, or InputMessages LIKE where input.value is gone), an exact attribute-value lookup that
the map-value bloom filter can skip granules for, and the Grafana trace view's query (dashboards/queries.py
trace_spans) of one trace. Bytes are deterministic; CPU and wall figures are noisy on a shared machine.
The variants' ALTERs are experiments on scratch stores, not schema: a layout that is kept becomes a
numbered migration in schema/.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fnmatch import fnmatchcase
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

WORDS = "the quick brown fox jumps over a lazy dog while models answer questions about invoices and code".split()
SPANS_PER_TRACE = 8
INSERT_ROWS = 10_240  # what the drainer inserts at a time from a full spool (20 requests of 512 spans)
FLAT_KEYS = ("llm.input_messages.*", "llm.output_messages.*")
VALUE_KEYS = ("input.value", "output.value")
CONTENT_CODEC_COLUMNS = ("InputMessages", "OutputMessages", "SystemPrompt", "Tools", "ToolCalls")
MAP_INDEXES = ("idx_res_attr_key", "idx_res_attr_value", "idx_span_attr_key", "idx_span_attr_value")


def _codec(columns: tuple[str, ...], level: int) -> list[str]:
    types = {"SpanAttributes": "Map(LowCardinality(String), String)"}
    return [f"ALTER TABLE otel_traces MODIFY COLUMN {c} {types.get(c, 'String')} CODEC(ZSTD({level}))" for c in columns]


# The pipeline itself with `[content_copies] raw_messages = "drop"` (collector/stages/content_copies.py): the
# typed columns as the one copy of a span's messages, where they hold them whole.
STORED_ONCE = "[content_copies] raw_messages=drop"

# name -> (what it is, attribute globs dropped from SpanAttributes, ALTERs after the migrations)
VARIANTS: dict[str, tuple[str, tuple[str, ...], list[str]]] = {
    "a": ("today", (), []),
    "b": ("no flattened message keys", FLAT_KEYS, []),
    "c": ("no input.value/output.value", VALUE_KEYS, []),
    "d": ("no map bloom filters", (), [f"ALTER TABLE otel_traces DROP INDEX {i}" for i in MAP_INDEXES]),
    "d2": ("no mapValues(SpanAttributes) bloom", (), ["ALTER TABLE otel_traces DROP INDEX idx_span_attr_value"]),
    "e1": ("ZSTD(3) maps+content", (), _codec(("SpanAttributes", *CONTENT_CODEC_COLUMNS), 3)),
    "e4": ("ZSTD(2) maps+content", (), _codec(("SpanAttributes", *CONTENT_CODEC_COLUMNS), 2)),
    "e2": ("ZSTD(6) maps+content", (), _codec(("SpanAttributes", *CONTENT_CODEC_COLUMNS), 6)),
    "e3": ("ZSTD(3) SpanAttributes", (), _codec(("SpanAttributes",), 3)),
    "b+c": ("no flattened, no *.value", FLAT_KEYS + VALUE_KEYS, []),
    "b+d2": ("no flattened, no value bloom", FLAT_KEYS, ["ALTER TABLE otel_traces DROP INDEX idx_span_attr_value"]),
    "b+e3": ("no flattened, ZSTD(3) attrs", FLAT_KEYS, _codec(("SpanAttributes",), 3)),
    "f": ("raw_messages = drop", (STORED_ONCE,), []),
}


def _text(rng: random.Random, size: int, words: list[str] = WORDS) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def vocabulary(size: int) -> list[str]:
    """bench_ingest.py's 17 words (size 0), or `size` pseudo-words: text closer to real prose's entropy."""
    if not size:
        return WORDS
    rng = random.Random(3)
    return ["".join(rng.choice("etaoinshrdlucmfwypvbgk") for _ in range(rng.randint(2, 9))) for _ in range(size)]


def llm_request(rng: random.Random, spans: int, prompt_size: int, first: int, words: list[str] = WORDS) -> bytes:
    """bench_ingest.py's OpenInference LLM span with ~prompt_size prompts and answers, a system message, and
    SPANS_PER_TRACE spans per trace (the trace view query reads a whole trace)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in (("service.name", "bench-app"), ("telemetry.sdk.language", "python")):
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    ss = rs.scope_spans.add()
    ss.scope.name = "openinference.instrumentation.openai"
    now = 1_764_800_000_000_000_000 + first * 1_000_000
    system = "You are the support assistant of ACME. Answer briefly and cite the invoice number."
    trace_id = b""
    for i in range(spans):
        if (first + i) % SPANS_PER_TRACE == 0 or not trace_id:
            trace_id = rng.randbytes(16)
        span = ss.spans.add()
        span.trace_id, span.span_id, span.parent_span_id = trace_id, rng.randbytes(8), rng.randbytes(8)
        span.name, span.kind = "ChatCompletion", 1
        span.start_time_unix_nano = now + i * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(200, 5000) * 1_000_000
        prompt, answer = _text(rng, prompt_size, words), _text(rng, prompt_size, words)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.invocation_parameters": '{"temperature": 0.2, "max_tokens": 512}',
            "input.value": json.dumps({"model": "gpt-4o-mini", "messages": messages}),
            "input.mime_type": "application/json",
            "output.value": answer,
            "output.mime_type": "text/plain",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": system,
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": prompt,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": answer,
            "session.id": f"session-{rng.randint(1, 500)}",
            "user.id": f"user-{rng.randint(1, 2000)}",
        }
        for key, value in attributes.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        for key, value in (("llm.token_count.prompt", 300), ("llm.token_count.completion", 250)):
            kv = span.attributes.add()
            kv.key, kv.value.int_value = key, value
    return request.SerializeToString()


def prepare(spans: int, prompt_size: int, words: int, scratch: Path) -> dict[str, float]:
    """Run the pipeline once, then write each key-dropping variant's encoded rows (header line, payload);
    returns the encode-side CPU µs/span of dropping the keys, per variant."""
    from tracehouse.collector.batch import SpanBatch
    from tracehouse.collector.config import Config, parse_config
    from tracehouse.collector.processing import encode_rows, process_batch
    from tracehouse.collector.stages import default_stages
    from tracehouse.collector.stages.decode import decode_request, parse_request

    rng = random.Random(7)
    vocab = vocabulary(words)
    bodies = [llm_request(rng, min(512, spans - first), prompt_size, first, vocab) for first in range(0, spans, 512)]
    runs: dict[str, list[SpanBatch]] = {}
    drop_cost: dict[str, float] = {}
    for label, config in (("", Config()), (STORED_ONCE, parse_config({"content_copies": {"raw_messages": "drop"}}))):
        stages = default_stages(config)
        gc.collect()
        gc.freeze()  # the batches of the run before stay alive: the collector's own heap holds one request
        cpu = time.process_time()
        runs[label] = [process_batch(stages, decode_request(parse_request(body, False)).batch, None) for body in bodies]
        drop_cost[f"pipeline {label or 'default'}"] = (time.process_time() - cpu) / spans * 1e6
    for dropped in sorted({keys for _, keys, _ in VARIANTS.values()}):
        batches = runs[STORED_ONCE] if dropped == (STORED_ONCE,) else runs[""]
        cpu = time.process_time()
        headers, payloads = set(), []
        cache: dict[str, bool] = {}
        for batch in batches:
            columns = dict(batch.columns)
            if dropped and dropped != (STORED_ONCE,):
                columns["SpanAttributes"] = [
                    {k: v for k, v in attrs.items() if not cache.setdefault(k, any(fnmatchcase(k, g) for g in dropped))}
                    for attrs in columns["SpanAttributes"]
                ]
            header, payload = encode_rows(SpanBatch(columns))
            headers.add(header)
            payloads.append(payload)
        drop_cost[",".join(dropped)] = (time.process_time() - cpu) / spans * 1e6
        assert len(headers) == 1
        _rows_file(scratch, dropped).write_bytes(headers.pop() + b"\n" + b"".join(payloads))
    return drop_cost


def _rows_file(scratch: Path, dropped: tuple[str, ...]) -> Path:
    return scratch / f"rows-{'-'.join(dropped).replace('*', 'x') or 'all'}.bin"


def run_variant(name: str, spans: int, scratch: Path) -> dict:
    """In its own process: a fresh migrated store, the variant's ALTERs, the inserts (CPU timed), the sizes
    as loaded and merged, the queries."""
    from tracehouse.collector import store
    from tracehouse.collector.processing import INSERT_FORMAT
    from tracehouse.dashboards.queries import trace_spans

    _, dropped, alters = VARIANTS[name]
    header, _, block = _rows_file(scratch, dropped).read_bytes().partition(b"\n")
    lines = block.splitlines(keepends=True)
    path = Path(tempfile.mkdtemp(prefix=f"content-layout-{name}-", dir=scratch))
    client = store.connect(f"chdb://{path}")
    store.migrate(client)
    for statement in alters:
        client.command(statement)
    insert = 0.0
    for i in range(0, len(lines), INSERT_ROWS):
        chunk = b"".join(lines[i : i + INSERT_ROWS])
        cpu = time.process_time()
        client.raw_insert(
            "otel_traces",
            column_names=header.decode().split(","),
            insert_block=chunk,
            settings={"insert_deduplication_token": f"bench-{i}", "max_partitions_per_insert_block": 0},
            fmt=INSERT_FORMAT,
        )
        insert += time.process_time() - cpu
    out: dict = {"insert_us": insert / spans * 1e6}
    for stage in ("loaded", "merged"):
        if stage == "merged":
            cpu = time.process_time()
            for table in ("otel_traces", "otel_traces_trace_id_ts", "llm_daily", "prompt_observations"):
                client.command(f"OPTIMIZE TABLE {table} FINAL")
            out["merge_us"] = (time.process_time() - cpu) / spans * 1e6
        compressed, on_disk = client.query(
            "SELECT sum(data_compressed_bytes), sum(bytes_on_disk) FROM system.parts "
            "WHERE active AND database = currentDatabase() AND table = 'otel_traces'"
        ).result_rows[0]
        everything = client.query(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase()"
        ).result_rows[0][0]
        columns = dict(
            client.query(
                "SELECT column, sum(column_data_compressed_bytes) FROM system.parts_columns WHERE active "
                "AND database = currentDatabase() AND table = 'otel_traces' GROUP BY column"
            ).result_rows
        )
        indexes = dict(
            client.query(
                "SELECT name, data_compressed_bytes FROM system.data_skipping_indices "
                "WHERE database = currentDatabase() AND table = 'otel_traces'"
            ).result_rows
        )
        out[stage] = {
            "compressed": compressed / spans,
            "on_disk": on_disk / spans,
            "all_tables": everything / spans,
            "SpanAttributes": columns.get("SpanAttributes", 0) / spans,
            "InputMessages": columns.get("InputMessages", 0) / spans,
            "OutputMessages": columns.get("OutputMessages", 0) / spans,
            "map_indexes": sum(indexes.get(i, 0) for i in MAP_INDEXES) / spans,
        }
    trace = client.query("SELECT any(TraceId) FROM otel_traces WHERE SpanAttributes['user.id'] = 'user-7'")
    trace_id = trace.result_rows[0][0]
    search = "InputMessages" if {"input.value", STORED_ONCE} & set(dropped) else "SpanAttributes['input.value']"
    queries = {
        "search": f"SELECT count() FROM otel_traces WHERE {search} LIKE '%invoices about code while%'",
        "lookup": "SELECT count() FROM otel_traces WHERE SpanAttributes['user.id'] = 'user-absent'",
        "trace": trace_spans(f"'{trace_id}'"),
    }
    for label, query in queries.items():
        walls = []
        for _ in range(5):
            wall = time.perf_counter()
            rows = client.query(query).result_rows
            walls.append(time.perf_counter() - wall)
        out[label + "_ms"] = min(walls) * 1e3
        if label == "trace":
            assert len(rows) == SPANS_PER_TRACE, rows
            tags = {tag["key"] for tag in rows[0][7]}
            out["trace_tags"] = len(tags)
    client.close()
    shutil.rmtree(path, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_480)
    parser.add_argument("--prompt", type=int, default=1024, help="characters of each prompt and answer")
    parser.add_argument("--words", type=int, default=0, help="vocabulary size (0: bench_ingest.py's 17 words)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.spans, Path(args.scratch))))
        return
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-content-layout-"))
    try:
        drop = prepare(args.spans, args.prompt, args.words, scratch)
        costs = ", ".join(f"{key or 'nothing'} {cpu:.1f}" for key, cpu in drop.items())
        print(
            f"{args.spans:,} OpenInference LLM spans, ~{args.prompt} B prompt + answer "
            f"({args.words or len(WORDS)}-word vocabulary), through the pipeline; dropping the keys and encoding: "
            f"{costs} µs/span; best of {args.repeat} runs "
            "(CPU and ms: shared 2-core machine, noisy; bytes deterministic)"
        )
        results: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in names:  # interleaved, so a busy spell of the machine does not land on one variant
                child = subprocess.run(
                    [sys.executable, __file__, "--child", name, "--spans", str(args.spans), "--scratch", str(scratch)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(
            f"{'variant':<6}{'what':<32}{'B/span loaded':>14}{'merged':>8}{'disk':>7}{'all':>6}"
            f"{'attrs':>7}{'in':>5}{'out':>5}{'idx':>5}{'insert µs':>10}{'spread':>7}{'merge µs':>9}"
            f"{'search':>8}{'lookup':>8}{'trace':>7}{'tags':>5}"
        )
        for name in names:
            runs = results[name]
            first = runs[0]
            insert = [r["insert_us"] for r in runs]

            def best(key: str, runs: list[dict] = runs) -> float:
                return min(r[key] for r in runs)

            loaded, merged = first["loaded"], first["merged"]
            print(
                f"{name:<6}{VARIANTS[name][0]:<32}{loaded['compressed']:>14.0f}{merged['compressed']:>8.0f}"
                f"{merged['on_disk']:>7.0f}{merged['all_tables']:>6.0f}{merged['SpanAttributes']:>7.0f}"
                f"{merged['InputMessages']:>5.0f}{merged['OutputMessages']:>5.0f}{merged['map_indexes']:>5.0f}"
                f"{min(insert):>10.0f}{max(insert) - min(insert):>7.0f}{best('merge_us'):>9.0f}"
                f"{best('search_ms'):>8.1f}{best('lookup_ms'):>8.1f}{best('trace_ms'):>7.1f}{first['trace_tags']:>5}"
            )
        print(
            "B/span: otel_traces data_compressed_bytes per span as loaded and after OPTIMIZE FINAL; disk: its "
            "bytes_on_disk merged (marks, indexes, checksums included); all: every table's bytes_on_disk merged; "
            "attrs/in/out/idx: SpanAttributes, InputMessages, OutputMessages and the map skip indexes, merged. "
            "search/lookup/trace: ms, best of 5 x runs; tags: the trace view's tags on a span."
        )
        spread = statistics.median(
            [max(r["insert_us"] for r in v) - min(r["insert_us"] for r in v) for v in results.values()]
        )
        print(f"median insert-CPU spread across runs: {spread:.0f} µs/span")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
