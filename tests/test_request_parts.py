"""A large request processed in parts across worker processes (issue 19, ack latency): a real collector
with `--workers 2`, raw OTLP/gRPC, the embedded store. Every span is stored exactly once, a trace's
spans share one sampling decision, the partial-success answer counts every rejected span, a retry of the
same body stores nothing, and the parts give what one process gives (the spans' rows, byte for byte)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest
from collector_process import sql_rows, wait_drained
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracehouse.collector.config import Config
from tracehouse.collector.pipeline import PARTS_MIN_BYTES
from tracehouse.collector.processing import keep_part, merge, process_body
from tracehouse.collector.stages import default_stages

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACES = 40
SPANS_PER_TRACE = 4
BAD_SPANS = 3


def _request(rng: random.Random, service: str) -> tuple[bytes, dict[str, bool]]:
    """Traces of LLM spans (~5 KB each), spread over two resources; one span in every fourth trace is an
    error, so with content sampling at 0 exactly those traces keep content, every span of them. Plus
    spans with a bad trace id, which decode rejects. Returns (body, {trace id hex: has an error})."""
    request = ExportTraceServiceRequest()
    scopes = []
    for r in range(2):
        resource_spans = request.resource_spans.add()
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", service
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = "resource.index", str(r)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "openinference.instrumentation.openai"
        scopes.append(scope_spans)
    errors: dict[str, bool] = {}
    now = 1_760_000_000_000_000_000
    spans = []
    for t in range(TRACES):
        trace_id = rng.randbytes(16)
        errors[trace_id.hex()] = t % 4 == 0
        for s in range(SPANS_PER_TRACE):
            spans.append((trace_id, s, t % 4 == 0 and s == 2))
    rng.shuffle(spans)  # a trace's spans are not next to each other, nor in one resource
    for i, (trace_id, s, failed) in enumerate(spans):
        span = scopes[i % 2].spans.add()
        span.trace_id, span.span_id = trace_id, rng.randbytes(8)
        span.name = f"chat-{s}"
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1_000_000
        if failed:
            span.status.code = 2
        for key, value in (
            ("openinference.span.kind", "LLM"),
            ("llm.model_name", "gpt-4o-mini"),
            ("input.value", "question " + "lorem ipsum " * 200),
            ("output.value", "answer " + "dolor sit " * 200),
        ):
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
    for b in range(BAD_SPANS):
        span = scopes[b % 2].spans.add()
        span.trace_id, span.span_id = b"short", rng.randbytes(8)
        span.name = f"bad-{b}"
        span.start_time_unix_nano = now
    return request.SerializeToString(), errors


def test_parts_make_what_one_process_makes():
    """The merged parts hold the same rows as the whole request, whatever the number of parts."""
    body, _ = _request(random.Random(3), "parts-unit")
    stages = default_stages(Config())
    whole = process_body(stages, body, False, None)
    for parts in (2, 3):
        merged = merge([process_body(stages, body, False, None, i, parts) for i in range(parts)])
        assert merged is not None
        assert (merged.header, merged.rows, merged.rejected) == (whole.header, whole.rows, whole.rejected)
        assert sorted(merged.payload.splitlines()) == sorted(whole.payload.splitlines())
        assert merged.message.startswith(f"{BAD_SPANS} span(s) rejected: ")
        assert merged.redactions == whole.redactions and merged.unpriced == whole.unpriced


def test_keep_part_keeps_each_span_in_exactly_one_part():
    body, _ = _request(random.Random(4), "parts-split")
    seen: list[bytes] = []
    for part in range(2):
        request = ExportTraceServiceRequest.FromString(body)
        keep_part(request, part, 2)
        kept = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
        assert kept, "both parts get spans"
        assert all(span.trace_id[-1] % 2 == part for span in kept if span.trace_id)
        seen += [span.span_id for span in kept]
    assert len(seen) == len(set(seen)) == TRACES * SPANS_PER_TRACE + BAD_SPANS


@pytest.mark.timeout(180)
def test_a_large_request_in_parts_is_stored_once_with_one_decision_per_trace(start_collector):
    collector = start_collector("--workers", "2", migrated=True, env={"TRACEHOUSE_CONTENT_SHARE": "0"})
    body, errors = _request(random.Random(5), "parts-e2e")
    assert len(body) >= PARTS_MIN_BYTES  # the collector splits it
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(EXPORT)
        response = ExportTraceServiceResponse.FromString(export(body, timeout=60))
        assert response.partial_success.rejected_spans == BAD_SPANS
        assert response.partial_success.error_message.startswith(f"{BAD_SPANS} span(s) rejected: ")
        # The same body again: answered from the spool's digest, nothing stored twice.
        again = ExportTraceServiceResponse.FromString(export(body, timeout=60))
        assert again.partial_success.rejected_spans == 0
    wait_drained(collector.data_dir)
    rows = sql_rows(
        collector.data_dir,
        "SELECT TraceId, SpanId, ContentSampled AS sampled, SpanAttributes['input.value'] != '' AS has_content "
        "FROM otel_traces WHERE ServiceName = 'parts-e2e'",
    )
    assert len(rows) == len({r["SpanId"] for r in rows}) == TRACES * SPANS_PER_TRACE
    by_trace: dict[str, set[tuple[str, int]]] = {}
    for r in rows:
        by_trace.setdefault(r["TraceId"], set()).add((r["sampled"], int(r["has_content"])))
    assert set(by_trace) == set(errors)
    for trace_id, decisions in by_trace.items():
        # The error span's trace keeps content on every span (its other spans went through the same part).
        assert decisions == ({("error", 1)} if errors[trace_id] else {("dropped", 0)}), trace_id


def _children(pid: int) -> list[int]:
    """The process's descendants, from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = []
        for task in Path(f"/proc/{parent}/task").glob("*"):  # a child belongs to the thread that forked it
            try:
                children += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        found += children
        todo += children
    return found


