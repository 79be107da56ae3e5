"""Fault tests on real processes with the real OTel exporters: kill -9 mid-stream, the store away,
overload. Acknowledged means stored exactly once; refusals are retryable; nothing is dropped."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from collector_process import CollectorProcess, spool_bytes, sql_rows, wait_drained
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_spans(service: str, count: int, text_bytes: int = 0) -> list:
    """Finished SDK spans, to hand to an exporter batch by batch."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("faults")
    filler = "x" * text_bytes
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}", attributes={"input.value": filler} if filler else None):
            pass
    return list(memory.get_finished_spans())


def _span_counts(data_dir: Path, service: str) -> dict[str, int]:
    rows = sql_rows(
        data_dir, f"SELECT SpanId, count() AS n FROM otel_traces WHERE ServiceName = '{service}' GROUP BY SpanId"
    )
    return {row["SpanId"]: int(row["n"]) for row in rows}


def _span_id(span) -> str:
    return format(span.context.span_id, "016x")


def test_kill_9_mid_stream_loses_and_duplicates_nothing_acknowledged(tmp_path, store_template):
    data_dir = tmp_path / "data"
    grpc_port, http_port = _free_port(), _free_port()
    ports = ("--grpc-port", str(grpc_port), "--http-port", str(http_port))
    spans = _make_spans("chaos", 6000)
    batches = [spans[i : i + 100] for i in range(0, len(spans), 100)]
    acked: set[str] = set()
    failed_batches = 0
    done = threading.Event()

    def send() -> None:
        nonlocal failed_batches
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True, timeout=8)
        for batch in batches:
            if exporter.export(batch) == SpanExportResult.SUCCESS:
                acked.update(_span_id(s) for s in batch)
            else:
                failed_batches += 1
            time.sleep(0.01)
        exporter.shutdown()
        done.set()

    collector = CollectorProcess(data_dir, *ports, store_template=store_template).start()
    sender = threading.Thread(target=send)
    sender.start()
    rng = random.Random(42)
    kills = 0
    try:
        while kills < 3 and not done.is_set():
            time.sleep(rng.uniform(0.4, 1.2))
            collector.kill()  # SIGKILL: no flush, no cleanup
            kills += 1
            collector = CollectorProcess(data_dir, *ports).start()
        sender.join(timeout=240)
        assert done.is_set(), "the sender did not finish"
        assert kills >= 2, "the stream ended before the collector was killed twice"
        counts = _span_counts(data_dir, "chaos")
    finally:
        collector.kill()
    missing = acked - counts.keys()
    duplicated = {span_id: n for span_id, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} acknowledged spans lost"
    assert not duplicated, f"{len(duplicated)} spans stored more than once"
    assert len(acked) >= 3000, f"only {len(acked)} spans acknowledged ({failed_batches} batches failed)"


def _raw_export(endpoint: str, request: bytes) -> grpc.RpcError | None:
    with grpc.insecure_channel(endpoint) as channel:
        try:
            channel.unary_unary(EXPORT)(request, timeout=10)
        except grpc.RpcError as error:
            return error
    return None


