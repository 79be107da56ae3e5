"""Per-stage cost of the pipeline on LLM-sized spans, in one process (no network, no store).

    .venv/bin/python bench/bench_pipeline.py [--requests 10] [--batch 512] [--repeat 3] [--clock cpu]
        [--raw-messages drop]

Prints µs per span for each step: protobuf parse, decode, normalize, price, redact, encode, and the
total, which bounds what one core can ingest (the ClickHouse insert runs with the GIL released). Each step's
figure is the median of the repeats, with the best and the worst beside it: on a shared machine the best is
the steadiest figure, and the spread says how loaded the machine was. `--clock cpu` counts the process's
CPU time instead of the wall clock: on a machine whose cores other processes share, the wall clock also
counts the time the process waited for a core (several times the work itself at a load of 8 on 2 cores).
`--raw-messages drop` runs the pipeline with `[content_copies] raw_messages = "drop"` (its RawMessages stage
before the redactor).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracehouse.collector.config import load_config
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.stages import default_stages
from tracehouse.collector.stages.decode import decode_request

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import llm_request  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--raw-messages", choices=("keep", "drop"), default="keep", help="[content_copies]")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rng = random.Random(11)
    payloads = [llm_request(rng, args.batch) for _ in range(args.requests)]
    stages = default_stages(load_config(environ={"TRACEHOUSE_RAW_MESSAGES": args.raw_messages}))
    names = ["parse", "decode", *[getattr(s, "__name__", type(getattr(s, "__self__", s)).__name__) for s in stages]]
    names.append("encode")
    runs: dict[str, list[float]] = {name: [] for name in names}
    spans = args.requests * args.batch
    for _ in range(args.repeat):
        totals = dict.fromkeys(names, 0.0)
        for payload in payloads:
            t = clock()
            request = ExportTraceServiceRequest.FromString(payload)
            totals["parse"] += clock() - t
            t = clock()
            batch = decode_request(request).batch
            totals["decode"] += clock() - t
            for name, stage in zip(names[2:-1], stages, strict=True):
                t = clock()
                batch = stage(batch)
                totals[name] += clock() - t
            t = clock()
            encode_rows(batch)
            totals["encode"] += clock() - t
        for name in names:
            runs[name].append(totals[name] / spans * 1e6)
    print(
        f"{spans} LLM spans per run (~{len(payloads[0]) / args.batch / 1000:.1f} KB each), "
        f"{args.clock} clock, median of {args.repeat} (best .. worst):"
    )
    total = best_total = 0.0
    for name in names:
        value = statistics.median(runs[name])
        total += value
        best_total += min(runs[name])
        print(f"  {name:<10} {value:7.1f} µs/span  ({min(runs[name]):.1f} .. {max(runs[name]):.1f})")
    print(f"  {'total':<10} {total:7.1f} µs/span  -> {1e6 / total:,.0f} spans/s on one core (best {best_total:.1f})")


if __name__ == "__main__":
    main()