def test_workers_are_started_before_the_collector_is_ready(start_collector):
    """The pool starts its workers (each builds its stages, ~1 s) during start-up, not on the first requests,
    which would otherwise wait for it: once collector.json is written, the forkserver and both workers run."""
    collector = start_collector("--workers", "2", migrated=True)
    assert len(_children(collector.proc.pid)) >= 3  # the forkserver and two workers, before any request


def test_a_retry_of_a_request_spooled_by_an_older_version_is_answered_from_the_spool(start_collector, tmp_path):
    """Versions before BLAKE3 digests wrote sha256 ones, and their spool has no `digests` file: a request it
    holds, retried after the upgrade, is found by its older digest and stored once. Records written since
    carry the new digest."""
    from tracehouse.collector.pipeline import legacy_digest, request_digest
    from tracehouse.collector.spool import DIGESTS_FILE, Spool

    data = tmp_path / "data"
    start_collector(data_dir=data, migrated=True).stop()
    body, _ = _request(random.Random(9), "upgrade")
    older, _ = _request(random.Random(10), "upgrade")  # a second request, spooled by the old version too
    spool = Spool(data / "spool", budget_bytes=1 << 30)
    spool.open()
    for request in (body, older):  # as the old version spooled them: its digest, no digests file
        processed = process_body(default_stages(Config()), request, False, None)
        end = spool.append(processed.header, processed.payload, processed.rows, legacy_digest(request, None))
    asyncio.run(spool.sync(end))
    spool.close()
    (data / "spool" / DIGESTS_FILE).unlink()

    collector = start_collector(data_dir=data)
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        again = ExportTraceServiceResponse.FromString(channel.unary_unary(EXPORT)(body, timeout=60))
    assert again.partial_success.rejected_spans == 0  # answered from the spool: nothing was processed
    wait_drained(data)
    rows = sql_rows(
        data, "SELECT count() AS n, uniqExact(SpanId) AS spans FROM otel_traces WHERE ServiceName = 'upgrade'"
    )
    assert rows == [{"n": 2 * TRACES * SPANS_PER_TRACE, "spans": 2 * TRACES * SPANS_PER_TRACE}]
    # The collector wrote the file: records from the older ones' end on carry BLAKE3 digests.
    assert (data / "spool" / DIGESTS_FILE).read_text().split()[0] == "blake3"
    assert request_digest(body, None) != legacy_digest(body, None)


