"""Per-stage cost of the pipeline on LLM-sized spans, in one process (no network, no store).

    .venv/bin/python bench/bench_pipeline.py [--requests 10] [--batch 512] [--repeat 3]

Prints µs per span for each step: protobuf parse, decode, normalize, price, redact, encode, and the
total, which bounds what one core can ingest (the ClickHouse insert runs with the GIL released).
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
    args = parser.parse_args()
    rng = random.Random(11)
    payloads = [llm_request(rng, args.batch) for _ in range(args.requests)]
    stages = default_stages(load_config(environ={}))
    names = ["parse", "decode", *[getattr(s, "__name__", type(getattr(s, "__self__", s)).__name__) for s in stages]]
    names.append("encode")
    runs: dict[str, list[float]] = {name: [] for name in names}
    spans = args.requests * args.batch
    for _ in range(args.repeat):
        totals = dict.fromkeys(names, 0.0)
        for payload in payloads:
            t = time.perf_counter()
            request = ExportTraceServiceRequest.FromString(payload)
            totals["parse"] += time.perf_counter() - t
            t = time.perf_counter()
            batch = decode_request(request).batch
            totals["decode"] += time.perf_counter() - t
            for name, stage in zip(names[2:-1], stages, strict=True):
                t = time.perf_counter()
                batch = stage(batch)
                totals[name] += time.perf_counter() - t
            t = time.perf_counter()
            encode_rows(batch)
            totals["encode"] += time.perf_counter() - t
        for name in names:
            runs[name].append(totals[name] / spans * 1e6)
    print(f"{spans} LLM spans per run (~{len(payloads[0]) / args.batch / 1000:.1f} KB each), median of {args.repeat}:")
    total = 0.0
    for name in names:
        value = statistics.median(runs[name])
        total += value
        print(f"  {name:<10} {value:7.1f} µs/span")
    print(f"  {'total':<10} {total:7.1f} µs/span  -> {1e6 / total:,.0f} spans/s on one core")


if __name__ == "__main__":
    main()
