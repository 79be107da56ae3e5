"""/healthz latency while the collector processes one huge request (default workers=0).

    .venv/bin/python bench/bench_receiver_stall.py [--case emails|attributes] [--mb 10]
    .venv/bin/python bench/bench_receiver_stall.py --pythonpath /tmp/old-tree   # an older checkout

Sends one request (10 MB of e-mail addresses in one span attribute, which redaction scans, or a span
with ~1M small attributes) and polls /healthz every 20 ms meanwhile; prints the request's time and the
/healthz latency p50 / max. A collector whose CPU work runs on the event loop shows a max near the
request's processing time; off the loop, a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from collector_process import CollectorProcess  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402


def _request(case: str, megabytes: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "stall-bench"
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x07" * 16, b"\x08" * 8, "huge"
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_100_000_000
    if case == "emails":
        address = "someone.{}@example.com "
        text = "".join(address.format(i) for i in range(megabytes * 1024 * 1024 // len(address.format(0))))
        attribute = span.attributes.add()
        attribute.key, attribute.value.string_value = "input.value", text
    else:
        for i in range(megabytes * 1024 * 1024 // 16):
            attribute = span.attributes.add()
            attribute.key, attribute.value.string_value = f"k{i}", "v"
    return request.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=("emails", "attributes"), default="emails")
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--pythonpath", help="run the collector from this tree (PYTHONPATH) to compare")
    args = parser.parse_args()
    body = _request(args.case, args.mb)
    env = {"PYTHONPATH": args.pythonpath} if args.pythonpath else {}
    with tempfile.TemporaryDirectory() as tmp:
        collector = CollectorProcess(Path(tmp) / "data", env=env).start()
        try:
            latencies: list[float] = []
            done = threading.Event()
            took: list[float] = []

            def send() -> None:
                start = time.monotonic()
                request = urllib.request.Request(
                    collector.traces_url, data=body, headers={"Content-Type": "application/x-protobuf"}
                )
                with urllib.request.urlopen(request, timeout=300) as response:
                    response.read()
                took.append(time.monotonic() - start)
                done.set()

            sender = threading.Thread(target=send)
            sender.start()
            while not done.is_set():
                start = time.monotonic()
                with urllib.request.urlopen(collector.http_endpoint + "/healthz", timeout=120) as response:
                    response.read()
                latencies.append(time.monotonic() - start)
                time.sleep(0.02)
            sender.join()
        finally:
            collector.stop()
    print(
        f"{args.case} {len(body) / 1e6:.1f} MB request: {took[0]:.2f} s; /healthz during it: "
        f"{len(latencies)} probes, p50 {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        f" ({'tree ' + args.pythonpath if args.pythonpath else 'this tree'}, pid {os.getpid()})"
    )


if __name__ == "__main__":
    main()