def test_a_dead_worker_is_replaced_and_ingestion_goes_on(start_collector):
    """A worker killed (the OOM killer, a crash in a C library) breaks the whole process pool: every request
    was refused with 503 until a restart of the collector. Now the request that saw it die is refused for a
    retry, a new pool takes over, and the retry is stored once. The watchdog is off: the request finds the death."""
    import os
    import signal

    collector = start_collector("--workers", "2", "--worker-stall-seconds", "0", migrated=True)
    forkserver = [pid for pid in _children(collector.proc.pid) if pid in _direct(collector.proc.pid)]
    workers = [pid for pid in _children(collector.proc.pid) if pid not in forkserver]
    assert len(workers) >= 2, workers
    os.kill(workers[0], signal.SIGKILL)
    bodies = [_request(random.Random(20 + n), "after-a-worker-died")[0] for n in range(3)]
    refused = _export_retrying(collector.grpc_endpoint, bodies, attempts=120, timeout=60)
    assert refused >= 1  # the death was seen, and answered with a retryable status
    wait_drained(collector.data_dir)
    rows = sql_rows(
        collector.data_dir,
        "SELECT count() AS n, uniqExact(SpanId) AS spans FROM otel_traces WHERE ServiceName = 'after-a-worker-died'",
    )
    assert rows == [{"n": 3 * TRACES * SPANS_PER_TRACE, "spans": 3 * TRACES * SPANS_PER_TRACE}]
    assert "pipeline workers restarted" in collector.log()
    assert set(_children(collector.proc.pid)) - set(workers) - set(forkserver)  # new worker processes


def test_a_dead_idle_worker_is_replaced_before_a_request_finds_it(start_collector):
    """A worker killed while idle: the pool was broken, /readyz said ready, and the next request was refused to
    find out. The watchdog sees the executor broken within a beat and restarts it (the stall limit, 30 s
    here, plays no part)."""
    import os
    import signal
    import time

    collector = start_collector("--workers", "2", "--worker-stall-seconds", "30", migrated=True)
    first = _workers(collector.proc.pid)
    os.kill(first[0], signal.SIGKILL)
    started = time.monotonic()
    seen: list[tuple[int, list[str]]] = []
    while time.monotonic() - started < 20 and not (seen[-1:] == [(200, [])] and any(c == 503 for c, _ in seen)):
        seen.append(_readiness(collector.http_endpoint))
        time.sleep(0.05)
    assert (503, ["pipeline workers are being restarted (one died or stalled)"]) in seen, seen
    assert seen[-1][0] == 200, seen
    assert time.monotonic() - started < 10
    _new_workers(collector.proc.pid, first, 2)
    log = collector.log()
    assert "a pipeline worker process died; the workers are restarted" in log
    assert "gave no sign of life" not in log


