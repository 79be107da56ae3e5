"""Where the collector's memory goes while it stores LLM spans: the writer's own insert path (TraceStore, the
store's engine options and insert settings) in this process, on the same spans as bench_ingest.py.

    .venv/bin/python bench/bench_memory.py [--spans 50000] [--batch-mib 64] [--option name=value ...]
                                           [--setting name=value ...]

Requests of 512 LLM spans go through the default stages once (20 distinct ones, each copy made distinct by its
request mark, as bench_ingest.py does); their encoded records are joined into inserts of at most --batch-mib, as
the spool drainer does, and inserted one after another through `writer.TraceStore` (so the engine options and
insert settings that collector/store.py and writer.py apply are the ones measured). `--option` adds a chDB engine
option (a server setting such as mark_cache_size), `--setting` an insert setting, to compare levers.

Prints RSS from /proc/self/status (anonymous, file-backed, shared) after the imports, with the store open and
idle, at the peak while inserting (sampled every 20 ms) and idle after; chDB's own accounting (MemoryTracking,
jemalloc, the caches, primary keys, merges); the insert rate in rows/s. This process is not `tracehouse serve`
(no gRPC, spool or pipeline), so absolute figures are lower than bench_scale.py's; the differences between levers
are what it is for.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import MARK, llm_request  # noqa: E402

from tracehouse.collector import store, writer  # noqa: E402
from tracehouse.collector.config import load_config  # noqa: E402
from tracehouse.collector.processing import process_body  # noqa: E402
from tracehouse.collector.stages import default_stages  # noqa: E402

MIB = 2**20
_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def rss() -> dict[str, int]:
    """This process's RSS and its parts, in bytes."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in _FIELDS:
            found[name] = int(value.split()[0]) * 1024
    return found


def show(label: str, figures: dict[str, int]) -> None:
    parts = ", ".join(f"{name} {figures[name] / MIB:,.0f}" for name in _FIELDS)
    print(f"{label:<28} MiB: {parts}")


