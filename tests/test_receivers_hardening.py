"""The receivers cannot be starved, stalled or tricked: connection floods are bounded and timed out, one huge
request does not stall the event loop, every gzip member counts, a second collector cannot share the gRPC
port, and nothing a client sends yields a 500, a traceback or a log flood. All against a real collector."""

from __future__ import annotations

import gzip
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import grpc
import pytest
from collector_process import CollectorProcess, sql_rows
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
HANDSHAKE_TIMEOUT = 10  # ConnectionLimits' default: a new connection's time to send its first request


class LimitedCollector(CollectorProcess):
    """A collector whose open-file limit is `nofile`, soft and hard: it cannot raise it further."""

    def __init__(self, *args, nofile: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nofile = nofile

    def command(self) -> list[str]:
        setup = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.nofile}, {self.nofile})); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
        )
        return [sys.executable, "-c", setup] + super().command()[1:]

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def _spans(service: str, count: int = 3) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("hardening")
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    return list(memory.get_finished_spans())


def _count(collector: CollectorProcess, service: str) -> int:
    rows = sql_rows(collector.data_dir, f"SELECT count() AS n FROM otel_traces WHERE ServiceName = '{service}'")
    return int(rows[0]["n"])


def _request(service: str, spans: int, name: str = "s", attribute: str = "") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for i in range(spans):
        span = ss.spans.add()
        span.trace_id = service.encode().ljust(16, b"\x01")[:16]
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = name
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = 1_700_000_000_000_001_000
        if attribute:
            a = span.attributes.add()
            a.key, a.value.string_value = "input.value", attribute
    return request


def _post(url: str, body: bytes, headers: dict[str, str], method: str = "POST", timeout: float = 30):
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition("//")[2].rpartition(":")
    return host, int(port)