def _request(service: str, spans: int, seed: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    rng = random.Random(seed)
    for i in range(spans):
        span = ss.spans.add()
        span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
        span.name = f"op-{i}"
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        span.end_time_unix_nano = span.start_time_unix_nano + 1000
        attribute = span.attributes.add()
        attribute.key, attribute.value.string_value = "input.value", "y" * 2000
    return request.SerializeToString()


def test_store_away_spool_fills_then_backpressure_then_everything_drains(tmp_path):
    fault = tmp_path / "store-down"
    fault.touch()
    collector = CollectorProcess(
        tmp_path / "data",
        "--spool-budget-bytes",
        str(600_000),
        env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)},
    ).start()
    try:
        # The store is away: requests are still accepted, into the spool, until its budget.
        accepted = 0
        for seed in range(20):
            error = _raw_export(collector.grpc_endpoint, _request("away", 50, seed))
            if error is not None:
                break
            accepted += 1
        assert 2 <= accepted < 20
        assert spool_bytes(collector.http_endpoint) >= 600_000

        # Then UNAVAILABLE with RetryInfo, in the status details and in the trailer the exporter reads.
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(error.trailing_metadata())
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry) and retry.retry_delay.seconds >= 1
        assert error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]).retry_delay.seconds >= 1
        # HTTP says the same with 503 and Retry-After.
        http_request = urllib.request.Request(
            collector.traces_url, data=_request("away", 5, 999), headers={"Content-Type": "application/x-protobuf"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(http_request, timeout=10)
        assert refused.value.code == 503 and int(refused.value.headers["Retry-After"]) >= 1
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(collector.http_endpoint + "/readyz", timeout=10)
        assert not_ready.value.code == 503
        assert "store unreachable" in json.loads(not_ready.value.read())["problems"]

        # A real exporter retries on that answer; the store comes back while it does.
        spans = _make_spans("away-sdk", 40, text_bytes=1000)
        result: list[SpanExportResult] = []
        exporter = HttpExporter(endpoint=collector.traces_url, timeout=30)
        thread = threading.Thread(target=lambda: result.append(exporter.export(spans)))
        thread.start()
        time.sleep(2.5)
        assert thread.is_alive(), "the exporter gave up instead of retrying"
        fault.unlink()
        thread.join(60)
        assert result == [SpanExportResult.SUCCESS]

        wait_drained(collector.data_dir)
        assert sum(_span_counts(collector.data_dir, "away").values()) == accepted * 50
        assert set(_span_counts(collector.data_dir, "away").values()) == {1}
        assert _span_counts(collector.data_dir, "away-sdk") == {_span_id(s): 1 for s in spans}
        with urllib.request.urlopen(collector.http_endpoint + "/readyz", timeout=10) as ready:
            assert ready.status == 200
    finally:
        collector.kill()


def test_collector_starts_without_its_server_and_the_spool_keeps_everything(tmp_path):
    """An http:// store with nothing listening: spans are acknowledged into the spool; when the collector
    comes back on a reachable store (here the embedded one, same data dir) the spool drains into it."""
    data_dir = tmp_path / "data"
    nowhere = f"http://default:secret@127.0.0.1:{_free_port()}/default"
    collector = CollectorProcess(data_dir, "--clickhouse-url", nowhere).start()
    try:
        assert "secret" not in (data_dir / "collector.json").read_text()
        spans = _make_spans("no-server", 300)
        exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=10)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(collector.http_endpoint + "/readyz", timeout=10)
        assert not_ready.value.code == 503
        assert spool_bytes(collector.http_endpoint) > 0
        assert collector.stop() == 0  # a clean stop with the store away keeps the spool
        assert "secret" not in collector.log()
    finally:
        collector.kill()
    back = CollectorProcess(data_dir).start()
    try:
        assert _span_counts(data_dir, "no-server") == {_span_id(s): 1 for s in spans}
    finally:
        back.kill()


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


RSS_CEILING_MIB = 1200


def test_overload_stays_bounded_and_turns_into_retryable_refusals(tmp_path):
    """Twelve clients send distinct requests as fast as they can for 8 s while the store stalls for 3 s
    in the middle (capacity drops to the spool's budget): memory stays under the ceiling, the excess is
    refused with UNAVAILABLE (retryable), every acknowledged span is stored exactly once."""
    fault = tmp_path / "stall"
    collector = CollectorProcess(
        tmp_path / "data",
        "--spool-budget-bytes",
        str(8 << 20),
        "--max-inflight-bytes",
        str(32 << 20),
        env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)},
    ).start()
    acked: list[int] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def client(k: int) -> None:
        with grpc.insecure_channel(collector.grpc_endpoint) as channel:
            export = channel.unary_unary(EXPORT)
            seed = k
            while time.monotonic() < started + 8:
                try:
                    export(_request("overload", 100, seed), timeout=30)
                    with lock:
                        acked.append(seed)
                except grpc.RpcError as error:
                    with lock:
                        codes[error.code().name] = codes.get(error.code().name, 0) + 1
                seed += 12

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
        for thread in threads:
            thread.start()
        time.sleep(2.5)
        fault.touch()
        time.sleep(3)
        fault.unlink()
        for thread in threads:
            thread.join(90)
        peak_mib = _rss_peak_kib(collector.proc.pid) / 1024
        assert collector.alive()
        assert set(codes) == {"UNAVAILABLE"}, codes
        assert peak_mib < RSS_CEILING_MIB, f"peak RSS {peak_mib:.0f} MiB"
        counts = _span_counts(collector.data_dir, "overload")
        assert len(counts) == 100 * len(acked)  # every acknowledged request's spans, no refused one
        assert set(counts.values()) == {1}
        print(f"overload: {len(acked)} requests acked, refusals {codes}, peak RSS {peak_mib:.0f} MiB")
    finally:
        collector.kill()


def test_without_spool_acknowledgement_waits_for_the_insert(tmp_path):
    """--no-spool: an acknowledged span is already in ClickHouse; with the store down the request is refused."""
    fault = tmp_path / "down"
    collector = CollectorProcess(
        tmp_path / "data", "--no-spool", env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)}
    ).start()
    try:
        spans = _make_spans("direct", 50)
        exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=10)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        assert not (collector.data_dir / "spool").exists()
        assert _span_counts(collector.data_dir, "direct") == {_span_id(s): 1 for s in spans}
        fault.touch()
        error = _raw_export(collector.grpc_endpoint, _request("direct-down", 5, 1))
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
        assert "store unavailable" in error.details()
        fault.unlink()
        assert _raw_export(collector.grpc_endpoint, _request("direct-down", 5, 1)) is None
        assert len(_span_counts(collector.data_dir, "direct-down")) == 5
    finally:
        collector.kill()


