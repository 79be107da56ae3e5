"""One run, one machine state: N LLM spans loaded through OTLP into a fresh collector, then the ingest, memory,
disk and query figures of issue 19 printed together.

    .venv/bin/python bench/bench_scale.py [--spans 1000000] [--connections 8] [--rate 5000] [--rounds 3]

1. load: bench_ingest.py --spans N (every stage on, spool on, gRPC, 512-span requests; the texts of 20 requests
   cycled, each request made distinct): spans/s acknowledged and request latency; the collector's peak RSS (its
   serve process and any worker processes, sampled every 0.2 s from /proc) while it loads;
2. acknowledgement latency at a fixed offered rate: bench_ingest.py --rate R --seconds 20, on a store of its own;
3. queries on the loaded store through `tracehouse serve`, as Grafana asks (bench_query.py's endpoint():
   SELECT 1 and the Stage-7 questions, the dashboards' own SQL). The loaded spans all fall in the last minutes
   and carry no user or feature: for the questions on 1M calls spread over 30 days, bench_query.py;
4. bytes on disk per span of the loaded store, as loaded and after OPTIMIZE FINAL (bench_capacity.py's figures).

Time on the 2-core development machine: 1M spans load in ~2.6 min at ~6,400 spans/s and take ~1.8 GB of disk
(~1,750 B per span of bench_ingest.py's ~9 KB span), plus ~1 min for the rest; 10M spans would take ~26 min and
~18 GB, so `--spans 10000000` needs that much free space in $TMPDIR.
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


class PeakRss:
    """The largest RSS sum, in bytes, of the collector (the `serve` process whose command line names `marker`, a
    data dir) and its descendants (worker processes), with its anonymous, file-backed (mapped code: chDB's
    library alone is ~190 MiB) and shared parts at that sample; and the last sample (the load drained, the
    collector idle). Other processes on the data dir (the bench's `tracehouse sql` count, which opens a chDB
    of its own) are not the collector's and are left out."""

    _PARTS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")

    def __init__(self, marker: str) -> None:
        self.marker, self.peak = marker, 0
        self.at_peak: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            sums = dict.fromkeys(self._PARTS, 0)
            for pid in self._collector_tree():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        name, _, value = line.partition(":")
                        if name in sums:
                            sums[name] += int(value.split()[0]) * 1024
                except OSError:
                    continue
            if sums["VmRSS"]:
                self.last = sums
            if sums["VmRSS"] > self.peak:
                self.peak, self.at_peak = sums["VmRSS"], sums

    def _collector_tree(self) -> list[str]:
        """The collector's pid and its descendants' (from /proc/PID/stat's parent pid)."""
        parents: dict[str, str] = {}
        roots = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                parents[pid] = stat[stat.rindex(")") + 2 :].split()[1]
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if b"serve" in argv and any(self.marker.encode() in arg for arg in argv):
                roots.append(pid)
        tree = set(roots)
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        return sorted(tree)

    @staticmethod
    def parts(sample: dict[str, int]) -> str:
        return ", ".join(f"{name.removeprefix('Rss')} {value / 2**20:,.0f}" for name, value in sample.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=int, default=5000, help="offered spans/s for the acknowledgement latency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="tracehouse-scale-"))
    os.environ["TMPDIR"] = str(scratch)  # bench_ingest.py makes its data dir here (and keeps it: --keep)
    tempfile.tempdir = str(scratch)
    try:
        print(f"== 1. load {args.spans:,} LLM spans through OTLP/gRPC")
        sys.argv = [str(BENCH / "bench_ingest.py"), "--spans", str(args.spans), "--keep"]
        sys.argv += ["--connections", str(args.connections)]
        with PeakRss(str(scratch)) as rss:
            runpy.run_path(sys.argv[0], run_name="__main__")
        print(f"collector peak RSS while loading: {rss.peak / 2**20:,.0f} MiB ({rss.parts(rss.at_peak)})")
        print(f"collector RSS at the end, drained and idle: {rss.parts(rss.last)} MiB")
        (data_dir,) = scratch.glob("tracehouse-bench-*/data")
        spans = args.spans // 512 * 512

        print(f"\n== 2. acknowledgement latency at {args.rate:,} spans/s offered (a store of its own)")
        command = [sys.executable, str(BENCH / "bench_ingest.py"), "--rate", str(args.rate), "--seconds", "20"]
        subprocess.run([*command, "--connections", "4"], check=True, env={**os.environ, "TMPDIR": str(scratch)})

        print("\n== 3. the read endpoint on the loaded store (tracehouse serve), as Grafana asks")
        import bench_query

        bench_query.endpoint(data_dir, "tracehouse serve", args.rounds, args.requests)

        print("\n== 4. disk")
        import bench_capacity

        bench_capacity._disk(data_dir / "clickhouse", spans)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