def anonymous() -> str:
    """The anonymous resident memory by kind of mapping: the [heap] (glibc: Python's objects), 64 MiB-aligned
    jemalloc-sized regions and thread stacks are told apart by size only, roughly."""
    kinds: dict[str, int] = {}
    name = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and not line.startswith(("Rss", "Size")):
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5] if len(fields) > 5 else ""
            size = end - start
            if path == "[heap]":
                name = "[heap]"
            elif path.startswith("["):
                name = path
            elif path:
                name = ""
            else:
                name = "anon >= 8 MiB" if size >= 8 * MIB else "anon < 8 MiB"
        elif line.startswith("Rss:") and name:
            kinds[name] = kinds.get(name, 0) + int(line.split()[1]) * 1024
    return ", ".join(f"{k} {v / MIB:,.0f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]) if v >= MIB)


class Peak:
    """The sample with the largest VmRSS, taken every 20 ms while the block runs, and the largest MemoryTracking
    (what chDB's allocations add up to) read through a second client on the same engine."""

    def __init__(self, client) -> None:
        self.peak = rss()
        self.tracked = self.merges = self.inserts = 0
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = rss()
            if now["VmRSS"] > self.peak["VmRSS"]:
                self.peak = now
            ((tracked, merges, inserts),) = self._client.query(
                "SELECT (SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'), "
                "(SELECT sum(memory_usage) FROM system.merges), "
                "(SELECT max(peak_memory_usage) FROM system.processes WHERE query_kind = 'Insert')"
            ).result_rows
            self.tracked = max(self.tracked, tracked)
            self.merges = max(self.merges, merges)
            self.inserts = max(self.inserts, inserts or 0)


_JEMALLOC = re.compile(
    r"Allocated: (\d+), active: (\d+), metadata: (\d+).*?resident: (\d+), mapped: (\d+), retained: (\d+)"
)
_METRICS = (
    "MemoryTracking",
    "MergesMutationsMemoryTracking",
    "MarkCacheBytes",
    "UncompressedCacheBytes",
    "PrimaryIndexCacheBytes",
    "IndexMarkCacheBytes",
    "QueryCacheBytes",
    "QueryConditionCacheBytes",
)


def engine_figures(client) -> list[tuple[str, float]]:
    """chDB's own accounting, in MiB (clickhouse-local has no system.asynchronous_metrics)."""
    rows = dict(
        client.query(
            "SELECT metric, value FROM system.metrics WHERE metric IN {names:Array(String)}",
            parameters={"names": list(_METRICS)},
        ).result_rows
    )
    figures = [(name, rows.get(name, float("nan")) / MIB) for name in _METRICS]
    text = client.query("SELECT stats FROM system.jemalloc_stats").result_rows[0][0]
    if found := _JEMALLOC.search(text):
        for name, value in zip(
            ("allocated", "active", "metadata", "resident", "mapped", "retained"), found.groups(), strict=True
        ):
            figures.append((f"jemalloc {name}", int(value) / MIB))
    keys = client.query(
        "SELECT sum(primary_key_bytes_in_memory_allocated), count() FROM system.parts WHERE active"
    ).result_rows
    figures.append((f"primary keys ({keys[0][1]} parts)", keys[0][0] / MIB))
    merges = client.query("SELECT sum(memory_usage), count() FROM system.merges").result_rows
    figures.append((f"merges ({merges[0][1]} running)", merges[0][0] / MIB))
    return figures


def records(distinct: int = 4) -> tuple[bytes, list[bytes]]:
    """The header and `distinct` encoded records of 512-span requests (copies are made distinct in inserts)."""
    config = load_config(None, {})
    stages = default_stages(config)
    rng = random.Random(7)
    encoded = [process_body(stages, llm_request(rng, 512), False, None) for _ in range(distinct)]
    return encoded[0].header, [e.payload for e in encoded]


def inserts(spans: int, payloads: list[bytes], cap: int) -> list[list[int]]:
    """Request numbers grouped as the drainer groups records: an insert ends before the record that would pass
    `cap` (every record has the size of the first)."""
    per_insert = max(1, cap // len(payloads[0]))
    numbers = list(range(spans // 512))
    return [numbers[i : i + per_insert] for i in range(0, len(numbers), per_insert)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--batch-mib", type=float, default=64)
    parser.add_argument("--option", action="append", default=[], help="chDB engine option name=value")
    parser.add_argument("--setting", action="append", default=[], help="insert setting name=value")
    args = parser.parse_args()

    show("after imports", rss())
    header, payloads = records()
    show("stages loaded, 4 records", rss())
    groups = inserts(args.spans, payloads, int(args.batch_mib * MIB))
    print(f"{args.spans // 512} records of {len(payloads[0]) / MIB:.1f} MiB in {len(groups)} inserts")
    mark = MARK.encode()
    extra = dict(option.partition("=")[::2] for option in args.option)
    get_client = store.clickhouse_connect.get_client

    def with_options(**kwargs):  # the store's own options, then the lever's
        kwargs["chdb_options"] = {**kwargs.get("chdb_options", {}), **extra}
        return get_client(**kwargs)

    if extra:
        store.clickhouse_connect.get_client = with_options
    for setting in args.setting:
        name, _, value = setting.partition("=")
        writer._INSERT_SETTINGS[name] = value

    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-memory-"))
    try:
        url = f"chdb://{scratch / 'clickhouse'}"
        trace_store = writer.TraceStore(url)
        client = trace_store.ensure_ready()
        sampler = store.connect(url)
        time.sleep(1)
        show("store open, idle", rss())
        print(f"{'':<28} anonymous mappings: {anonymous()}")
        rows = 0
        started = time.perf_counter()
        with Peak(sampler) as peak:
            for n, group in enumerate(groups):
                payload = b"".join(
                    payloads[i % len(payloads)].replace(mark, f"request-{i:012d}".encode()) for i in group
                )
                trace_store.insert(header, payload, f"bench-memory-{n}")
                rows += payload.count(b"\n")
                del payload
        elapsed = time.perf_counter() - started
        show("peak while inserting", peak.peak)
        print(
            f"{'':<28} chDB MemoryTracking at most {peak.tracked / MIB:,.0f} MiB, merges at most "
            f"{peak.merges / MIB:,.0f} MiB together, an insert's peak at most {peak.inserts / MIB:,.0f} MiB"
        )
        print(f"inserted {rows:,} rows in {elapsed:.1f}s: {rows / elapsed:,.0f} rows/s")
        for name, value in engine_figures(client):
            print(f"  engine after the inserts  {name:<32} {value:8,.1f} MiB")
        time.sleep(5)
        show("idle 5 s after", rss())
        trace_store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
