"""What a spool append costs in CPU, on pages the kernel hands out fresh and on pages just freed.

    .venv/bin/python bench/bench_spool_write.py [--records 100] [--record-mib 7]

The real `Spool` (checksum, write, fsync per record, 64 MiB segments), records of the size a 512-span
request of LLM rows makes (~7 MiB), every record awaited to durability as the pipeline does. Two passes:
first into a new spool; then, right after that spool's files are deleted (their page-cache pages go back
to the kernel's free lists), into a second one. On a virtual machine whose host backs guest memory lazily
(and takes freed pages back: free page reporting), the first pass pays for every page the guest has not
touched lately; the second reuses the freed pages. Prints the CPU per record (this process, all threads:
the spool's writer thread does the work) and per span at ~13 KB of rows each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tracehouse.collector.spool import Spool

BYTES_PER_SPAN = 13 << 10  # encoded rows of bench_ingest.py's LLM span, as spooled


async def _pass(directory: Path, payload: bytes, records: int) -> list[float]:
    spool = Spool(directory, budget_bytes=records * len(payload) * 2)
    spool.open()
    cpu: list[float] = []
    try:
        for i in range(records):
            started = time.process_time()
            end = spool.append(b"Payload", payload, 512, i.to_bytes(16, "big"))
            await spool.sync(end)
            cpu.append(time.process_time() - started)
    finally:
        spool.close()
    return cpu


def _report(name: str, cpu: list[float], record_bytes: int) -> None:
    ms = sorted(c * 1e3 for c in cpu)
    median = statistics.median(ms)
    per_span = median * 1e3 / (record_bytes / BYTES_PER_SPAN)
    print(
        f"{name:34s} CPU per {record_bytes >> 20} MiB record: median {median:5.1f} ms "
        f"(p10 {ms[len(ms) // 10]:.1f}, p90 {ms[len(ms) * 9 // 10]:.1f}), {per_span:4.1f} µs per span"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--record-mib", type=int, default=7)
    args = parser.parse_args()
    payload = os.urandom(args.record_mib << 20)
    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-spool-write-"))
    try:
        fresh = asyncio.run(_pass(scratch / "first", payload, args.records))
        shutil.rmtree(scratch / "first")  # its pages are freed here, and reused by the next pass
        reused = asyncio.run(_pass(scratch / "second", payload, args.records))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.records} records of {args.record_mib} MiB, each appended and fsynced:")
    _report("into pages handed out fresh", fresh, len(payload))
    _report("into pages just freed (reused)", reused, len(payload))


if __name__ == "__main__":
    main()