def _mixed_request(service: str, seed: int) -> tuple[bytes, set[str], int]:
    """50 spans: 2 with a start time the store cannot hold (rejected by name), one with an unset event
    time, some before 1973; returns (body, the span ids that must be stored, how many must be rejected)."""
    request = ExportTraceServiceRequest.FromString(_request(service, 50, seed))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].start_time_unix_nano = 0
    spans[1].start_time_unix_nano = 2**64 - 1
    spans[2].events.add(name="unset-time")
    for span in spans[3:10]:
        span.start_time_unix_nano = 5_000_000_000 + seed
        span.end_time_unix_nano = span.start_time_unix_nano + 10
    kept = {span.span_id.hex() for span in spans[2:]}
    return request.SerializeToString(), kept, 2


def test_no_acknowledged_span_is_lost_across_drainer_errors_bad_timestamps_and_a_store_outage(tmp_path):
    """A sender retries like an exporter while the drainer's spool reads fail, then the store goes away,
    then both come back: every span acknowledged is stored exactly once, every refusal was retryable."""
    drainer_fault, store_fault = tmp_path / "drainer-fails", tmp_path / "store-down"
    collector = CollectorProcess(
        tmp_path / "data",
        env={
            "TRACEHOUSE_FAULT_SPOOL_READ_ERROR_FILE": str(drainer_fault),
            "TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(store_fault),
        },
    ).start()
    acked: set[str] = set()
    codes: set[str] = set()
    done = threading.Event()

    def send() -> None:
        with grpc.insecure_channel(collector.grpc_endpoint) as channel:
            export = channel.unary_unary(EXPORT)
            for seed in range(80):
                body, kept, rejected = _mixed_request("mixed-faults", seed)
                for _attempt in range(50):
                    try:
                        reply = ExportTraceServiceResponse.FromString(export(body, timeout=10))
                    except grpc.RpcError as error:
                        codes.add(error.code().name)
                        time.sleep(0.2)
                        continue
                    assert reply.partial_success.rejected_spans == rejected
                    acked.update(kept)
                    break
                time.sleep(0.05)
        done.set()

    try:
        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(1)
        drainer_fault.touch()
        time.sleep(1.5)
        store_fault.touch()
        time.sleep(1)
        drainer_fault.unlink()
        time.sleep(1)
        store_fault.unlink()
        sender.join(120)
        assert done.is_set(), "the sender did not finish"
        assert codes <= {"UNAVAILABLE"}, codes
        wait_drained(collector.data_dir)
        counts = _span_counts(collector.data_dir, "mixed-faults")
        assert len(acked) == 80 * 48
        assert counts == dict.fromkeys(acked, 1)
        assert not (collector.data_dir / "deadletter").exists()
        with urllib.request.urlopen(collector.http_endpoint + "/readyz", timeout=10) as ready:
            assert ready.status == 200
        assert "drainer failed, restarting" in collector.log()
    finally:
        collector.kill()


def _counter(collector: CollectorProcess, name: str) -> float:
    with urllib.request.urlopen(collector.http_endpoint + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_a_drain_after_an_outage_inserts_at_most_batch_max_bytes_at_a_time(tmp_path):
    """batch_max_bytes bounds what one insert holds in memory (50,000 rows of LLM spans are ~690 MB of
    encoded rows): the spool gathers what arrived while the store was away, then drains it in inserts of at
    most the cap, every row stored once."""
    fault = tmp_path / "store-down"
    fault.touch()
    cap = 1 << 20
    collector = CollectorProcess(
        tmp_path / "data", "--batch-max-bytes", str(cap), env={"TRACEHOUSE_FAULT_STORE_UNAVAILABLE_FILE": str(fault)}
    ).start()
    try:
        for seed in range(16):
            assert _raw_export(collector.grpc_endpoint, _request("capped", 100, seed)) is None
        spooled = spool_bytes(collector.http_endpoint)
        assert spooled > 3 * cap
        fault.unlink()
        wait_drained(collector.data_dir)
        inserts = _counter(collector, "tracehouse_insert_batches_total")
        assert inserts >= spooled / cap, (inserts, spooled)  # one insert would hold it all without the cap
        assert _counter(collector, "tracehouse_insert_rows_total") == 1600
        (row,) = sql_rows(collector.data_dir, "SELECT count() AS n FROM otel_traces WHERE ServiceName = 'capped'")
        assert int(row["n"]) == 1600
    finally:
        collector.stop()
