"""The figures deploy/README.md's capacity arithmetic needs: CPU per span of the collector and of ClickHouse,
bytes per span on disk, on bench/bench_ingest.py's span shape.

    .venv/bin/python bench/bench_capacity.py [bench_ingest.py options, e.g. --spans 100000 --connections 4]
    .venv/bin/python bench/bench_capacity.py --direct [--spans 100000]    # no network, no collector process
    .venv/bin/python bench/bench_capacity.py --no-store [--spans 51200] [--workers 0]

By default it runs bench_ingest.py in this process (its load generator's CPU is this process's own), keeps
its data dir, then prints:
- the collector's CPU seconds (user + system of the `tracehouse serve` process tree, embedded ClickHouse
  included) per 1,000 spans and the spans/s one core sustains at that cost, next to the wall-clock rates;
- with --workers N, that CPU split by process: the worker processes' (parse, decode, stages, encode: what a
  collector core does in any deployment) and the main process's (receive, spool, and here the embedded
  ClickHouse's insert and merges, which a ClickHouse server takes over);
- the bytes on disk per span of otel_traces and of the tables its materialized views fill, from
  system.parts, as loaded and after OPTIMIZE ... FINAL (merged parts, as a store holds them a day later).
--direct splits the work without the collector process: the pipeline (parse, decode, stages, encode) on
bench_ingest.py's requests (every span distinct), then the writer's insert of those rows (format, table, a
token per batch) into a fresh migrated chDB store, then OPTIMIZE FINAL, each timed by this process's CPU
seconds (all its threads, the embedded ClickHouse's included): µs per span for a collector core and for
ClickHouse.
--no-store runs `tracehouse serve` with its ClickHouse URL pointing at a closed port, so it only receives,
processes and spools (acknowledging on fsync, as with a store that is away), and prints its CPU seconds per
span: a collector's own work when ClickHouse runs elsewhere, less the insert's HTTP send. Every request is
distinct; keep --spans under what the spool budget (1 GiB) holds, ~13 KB a span.
CPU time, not wall-clock time, is the per-core figure: the machine may be shared, and CPU seconds are what
another process steals least.
"""

from __future__ import annotations

import argparse
import os
import resource
import runpy
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

