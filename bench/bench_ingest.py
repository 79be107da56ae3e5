"""End-to-end ingest throughput: pre-serialized OTLP requests of LLM-sized spans, several gRPC
connections, against a real `tracehouse serve` on a fresh embedded store.

    .venv/bin/python bench/bench_ingest.py [--spans 100000] [--batch 512] [--connections 8] [--no-spool]
    .venv/bin/python bench/bench_ingest.py --rate 2000 --seconds 20      # ack latency at a fixed offered load
    .venv/bin/python bench/bench_ingest.py --rate 5000 --connections 4 --workers 2 --seconds 15

At a fixed rate the requests are evenly spaced (request i leaves at i * batch / rate, on whichever
connection is free); `--burst` sends the connections' requests at the same instant instead, once per
connections * batch / rate (the schedule of the figures before issue 19's ack-latency work), so the
latency includes waiting behind the requests that arrived together.

Prints spans/s acknowledged, request latency p50/p99 (from the first attempt to the acknowledgement,
retries included), the collector's peak memory (its own RSS, and the PSS of it with its worker processes,
sampled from /proc), the event loop's responsiveness (the latency of GET /healthz, polled every 20 ms
on the OTLP/HTTP port, which the same loop serves), and checks the stored count.
A retryable refusal (UNAVAILABLE, RESOURCE_EXHAUSTED, ... the codes the OTel SDK's exporter retries) is
retried as that exporter does: after the RetryInfo delay when the collector gives one, else after an
exponential backoff with jitter (1, 2, 4 ... s), at most --retries times; the retries are counted.
(The OTel SDK tops out near 6-7k spans/s per process, so it cannot be the load generator.)
Every request is distinct (a counter in a resource attribute), so the spool's retry
deduplication does not flatter the figures.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MARK = "request-000000000000"
# The codes the OTel SDK's OTLP/gRPC exporter retries (opentelemetry.exporter.otlp.proto.grpc.exporter).
RETRYABLE = {
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}
WORDS = "the quick brown fox jumps over a lazy dog while models answer questions about invoices and code".split()


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def llm_request(rng: random.Random, spans: int, service: str = "bench-app") -> bytes:
    """One ExportTraceServiceRequest of OpenInference LLM spans: ~15 attributes, two ~2 KB texts."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in (("service.name", service), ("telemetry.sdk.language", "python"), ("bench.request", MARK)):
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    ss = rs.scope_spans.add()
    ss.scope.name = "openinference.instrumentation.openai"
    now = time.time_ns()
    for _ in range(spans):
        span = ss.spans.add()
        span.trace_id = rng.randbytes(16)
        span.span_id = rng.randbytes(8)
        span.parent_span_id = rng.randbytes(8)
        span.name = "ChatCompletion"
        span.kind = 1
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now + rng.randint(200, 5000) * 1_000_000
        prompt, answer = _text(rng, 2048), _text(rng, 2048)
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.invocation_parameters": '{"temperature": 0.2, "max_tokens": 512}',
            "input.value": json.dumps({"messages": [{"role": "user", "content": prompt}]}),
            "input.mime_type": "application/json",
            "output.value": answer,
            "output.mime_type": "text/plain",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": prompt,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": answer,
            "session.id": f"session-{rng.randint(1, 500)}",
            "user.id": f"user-{rng.randint(1, 2000)}",
        }
        for key, value in attributes.items():
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        for key, value in (
            ("llm.token_count.prompt", 512),
            ("llm.token_count.completion", 380),
            ("llm.token_count.total", 892),
        ):
            kv = span.attributes.add()
            kv.key, kv.value.int_value = key, value
    return request.SerializeToString()


