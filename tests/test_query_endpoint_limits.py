"""The SQL read endpoint holds connections and bodies as the OTLP/HTTP port does (found by an attacker's try:
it had no connection cap and no timeouts, so idle sockets took the collector's file descriptors and a
half-sent body held its connection for ever), decodes only whole lz4 bodies, keeps errors short, and cannot
reach chDB's introspection functions. A real collector on 127.0.0.1; raw sockets as the attacker's client."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse

import lz4.frame
import pytest
from collector_process import CollectorProcess

pytestmark = pytest.mark.timeout(180)


def _address(collector: CollectorProcess) -> tuple[str, int]:
    url = urllib.parse.urlsplit(collector.info["query_url"])
    return url.hostname or "127.0.0.1", url.port or 0


def _post(collector: CollectorProcess, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    host, port = _address(collector)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("POST", "/", body=body, headers={"X-ClickHouse-Key": collector.info["query_key"], **(headers or {})})
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    conn.close()
    return response.status, text


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `seconds`, and what it sent before."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


@pytest.fixture
def limited(start_collector) -> CollectorProcess:
    return start_collector(
        "--max-connections", "8", "--handshake-timeout-seconds", "1", "--idle-timeout-seconds", "2", migrated=True
    )


def test_idle_and_slow_connections_are_closed_and_capped(limited):
    host, port = _address(limited)
    # A socket that never sends, one that trickles its headers, one that stops halfway through its body.
    silent = socket.create_connection((host, port))
    trickle = socket.create_connection((host, port))
    trickle.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    half = socket.create_connection((host, port))
    key = limited.info["query_key"]
    half.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {key}\r\nContent-Length: 100\r\n\r\nSELECT".encode())
    assert _closed_within(silent, 6)[0], "a connection that sent nothing stayed open past the handshake timeout"
    assert _closed_within(trickle, 6)[0], "a connection trickling its headers stayed open"
    closed, answer = _closed_within(half, 8)
    assert closed and answer.startswith(b"HTTP/1.1 408") and b"Code: 209." in answer, answer[:300]

    # More idle sockets than the cap: the longest idle are closed to make room, and a real client gets in.
    flood = [socket.create_connection((host, port)) for _ in range(30)]
    try:
        assert _post(limited, b"SELECT 1") == (200, "1\n")
        time.sleep(0.5)
        still_open = sum(not _closed_within(sock, 0.05)[0] for sock in flood)
        assert still_open <= 8, f"{still_open} idle connections held with a cap of 8"
    finally:
        for sock in flood:
            sock.close()
    for sock in (silent, trickle, half):
        sock.close()
    log = limited.log()
    assert "Traceback" not in log
    assert log.count("query endpoint: at the cap of 8 connections") <= 5  # rate-limited


def test_malformed_requests_log_a_few_lines_not_a_traceback_each(limited):
    host, port = _address(limited)
    for _ in range(50):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nSELECT")
            _closed_within(sock, 2)
    log = limited.log()
    assert "Traceback" not in log, log[-3000:]
    assert 1 <= log.count("query endpoint: bad request from a client") <= 5, log[-3000:]


def test_an_lz4_body_cut_short_is_refused_not_run_as_its_prefix(start_collector):
    collector = start_collector(migrated=True)
    whole = lz4.frame.compress(b"SELECT 'secret' AS s WHERE 0")
    assert _post(collector, whole, {"Content-Encoding": "lz4"}) == (200, "")
    for cut in (len(whole) - 4, len(whole) // 2, 7):
        status, text = _post(collector, whole[:cut], {"Content-Encoding": "lz4"})
        assert status == 400 and text.startswith("Code: 271.") and "cut short" in text, (cut, text)
    # two whole frames are one body
    two = lz4.frame.compress(b"SELECT 1 ") + lz4.frame.compress(b"+ 1")
    assert _post(collector, two, {"Content-Encoding": "lz4"}) == (200, "2\n")


def test_errors_stay_short_and_introspection_is_off(start_collector):
    collector = start_collector(migrated=True)
    status, text = _post(collector, b"SELECT '" + b"a" * 400_000 + b"'")
    assert status == 400 and text.startswith("Code: ") and len(text) < 5_000, (status, len(text), text[:200])
    assert text.rstrip().endswith(")"), text[-200:]  # the error's name stays at the end, where clients read it
    for sql in ("SELECT addressToLine(toUInt64(1))", "SELECT addressToSymbol(toUInt64(1))", "SELECT demangle('x')"):
        status, text = _post(collector, sql.encode())
        assert status == 400 and "introspection" in text.lower() and ".so" not in text, (sql, text)
