"""Where ClickHouse's insert CPU goes: the writer's insert of LLM rows with each skip index and each
materialized view of otel_traces taken away in turn, on copies of the table in one scratch chDB store.

    .venv/bin/python bench/bench_insert_cost.py [--inserts 3] [--rounds 3] [--batch 512]

The rows are bench/bench_ingest.py's span shape through the default pipeline (every span distinct), 20 requests
(10,240 rows) per insert as the drainer sends them, in the writer's format. Each variant is a fresh copy of
otel_traces (`CREATE TABLE ... AS otel_traces`: its columns, codecs, MATERIALIZED columns and indexes) with one
change, and gets the same inserts; its cost is this process's CPU time during the inserts (the embedded
ClickHouse's threads included), in µs per span. The variants run interleaved, round after round, so a shared
machine's noise falls on all of them alike; printed: the best round and the spread. The variants:
- the table as migrated, with none of the materialized views (they read otel_traces, not the copy);
- without each skip index, and without all of them;
- the table with one materialized view of schema/views/ attached to the copy (the view's own cost is the
  difference from the table alone);
- every ZSTD(1) codec replaced by LZ4 (CPU against bytes on disk);
- a Null-engine table of the same columns: parsing the rows and nothing stored.
Merges are stopped on the copy and not counted (see bench/bench_capacity.py --direct for OPTIMIZE FINAL).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_ingest import llm_request  # noqa: E402

from tracehouse.collector import store  # noqa: E402
from tracehouse.collector.config import Config  # noqa: E402
from tracehouse.collector.processing import INSERT_FORMAT, process_body  # noqa: E402
from tracehouse.collector.stages import default_stages  # noqa: E402
from tracehouse.collector.writer import TRACES_TABLE  # noqa: E402

VIEWS = Path(store.__file__).resolve().parents[1] / "schema" / "views"
COPY = "bench_insert_copy"
COPY_VIEW = "bench_insert_copy_mv"


def blocks(inserts: int, batch: int) -> tuple[list[str], list[bytes]]:
    rng = random.Random(7)
    stages = default_stages(Config())
    header, out = None, []
    for _ in range(inserts):
        processed = [process_body(stages, llm_request(rng, batch), False, None) for _ in range(20)]
        header = processed[0].header
        assert all(rows.header == header for rows in processed)
        out.append(b"".join(rows.payload for rows in processed))
    return header.decode().split(","), out


def materialized_views() -> dict[str, str]:
    """The views of otel_traces in schema/views/, each as DDL that reads the copy instead."""
    views = {}
    for path in sorted(VIEWS.glob("*_mv.sql")):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        if not re.search(r"\bFROM otel_traces\b", text):
            continue
        text = re.sub(r"\bFROM otel_traces\b", f"FROM {COPY}", text)
        text = re.sub(r"VIEW IF NOT EXISTS \w+", f"VIEW {COPY_VIEW}", text)
        views[path.stem] = text
    return views


def _codecs(client) -> list[tuple[str, str]]:
    """otel_traces' columns compressed with ZSTD(1), and their codec chains."""
    rows = client.query(
        "SELECT name, compression_codec FROM system.columns"
        " WHERE database = currentDatabase() AND table = {t:String} AND compression_codec LIKE '%ZSTD(1)%'",
        parameters={"t": TRACES_TABLE},
    ).result_rows
    return [(name, codec.removeprefix("CODEC(").removesuffix(")")) for name, codec in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inserts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    columns, payloads = blocks(args.inserts, args.batch)
    spans = args.inserts * args.batch * 20
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-insert-cost-"))
    try:
        client = store.connect(f"chdb://{scratch}/clickhouse")
        store.migrate(client)
        indexes = [
            row[0]
            for row in client.query(
                "SELECT name FROM system.data_skipping_indices"
                " WHERE database = currentDatabase() AND table = {t:String}",
                parameters={"t": TRACES_TABLE},
            ).result_rows
        ]
        variants: dict[str, list[str]] = {"table alone (no views)": []}
        for name in indexes:
            variants[f"without index {name}"] = [f"ALTER TABLE {COPY} DROP INDEX {name}"]
        variants["without every skip index"] = [f"ALTER TABLE {COPY} DROP INDEX {name}" for name in indexes]
        for name, ddl in materialized_views().items():
            variants[f"with view {name}"] = [ddl]
        variants["LZ4 instead of ZSTD(1) on every column"] = [
            f"ALTER TABLE {COPY} MODIFY COLUMN `{name}` CODEC({codec.replace('ZSTD(1)', 'LZ4')})"
            for name, codec in _codecs(client)
        ]
        variants["Null engine (parse only)"] = []
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, changes in variants.items():
                client.command(f"DROP VIEW IF EXISTS {COPY_VIEW}")
                client.command(f"DROP TABLE IF EXISTS {COPY}")
                engine = " ENGINE = Null" if name.startswith("Null") else ""
                if engine:
                    client.command(f"CREATE TABLE {COPY} ENGINE = Null AS SELECT * FROM {TRACES_TABLE} LIMIT 0")
                else:
                    client.command(f"CREATE TABLE {COPY} AS {TRACES_TABLE}")
                for ddl in changes:
                    client.command(ddl)
                if not engine:  # a merge of this variant's parts would land in its inserts' CPU time
                    client.command(f"SYSTEM STOP MERGES {COPY}")
                cpu = time.process_time()
                for i, payload in enumerate(payloads):
                    client.raw_insert(
                        COPY,
                        column_names=columns,
                        insert_block=payload,
                        settings={"insert_deduplication_token": f"r{round_}-{i}", "max_partitions_per_insert_block": 0},
                        fmt=INSERT_FORMAT,
                    )
                runs[name].append((time.process_time() - cpu) / spans * 1e6)
        client.command(f"DROP VIEW IF EXISTS {COPY_VIEW}")
        client.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = min(runs["table alone (no views)"])
    print(
        f"ClickHouse (chDB) insert CPU, {spans:,} LLM spans in {args.inserts} inserts of {args.batch * 20:,} rows, "
        f"best of {args.rounds} rounds (spread), and against the table alone:"
    )
    for name, values in runs.items():
        best = min(values)
        print(
            f"  {name:<44} {best:7.1f} µs/span  ({max(values) - best:5.1f})  {best - base:+7.1f}"
            f"  median {statistics.median(values):.1f}"
        )


if __name__ == "__main__":
    main()