def _spool_bytes(http_endpoint: str) -> float:
    with urllib.request.urlopen(http_endpoint + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("tracehouse_spool_bytes "):
                return float(line.split()[1])
    return 0.0


def _tree(pid: int) -> list[int]:
    """The process and its descendants (the forkserver and the worker processes under it)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):  # a child belongs to the thread that forked it
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def _memory_kb(pid: int, field: str, file: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _retry_delay(exc: grpc.RpcError, attempt: int) -> float:
    """The RetryInfo delay of the refusal (its `google.rpc.retryinfo-bin` trailer), else the SDK's backoff."""
    for key, value in exc.trailing_metadata() or ():
        if key == "google.rpc.retryinfo-bin":
            info = error_details_pb2.RetryInfo.FromString(value)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return 2**attempt * random.uniform(0.8, 1.2)


class LoopProbe(threading.Thread):
    """GET /healthz every 20 ms: its latency is how long the collector's event loop takes to answer."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.latencies: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            started = time.perf_counter()
            with contextlib.suppress(OSError), urllib.request.urlopen(self.endpoint + "/healthz", timeout=30):
                self.latencies.append(time.perf_counter() - started)


class MemorySampler(threading.Thread):
    """Peak RSS of the collector process and peak PSS of its whole tree (shared pages counted once)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kb = self.peak_tree_pss_kb = self.processes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            tree = _tree(self.pid)
            self.processes = max(self.processes, len(tree))
            self.peak_rss_kb = max(self.peak_rss_kb, _memory_kb(self.pid, "VmRSS", "status"))
            pss = sum(_memory_kb(pid, "Pss", "smaps_rollup") for pid in tree)
            self.peak_tree_pss_kb = max(self.peak_tree_pss_kb, pss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512, help="spans per request (the SDK default is 512)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="collector --workers (pipeline processes)")
    parser.add_argument("--no-spool", action="store_true", help="acknowledge on insert instead of on spool fsync")
    parser.add_argument("--rate", type=int, default=0, help="fixed offered load in spans/s (0: as fast as possible)")
    parser.add_argument("--seconds", type=float, default=20, help="duration of a --rate run")
    parser.add_argument("--distinct", type=int, default=20, help="distinct pre-built requests to cycle through")
    parser.add_argument("--burst", action="store_true", help="with --rate: the connections send at the same instant")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument("--retries", type=int, default=6, help="retries of a retryable refusal (the SDK: 6)")
    args = parser.parse_args()

    rng = random.Random(7)
    payloads = [llm_request(rng, args.batch) for _ in range(args.distinct)]
    print(f"request size: {len(payloads[0]) / 1e6:.2f} MB for {args.batch} spans")

    data_dir = Path(tempfile.mkdtemp(prefix="tracehouse-bench-")) / "data"
    collector = subprocess.Popen(
        [sys.executable, "-m", "tracehouse.collector", "serve", "--data-dir", str(data_dir)]
        + ["--grpc-port", "0", "--http-port", "0", "--log-level", "WARNING", "--workers", str(args.workers)]
        + (["--no-spool"] if args.no_spool else []),
        stdout=subprocess.DEVNULL,
    )
    try:
        info_path = data_dir / "collector.json"
        deadline = time.monotonic() + 60
        while not info_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(info_path.read_text())
        ready = time.monotonic() - (deadline - 60)
        memory = MemorySampler(collector.pid)
        memory.start()
        probe = LoopProbe(info["http_endpoint"])
        probe.start()
        requests_total = args.spans // args.batch if not args.rate else int(args.rate * args.seconds / args.batch)
        interval = args.batch * args.connections / args.rate if args.rate else 0.0
        latencies: list[float] = []
        errors: list[str] = []
        retried: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        counter = iter(range(requests_total))
        mark = MARK.encode()

        def worker() -> None:
            with grpc.insecure_channel(
                info["grpc_endpoint"], options=[("grpc.max_send_message_length", 64 << 20)]
            ) as channel:
                export = channel.unary_unary(EXPORT)
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    payload = payloads[i % len(payloads)].replace(mark, f"request-{i:012d}".encode())
                    if interval:
                        slot = i // args.connections if args.burst else i / args.connections
                        next_send = begin + slot * interval
                        time.sleep(max(0.0, next_send - time.perf_counter()))
                    started = time.perf_counter()
                    acknowledged = False
                    for attempt in range(args.retries + 1):
                        try:
                            export(payload, timeout=120)
                            acknowledged = True
                            break
                        except grpc.RpcError as exc:
                            if exc.code() not in RETRYABLE or attempt == args.retries:
                                errors.append(exc.code().name)
                                break
                            with lock:
                                retried[exc.code().name] += 1
                            time.sleep(_retry_delay(exc, attempt))
                    if not acknowledged:
                        continue
                    with lock:
                        latencies.append(time.perf_counter() - started)

        begin = started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        acked = len(latencies) * args.batch
        latencies.sort()
        mode = "spool off (ack on insert)" if args.no_spool else "spool on (ack on fsync)"
        offered = (
            f"offered {args.rate:,} spans/s{' in bursts' if args.burst else ''}" if args.rate else "as fast as possible"
        )
        print(
            f"{mode}, {offered}: acknowledged {acked} spans in {elapsed:.2f}s: {acked / elapsed:,.0f} spans/s "
            f"({args.connections} connections, {args.batch} spans/request)"
        )
        print(
            f"request latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms; errors: {len(errors)}"
            + (
                " (" + ", ".join(f"{code} x{n}" for code, n in collections.Counter(errors).most_common()) + ")"
                if errors
                else ""
            )
        )
        print(
            f"retries: {sum(retried.values())}"
            + (" (" + ", ".join(f"{code} x{n}" for code, n in retried.most_common()) + ")" if retried else "")
            + " (a retried request's latency runs from its first attempt)"
        )
        probe.stopped.set()
        lags = sorted(probe.latencies)
        if lags:
            print(
                f"event loop: GET /healthz p50 {statistics.median(lags) * 1000:.1f} ms, "
                f"p99 {lags[max(0, int(len(lags) * 0.99) - 1)] * 1000:.1f} ms, max {lags[-1] * 1000:.0f} ms "
                f"({len(lags)} probes)"
            )
        memory.stopped.set()
        print(
            f"collector ready {ready:.1f}s after start; peak RSS {memory.peak_rss_kb / 1024:.0f} MB (main process), "
            f"peak PSS {memory.peak_tree_pss_kb / 1024:.0f} MB with its {memory.processes - 1} helper process(es)"
        )
        drain_started = time.perf_counter()
        while _spool_bytes(info["http_endpoint"]) > 0:
            time.sleep(0.05)
        print(f"spool drained {time.perf_counter() - drain_started:.2f}s after the last acknowledgement")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tracehouse.collector",
                "sql",
                "--data-dir",
                str(data_dir),
                "-f",
                "tsv",
                "SELECT count() FROM otel_traces",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        print(f"stored: {out[-1]} rows")
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(60)
        if not args.keep:
            shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
