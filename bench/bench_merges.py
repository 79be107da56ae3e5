"""What an insert costs ClickHouse by its size: CPU per LLM span of the inserts and of every background merge they
cause until the embedded store is idle again, by rows per insert and by the merge selector's base
(`merge_selector_base`; why the drainer lingers, batch_linger_ms).

    .venv/bin/python bench/bench_merges.py [--spans 102400] [--insert-rows 512,5120] [--bases 5,10] [--rounds 1]

A part is merged again each time the merge selector joins it into a bigger one, so a span's bytes are
decompressed, sorted and compressed again once per level: at the writer's small inserts (one 512-span request
each, as the drainer sends them when it keeps up) that is most of ClickHouse's work. A higher base merges more
parts at once and so rewrites each span fewer times, for more parts alive at a time. The rows are
bench/bench_ingest.py's span shape through the default pipeline (every span distinct), made once and inserted,
in the writer's format and sizes, into a fresh migrated chDB store per variant and run, each in its own process
(chDB opens one store per process) with the base set on every table. Printed per variant: the process's CPU
(the embedded ClickHouse's threads included) from the first insert until no merge is seen for 2 s, in µs per
span, the wall time of the inserts, the active parts of otel_traces and their levels (how often its oldest rows
were merged), bytes on disk per span, and a GROUP BY over the table (ms, best of 3) for what the parts cost a
read. CPU, not wall time, is the figure: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

REQUEST_SPANS = 512
QUIET_SECONDS = 2.0


def make_rows(spans: int, path: Path) -> None:
    """The writer's rows for `spans` distinct LLM spans, one encoded request (512 spans) per item."""
    from bench_ingest import llm_request

    from tracehouse.collector.config import Config
    from tracehouse.collector.processing import process_body
    from tracehouse.collector.stages import default_stages

    rng = random.Random(7)
    stages = default_stages(Config())
    requests = [
        process_body(stages, llm_request(rng, REQUEST_SPANS), False, None) for _ in range(spans // REQUEST_SPANS)
    ]
    header = requests[0].header
    assert all(rows.header == header for rows in requests)
    path.write_bytes(pickle.dumps((header.decode().split(","), [rows.payload for rows in requests])))


def run_variant(rows_file: Path, insert_rows: int, base: int) -> dict[str, float | int | list[int]]:
    from tracehouse.collector import store
    from tracehouse.collector.processing import INSERT_FORMAT
    from tracehouse.collector.writer import TRACES_TABLE

    columns, requests = pickle.loads(rows_file.read_bytes())
    per_insert = max(1, insert_rows // REQUEST_SPANS)
    inserts = [b"".join(requests[i : i + per_insert]) for i in range(0, len(requests), per_insert)]
    spans = len(requests) * REQUEST_SPANS
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-merges-"))
    try:
        client = store.connect(f"chdb://{scratch}/clickhouse")
        store.migrate(client)
        tables = [
            row[0]
            for row in client.query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
            ).result_rows
        ]
        for table in tables:
            client.command(f"ALTER TABLE `{table}` MODIFY SETTING merge_selector_base = {base}")
        cpu, wall = time.process_time(), time.perf_counter()
        for i, block in enumerate(inserts):
            client.raw_insert(
                TRACES_TABLE,
                column_names=columns,
                insert_block=block,
                settings={"insert_deduplication_token": f"bench-merges-{i}", "max_partitions_per_insert_block": 0},
                fmt=INSERT_FORMAT,
            )
        insert_wall = time.perf_counter() - wall
        quiet_since = time.perf_counter()
        while time.perf_counter() - quiet_since < QUIET_SECONDS:
            time.sleep(0.25)
            if client.query("SELECT count() FROM system.merges").result_rows[0][0]:
                quiet_since = time.perf_counter()
        total = time.process_time() - cpu  # the quiet wait polls, ~no CPU
        parts, levels, on_disk = client.query(
            "SELECT count(), arraySort(x -> -x, groupArray(level)), sum(bytes_on_disk) FROM system.parts"
            " WHERE active AND database = currentDatabase() AND table = {t:String}",
            parameters={"t": TRACES_TABLE},
        ).result_rows[0]
        reads = []
        for _ in range(3):
            start = time.perf_counter()
            client.query(f"SELECT ServiceName, count(), sum(CostUsd) FROM {TRACES_TABLE} GROUP BY ServiceName")
            reads.append(time.perf_counter() - start)
        client.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "cpu_us": total / spans * 1e6,
        "insert_wall": insert_wall,
        "parts": parts,
        "levels": levels,
        "bytes": on_disk / spans,
        "read_ms": min(reads) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=102_400)
    parser.add_argument("--insert-rows", default="512,5120", help="rows per insert, comma-separated")
    parser.add_argument("--bases", default="5,10", help="merge_selector_base values (5 is ClickHouse's default)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variant", nargs=3, metavar=("ROWS_FILE", "INSERT_ROWS", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        rows_file, insert_rows, base = args.variant
        print(json.dumps(run_variant(Path(rows_file), int(insert_rows), int(base))))
        return
    work = Path(tempfile.mkdtemp(prefix="tracehouse-merges-rows-"))
    try:
        rows_file = work / "rows.pickle"
        start = time.perf_counter()
        make_rows(args.spans, rows_file)
        made = time.perf_counter() - start
        print(f"{args.spans:,} distinct LLM spans through the pipeline in {made:.0f} s", flush=True)
        results: dict[tuple[int, int], list[dict]] = {}
        for _ in range(args.rounds):  # interleaved: a shared machine's noise falls on every variant alike
            for insert_rows in map(int, args.insert_rows.split(",")):
                for base in map(int, args.bases.split(",")):
                    out = subprocess.run(
                        [sys.executable, __file__, "--variant", str(rows_file), str(insert_rows), str(base)],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    result = json.loads(out.splitlines()[-1])
                    results.setdefault((insert_rows, base), []).append(result)
                    print(
                        f"  {insert_rows:>6,}-row inserts, merge_selector_base {base:>2}: "
                        f"{result['cpu_us']:6.0f} µs/span CPU (inserts and merges), inserts"
                        f" {result['insert_wall']:5.1f} s wall, {result['parts']} parts at levels {result['levels']},"
                        f" {result['bytes']:,.0f} B/span,"
                        f" a GROUP BY {result['read_ms']:.1f} ms",
                        flush=True,
                    )
        if args.rounds > 1:
            print("median CPU per span:")
            for (insert_rows, base), runs in results.items():
                median = statistics.median(r["cpu_us"] for r in runs)
                print(f"  {insert_rows:>6,}-row inserts, base {base:>2}: {median:.0f} µs")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