# schema/retention.sql's {content} columns.
CONTENT_COLUMNS = {
    "InputMessages", "OutputMessages", "SystemPrompt", "ToolCalls", "PromptTemplate", "PromptVariables",
    "SpanAttributes", "Events.Attributes",
}  # fmt: skip
TABLES = ("otel_traces", "otel_traces_trace_id_ts", "llm_daily", "prompt_observations")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class ProcessCpu:
    """Samples the CPU seconds of the `serve` process this process starts and of its worker processes; a
    process's last sample stands for it once it exits (its workers live as long as it does)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            parents = {os.getpid(), *self.seen}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) not in parents:  # ppid: our child, or a child of one we track
                        continue
                    cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    role = "collector" if " serve " in cmdline else "worker" if "multiprocessing" in cmdline else ""
                    if role:
                        self.seen[int(stat.parent.name)] = (role, (int(fields[11]) + int(fields[12])) / self._tick)
                except (OSError, IndexError, ValueError):
                    continue

    def __enter__(self) -> ProcessCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_role(self, role: str) -> float:
        return sum(cpu for who, cpu in self.seen.values() if who == role)


def direct(spans: int, batch: int) -> None:
    """Pipeline CPU and ClickHouse insert CPU per span, measured apart in this process."""
    sys.path.insert(0, str(Path(__file__).parent))
    import random

    from bench_ingest import llm_request

    from tracehouse.collector import store
    from tracehouse.collector.config import Config
    from tracehouse.collector.processing import INSERT_FORMAT, process_body
    from tracehouse.collector.stages import default_stages
    from tracehouse.collector.writer import TRACES_TABLE

    rng = random.Random(7)
    stages = default_stages(Config())
    process_body(stages, llm_request(rng, batch), False, None)  # warm up (compiled patterns, price catalogue)
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-capacity-"))
    try:
        client = store.connect(f"chdb://{scratch}/clickhouse")
        store.migrate(client)
        # Every span distinct (ids, texts, timestamps): repeated rows would sit side by side in the sorted part
        # and compress to nearly nothing. The drainer inserts what the spool holds, up to batch_max_rows (50,000)
        # a time: 20 requests, 10,240 rows here.
        pipeline = insert = insert_wall = 0.0
        inserts = max(1, spans // (batch * 20))
        for i in range(inserts):
            bodies = [llm_request(rng, batch) for _ in range(20)]
            cpu = time.process_time()
            processed = [process_body(stages, body, False, None) for body in bodies]
            pipeline += time.process_time() - cpu
            header = processed[0].header
            assert all(rows.header == header for rows in processed)
            block = b"".join(rows.payload for rows in processed)
            cpu, wall = time.process_time(), time.perf_counter()
            client.raw_insert(
                TRACES_TABLE,
                column_names=header.decode().split(","),
                insert_block=block,
                settings={"insert_deduplication_token": f"bench-{i}", "max_partitions_per_insert_block": 0},
                fmt=INSERT_FORMAT,
            )
            insert, insert_wall = insert + time.process_time() - cpu, insert_wall + time.perf_counter() - wall
        stored = inserts * batch * 20
        print(
            "pipeline (parse, decode, normalize, price, sample, redact, encode): "
            f"{pipeline / stored * 1e6:.0f} µs/span CPU"
        )
        cpu = time.process_time()
        for name in TABLES:
            client.command(f"OPTIMIZE TABLE {name} FINAL")
        merge = time.process_time() - cpu
        print(
            f"ClickHouse insert of {stored:,} spans ({batch * 20:,}-row inserts, 3 materialized views): "
            f"{insert / stored * 1e6:.0f} µs/span CPU ({insert_wall:.1f}s wall); "
            f"OPTIMIZE FINAL {merge / stored * 1e6:.0f} µs/span CPU"
        )
        client.close()
        _disk(scratch / "clickhouse", stored, optimize=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def no_store(spans: int, batch: int, workers: int, connections: int = 4) -> None:
    """Receive, process and spool only: the collector's CPU per span with no ClickHouse in its process."""
    import json
    import signal
    import subprocess

    import grpc

    sys.path.insert(0, str(Path(__file__).parent))
    import random

    from bench_ingest import EXPORT, llm_request

    # Every request distinct, texts included: the redactor remembers values it found clean (chats resend
    # their history), and bench_ingest.py's 20 requests in a cycle would mostly be skipped.
    rng = random.Random(7)
    payloads = [llm_request(rng, batch) for _ in range(spans // batch)]
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-capacity-"))
    data_dir = scratch / "data"
    environ = dict(os.environ, TRACEHOUSE_CLICKHOUSE_URL="http://127.0.0.1:9/default")  # discard port: closed
    command = [sys.executable, "-m", "tracehouse.collector", "serve", "--data-dir", str(data_dir)]
    command += ["--grpc-port", "0", "--http-port", "0", "--log-level", "ERROR", "--workers", str(workers)]
    collector = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with ProcessCpu() as processes:
            deadline = time.monotonic() + 60
            while not (data_dir / "collector.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            info = json.loads((data_dir / "collector.json").read_text())
            time.sleep(1.0)  # started: its start-up CPU is sampled before the load
            before = processes.by_role("collector") + processes.by_role("worker")
            counter, lock, failures = iter(range(spans // batch)), threading.Lock(), []

            def send() -> None:
                with grpc.insecure_channel(
                    info["grpc_endpoint"], options=[("grpc.max_send_message_length", 64 << 20)]
                ) as channel:
                    export = channel.unary_unary(EXPORT)
                    while True:
                        with lock:
                            i = next(counter, None)
                        if i is None:
                            return
                        try:
                            export(payloads[i])
                        except grpc.RpcError as exc:
                            failures.append(exc.code().name)

            started = time.perf_counter()
            threads = [threading.Thread(target=send) for _ in range(connections)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            time.sleep(0.5)  # a last sample
        used = processes.by_role("collector") + processes.by_role("worker") - before
        sent = spans // batch * batch
        print(
            f"no store, --workers {workers}: {sent:,} spans received, processed and spooled in {wall:.1f}s wall; "
            f"collector CPU {used:.1f}s: {used / sent * 1e6:.0f} µs/span, {sent / used:,.0f} spans/s per core "
            f"(worker processes {processes.by_role('worker'):.1f}s); rejected requests: {len(failures)}"
        )
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(60)
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-capacity-"))
    os.environ["TMPDIR"] = str(scratch)  # bench_ingest.py makes its data dir here (and keeps it: --keep)
    tempfile.tempdir = str(scratch)
    sys.argv = [str(Path(__file__).with_name("bench_ingest.py")), *sys.argv[1:], "--keep"]
    known = argparse.ArgumentParser(add_help=False)
    known.add_argument("--spans", type=int, default=100_000)
    known.add_argument("--batch", type=int, default=512)
    known.add_argument("--direct", action="store_true")
    known.add_argument("--no-store", action="store_true")
    known.add_argument("--workers", type=int, default=0)
    sizes, _ = known.parse_known_args(sys.argv[1:])
    spans = sizes.spans // sizes.batch * sizes.batch  # bench_ingest.py sends whole requests
    if sizes.direct:
        direct(spans, sizes.batch)
        return
    if sizes.no_store:
        no_store(spans, sizes.batch, sizes.workers)
        return
    started, self_before, children_before = time.perf_counter(), _cpu(resource.RUSAGE_SELF), 0.0
    try:
        with ProcessCpu() as processes:
            runpy.run_path(sys.argv[0], run_name="__main__")
        wall = time.perf_counter() - started
        # The collector and the one-shot `tracehouse sql` count: both were waited for.
        collector_cpu = _cpu(resource.RUSAGE_CHILDREN) - children_before
        load_cpu = _cpu(resource.RUSAGE_SELF) - self_before
        (data_dir,) = scratch.glob("tracehouse-bench-*/data")
        # What was stored, not --spans: a --rate run sends what its seconds allow.
        spans = _stored_spans(data_dir / "clickhouse")
        print(
            f"collector CPU {collector_cpu:.1f}s for {spans:,} stored spans: {collector_cpu / spans * 1e6:.0f} µs/span,"
            f" {spans / collector_cpu:,.0f} spans/s per core busy; load generator {load_cpu:.1f}s; "
            f"wall {wall:.1f}s incl. start, drain and count ({spans / wall:,.0f} spans/s)"
        )
        main, workers = processes.by_role("collector"), processes.by_role("worker")
        if workers:
            print(
                f"by process (sampled): collector main process {main:.1f}s ({main / spans * 1e6:.0f} µs/span: receive, "
                f"spool, embedded ClickHouse insert); worker processes {workers:.1f}s ({workers / spans * 1e6:.0f} "
                f"µs/span: parse, decode, stages, encode: {spans / workers:,.0f} spans/s per core)"
            )
        _disk(data_dir / "clickhouse", spans)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stored_spans(path: Path) -> int:
    from tracehouse.collector import store

    client = store.connect(f"chdb://{path}")
    try:
        return int(client.query("SELECT count() FROM otel_traces").result_rows[0][0])
    finally:
        client.close()


def _disk(path: Path, spans: int, optimize: bool = True) -> None:
    from tracehouse.collector import store

    client = store.connect(f"chdb://{path}")
    names = ", ".join(f"'{name}'" for name in TABLES)
    query = (
        "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes), count() FROM system.parts "
        f"WHERE active AND database = currentDatabase() AND table IN ({names}) GROUP BY table ORDER BY table"
    )
    for stage in ("as loaded", "after OPTIMIZE FINAL") if optimize else ("after OPTIMIZE FINAL",):
        if stage != "as loaded" and optimize:
            for name in TABLES:
                client.command(f"OPTIMIZE TABLE {name} FINAL")
        total = 0
        for table, rows, on_disk, uncompressed, parts in client.query(query).result_rows:
            total += on_disk
            print(
                f"  {stage}: {table}: {rows:,} rows, {parts} parts, {on_disk / 1e6:.1f} MB on disk "
                f"({uncompressed / 1e6:.1f} MB uncompressed)"
            )
        print(f"{stage}: {total / spans:,.0f} bytes on disk per span (these tables together)")
    by_column = client.query(
        "SELECT column, sum(column_data_compressed_bytes) AS bytes FROM system.parts_columns "
        "WHERE active AND database = currentDatabase() AND table = 'otel_traces' GROUP BY column ORDER BY bytes DESC"
    ).result_rows
    content = sum(n for column, n in by_column if column in CONTENT_COLUMNS)
    print(
        f"otel_traces by column, bytes per span: {', '.join(f'{c} {n / spans:,.0f}' for c, n in by_column[:8])}; "
        f"content columns (what content retention expires) {content / spans:,.0f}, the rest "
        f"{(sum(n for _, n in by_column) - content) / spans:,.0f}"
    )
    client.close()


if __name__ == "__main__":
    main()