def test_a_stopped_worker_is_killed_and_replaced_and_ingestion_goes_on(start_collector):
    """A worker that never answers (SIGSTOP, a hang in a C call that holds the interpreter) held every request
    handed to it forever, and the retries behind them, while /readyz said ok. Now each worker beats, and one
    silent for `worker_stall_seconds` is killed and the pool restarted: found with no request in flight (one
    worker stopped, nothing sent), and with requests held (both stopped, then six requests retried as an
    exporter does: refused while held, every span stored once). /readyz says not ready while they restart."""
    import os
    import signal
    import threading
    import time

    collector = start_collector("--workers", "2", "--worker-stall-seconds", "2", migrated=True)
    readiness: list[tuple[int, list[str]]] = []
    polling = threading.Event()

    def poll_readyz() -> None:
        while not polling.is_set():
            readiness.append(_readiness(collector.http_endpoint))
            time.sleep(0.05)

    def wait_ready(since: int) -> None:
        deadline = time.monotonic() + 30
        while not (len(readiness) > since and readiness[-1][0] == 200) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readiness[-1][0] == 200, readiness[since:]

    restarting = (503, ["pipeline workers are being restarted (one died or stalled)"])
    poller = threading.Thread(target=poll_readyz, daemon=True)
    poller.start()
    try:
        wait_ready(0)
        # 1. One worker stopped, no request: the watchdog finds it, the pool is replaced.
        first = _workers(collector.proc.pid)
        assert len(first) == 2, first
        before = len(readiness)
        os.kill(first[0], signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while restarting not in readiness[before:] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarting in readiness[before:], readiness[before:]
        wait_ready(readiness.index(restarting, before))
        assert f"pipeline worker {first[0]} gave no sign of life for" in collector.log()
        second = _new_workers(collector.proc.pid, first, 2)
        # 2. Both new workers stopped, then requests: held until the kill, refused, retried, stored once.
        before = len(readiness)
        for pid in second:
            os.kill(pid, signal.SIGSTOP)
        bodies = [_request(random.Random(40 + n), "after-a-worker-stopped")[0] for n in range(6)]
        started = time.monotonic()
        refused = _export_retrying(collector.grpc_endpoint, bodies, attempts=60, timeout=30)
        assert time.monotonic() - started < 60
        assert refused >= 1  # the first request was held by the stopped workers, refused once they were killed
        assert restarting in readiness[before:]
        wait_ready(before)
    finally:
        polling.set()
        poller.join()
    wait_drained(collector.data_dir)
    rows = sql_rows(
        collector.data_dir,
        "SELECT count() AS n, uniqExact(SpanId) AS spans FROM otel_traces WHERE ServiceName = 'after-a-worker-stopped'",
    )
    assert rows == [{"n": 6 * TRACES * SPANS_PER_TRACE, "spans": 6 * TRACES * SPANS_PER_TRACE}]
    log = collector.log()
    assert "(stopped, stuck in a call that holds the interpreter, or dead); killed" in log
    assert log.count("pipeline workers restarted") >= 2
    for pid in first + second:  # killed: gone, or a zombie not yet reaped
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    _new_workers(collector.proc.pid, first + second, 2)  # a third pool runs


def test_a_request_longer_than_the_stall_limit_is_not_a_stall(start_collector):
    """The limit is on a worker's silence, not on a request's length (a deadline from hand-over killed healthy
    workers busy with a large request, and counted queue time): a request of 200,000 small spans keeps the one
    worker busy for well over the 2 s limit and is processed, its worker left alone."""
    import time

    collector = start_collector("--workers", "1", "--worker-stall-seconds", "2", migrated=True)
    (worker,) = _workers(collector.proc.pid)
    request = _small_spans(200_000, seed=7)
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        started = time.monotonic()
        channel.unary_unary(EXPORT)(request.SerializeToString(), timeout=120)
        took = time.monotonic() - started
    assert took > 3, f"the request took {took:.2f} s: too short to show anything about a 2 s limit"
    wait_drained(collector.data_dir)
    assert sql_rows(collector.data_dir, "SELECT count() AS n FROM otel_traces") == [{"n": 200_000}]
    assert "gave no sign of life" not in collector.log()
    assert _workers(collector.proc.pid) == [worker]


def test_a_stopped_worker_does_not_hold_up_shutdown(start_collector):
    """SIGTERM with a worker stopped: the executor's shutdown waited for it to exit, forever, and so did the
    collector. Now a worker still there 5 s after the others were told to exit is killed, and the collector
    exits cleanly. The watchdog is off, so the shutdown alone has to find it."""
    import os
    import signal
    import time

    collector = start_collector("--workers", "2", "--worker-stall-seconds", "0", migrated=True)
    workers = _workers(collector.proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGSTOP)
    started = time.monotonic()
    assert collector.stop(timeout=40) == 0, collector.log()
    assert time.monotonic() - started < 30
    assert f"pipeline worker {workers[0]} did not exit 5 s after shutdown (stopped or stuck): killed" in collector.log()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_stop_that_signals_the_workers_too_lets_the_request_in_flight_finish(start_collector):
    """systemd (and a terminal's Ctrl-C) signal every process of the service: the workers died of the SIGTERM
    under the request they held, which was refused, and the pool was restarted after the collector had begun
    to shut down. Now the workers leave the signal to the collector: the request in flight is answered OK,
    stored, and the collector exits without a restart."""
    import os
    import signal
    import threading
    import time

    collector = start_collector("--workers", "1", migrated=True)
    (worker,) = _workers(collector.proc.pid)
    request = _small_spans(60_000, seed=11)
    outcome: list[object] = []

    def export() -> None:
        with grpc.insecure_channel(collector.grpc_endpoint) as channel:
            try:
                outcome.append(
                    ExportTraceServiceResponse.FromString(
                        channel.unary_unary(EXPORT)(request.SerializeToString(), timeout=60)
                    )
                )
            except grpc.RpcError as exc:
                outcome.append(exc.code())

    sender = threading.Thread(target=export)
    sender.start()
    deadline = time.monotonic() + 30  # until the worker is busy with it
    while time.monotonic() < deadline and Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] != "R":
        time.sleep(0.01)
    for pid in (collector.proc.pid, worker):
        os.kill(pid, signal.SIGTERM)
    sender.join(60)
    assert collector.stop(timeout=40) == 0, collector.log()
    assert len(outcome) == 1 and isinstance(outcome[0], ExportTraceServiceResponse), outcome
    log = collector.log()
    assert "pipeline workers restarted" not in log and "died" not in log, log
    assert sql_rows(collector.data_dir, "SELECT count() AS n FROM otel_traces") == [{"n": 60_000}]