def _raw_http(address: tuple[str, int], data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (no client library fixes them up); the status line and headers back."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


def _status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


# --- connection floods -----------------------------------------------------------------------------------------


def _raise_own_open_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _open_idle(address: tuple[str, int], count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(address, timeout=5)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _still_open(sockets: list[socket.socket]) -> list[socket.socket]:
    """Those the server has not closed (gRPC sends its SETTINGS first: data is read and dropped)."""
    alive = []
    for sock in sockets:
        try:
            while sock.recv(65536):
                pass
        except BlockingIOError:
            alive.append(sock)
            continue
        except OSError:
            pass
        sock.close()
    return alive


def _wait_closed(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    deadline = time.monotonic() + timeout
    while sockets and time.monotonic() < deadline:
        sockets = _still_open(sockets)
        time.sleep(0.2)
    return sockets


def test_idle_connection_flood_neither_starves_the_collector_nor_locks_exporters_out(tmp_path):
    """A collector limited to 4096 open files (so each OTLP listener may hold (4096 - 512) * 0.4 = 1433
    connections) gets 3,000 idle connections on its HTTP port and 2,000 on its gRPC port: it keeps its file
    descriptors, /healthz and both OTel SDK exporters still get through, and every idle or slow connection
    is closed by the handshake timeout."""
    nofile, cap = 4096, 1433
    assert _raise_own_open_file_limit(8192) >= 6000, "the test needs ~6,000 sockets of its own"
    collector = LimitedCollector(tmp_path / "data", nofile=nofile).start()
    flood: list[socket.socket] = []
    try:
        http, grpc_address = _address(collector.http_endpoint), _address(collector.grpc_endpoint)
        flood += _open_idle(http, 3000)  # over the cap: the longest idle ones are closed to make room
        grpc_flood = _open_idle(grpc_address, 1000)  # under the cap
        flood += grpc_flood
        # Slowloris on both ports: a request dribbled out, an HTTP/2 preface without SETTINGS.
        slow = [socket.create_connection(http, timeout=5), socket.create_connection(grpc_address, timeout=5)]
        slow[0].sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        slow[1].sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        for sock in slow:
            sock.setblocking(False)
        flood += slow

        status, _, body = _post(collector.http_endpoint + "/healthz", b"", {}, method="GET")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert HttpExporter(endpoint=collector.traces_url).export(_spans("flood-http")) == SpanExportResult.SUCCESS
        grpc_exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=30)
        assert grpc_exporter.export(_spans("flood-grpc")) == SpanExportResult.SUCCESS
        grpc_exporter.shutdown()

        # Over the gRPC cap, gRPC itself closes new connections at once rather than run out of descriptors.
        extra = _open_idle(grpc_address, 1000)
        flood += extra
        time.sleep(1)
        assert len(_still_open(list(extra))) + len(_still_open(list(grpc_flood))) <= cap
        assert len(_still_open(list(flood[:3000]))) <= cap
        assert collector.open_files() < nofile - 256, "the receivers must leave file descriptors to the store"

        left = _wait_closed(flood, HANDSHAKE_TIMEOUT * 3)
        assert not left, f"{len(left)} idle connections still open after the handshake timeout"
        assert collector.alive()
        assert _count(collector, "flood-http") == 3
        assert _count(collector, "flood-grpc") == 3
        assert "Traceback" not in collector.log()
    finally:
        for sock in flood:
            sock.close()
        collector.kill()


# --- one huge request ------------------------------------------------------------------------------------------


def test_health_answers_while_a_huge_request_is_processed(tmp_path):
    """Without workers the CPU part of a request runs off the event loop: /healthz keeps answering. A retry
    of the same request (an exporter that timed out) that arrives meanwhile is still stored only once."""
    collector = CollectorProcess(tmp_path / "data").start()
    try:
        emails = "".join(f"someone.{i}@example.com " for i in range(400_000))  # ~10 MB that redaction scans
        body = _request("huge", 1, attribute=emails).SerializeToString()
        results: list[int] = []

        def send() -> None:
            headers = {"Content-Type": "application/x-protobuf"}
            results.append(_post(collector.traces_url, body, headers, timeout=300)[0])

        senders = [threading.Thread(target=send) for _ in range(2)]
        senders[0].start()
        answered = 0
        while senders[0].is_alive() or senders[1].is_alive():
            # Generous: on the event loop this request held /healthz for its whole processing time.
            status, _, _ = _post(collector.http_endpoint + "/healthz", b"", {}, method="GET", timeout=5)
            assert status == 200
            answered += 1
            if answered == 3:
                senders[1].start()  # the retry, while the original is being processed
            time.sleep(0.1)
        for sender in senders:
            sender.join()
        assert results == [200, 200]
        assert answered >= 4, "the request finished too fast to show anything; make it larger"
        rows = sql_rows(collector.data_dir, "SELECT SpanAttributes['input.value'] AS v FROM otel_traces")
        assert len(rows) == 1 and "@example.com" not in rows[0]["v"]
    finally:
        collector.kill()


# --- content encodings -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    proc = CollectorProcess(tmp_path_factory.mktemp("hardening") / "data", "--max-request-bytes", "200000").start()
    yield proc
    proc.kill()


def test_every_gzip_member_is_stored_and_the_size_limit_holds_across_members(collector):
    first = _request("member-one", 2, name="first").SerializeToString()
    second = _request("member-two", 3, name="second").SerializeToString()
    body = gzip.compress(first) + gzip.compress(second) + b"\x00" * 8  # gzip -d accepts zero padding
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    status, _, _ = _post(collector.traces_url, body, headers)
    assert status == 200
    assert _count(collector, "member-one") == 2
    assert _count(collector, "member-two") == 3

    # Each member under the 200,000 byte limit, together over it: 413, nothing stored.
    big = _request("members-bomb", 1, attribute="x" * 120_000).SerializeToString()
    status, _, reply = _post(collector.traces_url, gzip.compress(big) * 2, headers)
    assert status == 413
    assert "limit" in status_pb2.Status.FromString(reply).message
    status, _, reply = _post(collector.traces_url, gzip.compress(first) + b"not gzip", headers)
    assert status == 400 and "gzip" in status_pb2.Status.FromString(reply).message
    assert _count(collector, "members-bomb") == 0


def _zstd_compress():
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        zstd = pytest.importorskip("backports.zstd")
    return zstd.compress


def test_content_encodings_the_otel_collector_accepts(collector):
    lz4 = pytest.importorskip("lz4.frame")
    compressors = {
        "x-gzip": gzip.compress,
        "deflate": zlib.compress,
        "identity": bytes,
        "lz4": lz4.compress,
        "zstd": _zstd_compress(),
    }
    for coding, compress in compressors.items():
        body = compress(_request(f"encoding-{coding}", 1).SerializeToString())
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": coding}
        assert _post(collector.traces_url, body, headers)[0] == 200, coding
        assert _count(collector, f"encoding-{coding}") == 1, coding
    raw = _request("encodings-refused", 1).SerializeToString()
    for unsupported in ("snappy", "br", "gzip, gzip"):
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": unsupported}
        status, _, reply = _post(collector.traces_url, raw, headers)
        assert status == 415, unsupported
        message = status_pb2.Status.FromString(reply).message
        assert "gzip" in message and "zstd" in message, message


# --- edges of HTTP -----------------------------------------------------------------------------------------------


def test_http_edges_get_the_status_the_spec_prescribes(collector):
    address = _address(collector.http_endpoint)
    span = json.dumps({"resourceSpans": []}).encode()
    # Content-Type parameters, a trailing slash, a query string.
    for path, content_type in (
        ("/v1/traces", "application/json; charset=utf-8"),
        ("/v1/traces/", "application/json"),
        ("/v1/traces?x=1", "Application/JSON;charset=UTF-8"),
    ):
        status, headers, _ = _post(collector.http_endpoint + path, span, {"Content-Type": content_type})
        assert status == 200, (path, content_type)
        assert headers["Content-Type"].startswith("application/json")
    # Methods other than POST.
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        status, headers, _ = _post(collector.traces_url, b"", {}, method=method)
        assert status == 405 and "POST" in headers["Allow"], method
    assert _post(collector.traces_url, b"", {}, method="OPTIONS")[0] == 204
    # A chunked body is read like any other.
    body = _request("chunked", 2).SerializeToString()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 50]), body[i : i + 50]) for i in range(0, len(body), 50))
    reply = _raw_http(
        address,
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked + b"0\r\n\r\n",
    )
    assert _status_of(reply) == 200
    assert _count(collector, "chunked") == 2
    # A Content-Length shorter than the body: the request is truncated protobuf (400), the rest is garbage.
    reply = _raw_http(
        address,
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 7\r\n\r\n"
        + body,
    )
    assert _status_of(reply) == 400
    # Both Content-Length and chunked (request smuggling), and a body past the limit in chunks.
    reply = _raw_http(
        address,
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert _status_of(reply) == 400
    over = b"".join(b"10000\r\n" + b"\x00" * 0x10000 + b"\r\n" for _ in range(4))
    reply = _raw_http(
        address,
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + over + b"0\r\n\r\n",
    )
    assert _status_of(reply) == 413
    assert collector.alive()
    assert "Traceback" not in collector.log()


# --- malformed credentials and disconnects --------------------------------------------------------------------


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing and without Huffman coding: any bytes go on the wire."""

    def string(data: bytes) -> bytes:
        if len(data) < 127:
            return bytes([len(data)]) + data
        out, n = bytearray([127]), len(data) - 127
        while n >= 128:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        return bytes(out + bytes([n])) + data

    return b"\x00" + string(name) + string(value)


def _raw_grpc_status(address: tuple[str, int], metadata: list[tuple[bytes, bytes]]) -> bytes:
    """An Export call with header bytes no gRPC client would send; the grpc-status trailer back."""
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", EXPORT.encode()),
        (b":authority", b"x"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *metadata,
    ]
    block = b"".join(_hpack_literal(name, value) for name, value in headers)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b""))
        sock.sendall(_frame(1, 4, 1, block) + _frame(0, 1, 1, b"\x00\x00\x00\x00\x00"))
        data = b""
        while b"grpc-status" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    at = data.find(b"grpc-status")
    assert at >= 0, data
    return data[at + len(b"grpc-status") + 1 : at + len(b"grpc-status") + 3].rstrip(b"\x00\x0c")


def test_malformed_credentials_are_401_on_both_receivers_and_never_500(tmp_path):
    config = tmp_path / "keys.toml"
    config.write_text('[api_keys]\n"good-key" = "acme"\n')
    collector = CollectorProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        http = _address(collector.http_endpoint)
        bad_values = [
            b"Authorization: Bearer \xe9\xe8",
            "Authorization: Bearer é".encode(),
            b"x-api-key: \xff\xfe",
            b"Authorization: Basic %%%",
            b"Authorization: Bearer ",
            b"Authorization: Bearer",
            b"Authorization: \t",
            b"Authorization: Bearer " + b"k" * 20_000,
            b"x-api-key: " + b"k" * 40_000,
        ]
        for header in bad_values:
            reply = _raw_http(
                http,
                b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n" + header + b"\r\n\r\n",
            )
            assert _status_of(reply) == 401, (header[:40], reply[:80])
        # A control character is not HTTP at all: the parser's 400, still no 500 and no traceback.
        reply = _raw_http(
            http,
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 0\r\nx-api-key: a\x7fb\r\n\r\n",
        )
        assert _status_of(reply) == 400

        grpc_address = _address(collector.grpc_endpoint)
        unauthenticated = str(grpc.StatusCode.UNAUTHENTICATED.value[0]).encode()
        for name, value in (
            (b"authorization", b"Bearer \xe9"),
            (b"x-api-key", b"\xff\xfe"),
            (b"authorization", b"Basic %%%"),
            (b"authorization", b"Bearer "),
        ):
            assert _raw_grpc_status(grpc_address, [(name, value)]) == unauthenticated, (name, value)
        with grpc.insecure_channel(collector.grpc_endpoint) as channel:
            for metadata in ((("authorization", "Bearer " + "k" * 20_000),), (("x-api-key", " "),)):
                with pytest.raises(grpc.RpcError) as refused:
                    channel.unary_unary(EXPORT)(b"", metadata=metadata, timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = HttpExporter(endpoint=collector.traces_url, headers={"authorization": "Bearer good-key"})
        assert ok.export(_spans("after-bad-keys")) == SpanExportResult.SUCCESS
        assert "Traceback" not in collector.log()
    finally:
        collector.kill()


def test_clients_that_disconnect_mid_body_cannot_flood_the_log(tmp_path):
    collector = CollectorProcess(tmp_path / "data").start()
    try:
        address = _address(collector.http_endpoint)
        clients = 60
        for _ in range(clients):
            with socket.create_connection(address, timeout=5) as sock:
                sock.sendall(
                    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: 100000\r\n\r\n" + b"\x0a" * 1000
                )
        for _ in range(clients):  # garbage that is not HTTP at all
            _raw_http(address, b"\x16\x03\x01\x00\xff not http\r\n\r\n")
        time.sleep(1)
        status, _, _ = _post(collector.http_endpoint + "/healthz", b"", {}, method="GET")
        assert status == 200
        log = collector.log()
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if "mid-request" in line or "bad request" in line]
        assert 2 <= len(lines) <= 2 * 5, lines  # the limiter's burst per kind of message
    finally:
        collector.kill()


# --- one collector per gRPC port -------------------------------------------------------------------------------


def test_a_second_collector_on_the_same_grpc_port_fails_to_start(tmp_path):
    first = CollectorProcess(tmp_path / "first").start()
    try:
        port = str(first.info["grpc_port"])
        second = CollectorProcess(tmp_path / "second")
        result = subprocess.run(
            second.command() + ["--grpc-port", port], capture_output=True, timeout=120, stdin=subprocess.DEVNULL
        )
        assert result.returncode != 0
        errors = [line for line in result.stderr.decode().splitlines() if line.strip()]
        assert len(errors) == 1 and port in errors[0], errors
        assert HttpExporter(endpoint=first.traces_url).export(_spans("only-first")) == SpanExportResult.SUCCESS
    finally:
        first.kill()


def test_the_grpc_receiver_refuses_a_port_in_use(tmp_path):
    """Below the command line's own check: gRPC's SO_REUSEPORT would let a second server share the port."""
    import asyncio

    from tracehouse.collector.receivers.grpc import GrpcReceiver

    async def bind_twice() -> str:
        first = GrpcReceiver(None, "127.0.0.1", 0, 1 << 20)  # type: ignore[arg-type]
        await first.start()
        try:
            second = GrpcReceiver(None, "127.0.0.1", first.port, 1 << 20)  # type: ignore[arg-type]
            with pytest.raises(OSError) as refused:
                await second.start()
            return str(refused.value) + f" (port {first.port})"
        finally:
            await first.stop(0)

    message = asyncio.run(bind_twice())
    port = message.rsplit("port ", 1)[1].rstrip(")")
    assert f":{port}" in message.split(" (port")[0]


# --- the log limiter -------------------------------------------------------------------------------------------


def test_log_limiter_keeps_a_burst_per_kind_then_says_how_many_it_suppressed(caplog):
    import logging

    from tracehouse.collector.logs import LogLimiter, RateLimitFilter

    now = [0.0]
    logger = logging.getLogger("tracehouse.tests.limiter")
    limiter = LogLimiter(logger, burst=2, interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=logger.name):
        for i in range(50):
            limiter.info("gone", "client %d gone", i)
            limiter.info("other", "other %d", i)
        now[0] = 10.5
        limiter.info("gone", "client %d gone", 99)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "client 0 gone",
        "other 0",
        "client 1 gone",
        "other 1",
        "suppressed 48 similar log lines (gone) in the last 10 s",
        "client 99 gone",
    ]

    caplog.clear()
    library = logging.getLogger("tracehouse.tests.library")
    library.addFilter(RateLimitFilter(burst=1, interval=10, strip_tracebacks=True, clock=lambda: now[0]))
    with caplog.at_level(logging.ERROR, logger=library.name):
        for _ in range(5):
            try:
                b"\xff".decode()
            except UnicodeDecodeError:
                library.exception("Invalid encoding on %r", b"\xff")
        now[0] = 30.0
        library.error("Invalid encoding on %r", b"\xfe")
    assert [record.getMessage() for record in caplog.records] == [
        "Invalid encoding on b'\\xff' (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0:"
        " invalid start byte)",
        "Invalid encoding on b'\\xfe' [suppressed 4 similar lines in the last 10 s]",
    ]
    assert all(record.exc_info is None for record in caplog.records)