def _readiness(http_endpoint: str) -> tuple[int, list[str]]:
    """/readyz once: its status and problems."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(http_endpoint + "/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())["problems"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["problems"]


def _small_spans(count: int, seed: int) -> ExportTraceServiceRequest:
    """One request of `count` attribute-less spans: cheap to send, ~45 µs each for a worker (seconds in all)."""
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    rng = random.Random(seed)
    for n in range(count):
        span = scope_spans.spans.add()
        span.trace_id, span.span_id, span.name = rng.randbytes(16), rng.randbytes(8), f"step-{n % 10}"
        span.start_time_unix_nano = 1_760_000_000_000_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000
    return request


def _workers(collector_pid: int) -> list[int]:
    """The collector's live worker processes: the forkserver's children (the forkserver is the collector's own),
    zombies not counted."""
    forkserver = _direct(collector_pid)
    live = []
    for pid in _children(collector_pid):
        try:
            if pid not in forkserver and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.append(pid)
        except OSError:
            continue
    return sorted(live)


def _new_workers(collector_pid: int, old: list[int], count: int) -> list[int]:
    """Wait until `count` workers run and none of `old` does (the old pool's live worker is ended once its
    executor sees the death); the new ones."""
    import time

    deadline = time.monotonic() + 20
    while (current := _workers(collector_pid)) and time.monotonic() < deadline:
        if len(current) == count and not set(current) & set(old):
            return current
        time.sleep(0.1)
    raise AssertionError(f"workers {current}, expected {count} new ones besides {old}")


def _export_retrying(endpoint: str, bodies: list[bytes], attempts: int, timeout: float) -> int:
    """Export each body, retrying UNAVAILABLE 0.5 s apart as an exporter does; the number of refusals seen.
    Any other status, or a body still refused after `attempts`, fails the test (the pool was not replaced)."""
    import time

    refused = 0
    with grpc.insecure_channel(endpoint) as channel:
        export = channel.unary_unary(EXPORT)
        for body in bodies:
            for _ in range(attempts):
                try:
                    export(body, timeout=timeout)
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    refused += 1
                    time.sleep(0.5)
            else:
                raise AssertionError(f"still refused after {attempts} retries: the worker pool was not replaced")
    return refused


def _direct(pid: int) -> set[int]:
    """The process's own children."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return children
