"""Edges of the SQL read endpoint, through a real collector on 127.0.0.1: compressed bodies are decoded whole
or refused (a gzip or zstd stream cut short once ran as the prefix it decoded to), the client's `limit` caps
the rows of every statement (SHOW, DESCRIBE, EXPLAIN, EXISTS as well as SELECT), and a numeric setting that
is not a number the endpoint accepts gets a 400 naming it."""

from __future__ import annotations

import gzip
import http.client
import importlib.util
import json
import urllib.parse
import zlib

import pytest
import zstandard
from collector_process import CollectorProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def served(tmp_path_factory, store_template) -> CollectorProcess:
    proc = CollectorProcess(tmp_path_factory.mktemp("query-edges") / "data", store_template=store_template).start()
    yield proc
    proc.kill()


def _request(
    collector: CollectorProcess, body: bytes = b"", headers: dict[str, str] | None = None, **params: str
) -> tuple[int, str, dict[str, str]]:
    url = urllib.parse.urlsplit(collector.info["query_url"])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 0, timeout=30)
    path = "/?" + urllib.parse.urlencode(params) if params else "/"
    conn.request("POST", path, body=body, headers={"X-ClickHouse-Key": collector.info["query_key"], **(headers or {})})
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    conn.close()
    return response.status, text, dict(response.headers)


# ORDER BY after a UNION ALL orders only its last SELECT: the union is ordered as a whole, in a subquery.
SQL = b"SELECT n FROM (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) ORDER BY n FORMAT TSV"


def _encodings() -> dict[str, bytes]:
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    return {
        "gzip": gzip.compress(SQL),
        "deflate": zlib.compress(SQL),  # HTTP's deflate: the zlib format
        "deflate-raw": raw.compress(SQL) + raw.flush(),  # raw deflate, which some clients send as deflate
        "zstd": zstandard.ZstdCompressor().compress(SQL),
    }


def test_compressed_bodies_are_decoded_whole_or_refused(served):
    for name, whole in _encodings().items():
        encoding = name.split("-")[0]
        status, text, _ = _request(served, whole, {"Content-Encoding": encoding})
        assert (status, text) == (200, "1\n2\n3\n"), (name, text)
        for cut in sorted({len(whole) * 6 // 10, len(whole) - 1, len(whole) // 2, 3}):
            status, text, headers = _request(served, whole[:cut], {"Content-Encoding": encoding})
            assert status == 400 and text.startswith("Code: 271."), (name, cut, status, text)
            assert encoding in text and "(CANNOT_DECOMPRESS)" in text, (name, cut, text)
            assert headers["X-ClickHouse-Exception-Code"] == "271"
        for garbage in (b"x", b"\0" * 8, b"SELECT 4"):
            status, text, _ = _request(served, whole + garbage, {"Content-Encoding": encoding})
            assert status == 400 and text.startswith("Code: 271.") and encoding in text, (name, garbage, text)
    # concatenated gzip members and zstd frames are one body, as gzip(1) and zstd(1) read them
    two = gzip.compress(b"SELECT 1 ") + gzip.compress(b"+ 1")
    assert _request(served, two, {"Content-Encoding": "gzip"})[:2] == (200, "2\n")
    zstd = zstandard.ZstdCompressor()
    two = zstd.compress(b"SELECT 1 ") + zstd.compress(b"+ 2")
    assert _request(served, two, {"Content-Encoding": "zstd"})[:2] == (200, "3\n")
    # not that encoding at all
    for encoding in ("gzip", "deflate", "zstd"):
        status, text, _ = _request(served, b"SELECT 1", {"Content-Encoding": encoding})
        assert status == 400 and text.startswith("Code: 271.") and encoding in text, (encoding, text)


def test_a_body_that_decodes_past_the_limit_is_not_expanded(served):
    """A few kilobytes of gzip or zstd that would decode to gigabytes: the first MiB is read, then the 413
    (TOO_MANY_BYTES) a body over the limit gets; the collector answers on."""
    for encoding, bomb in (
        ("gzip", gzip.compress(b"SELECT 1 -- " + b" " * (64 << 20), 9)),
        ("zstd", zstandard.ZstdCompressor(level=19).compress(b"SELECT 1 -- " + b" " * (64 << 20))),
    ):
        assert len(bomb) < 1 << 20
        status, text, _ = _request(served, bomb, {"Content-Encoding": encoding})
        assert status == 413 and text.startswith("Code: 307."), (encoding, text)
    assert _request(served, b"SELECT 5")[:2] == (200, "5\n")


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW TABLES",
        "SHOW DATABASES",
        "DESCRIBE TABLE otel_traces",
        "DESC otel_traces",
        "EXPLAIN SELECT number FROM numbers(10) WHERE number > 1 ORDER BY number",
        "EXPLAIN PIPELINE SELECT number FROM numbers(10) ORDER BY number",
        "SELECT number FROM numbers(10)",
        "WITH 1 AS x SELECT number + x FROM numbers(10)",
    ],
)
def test_the_limit_setting_caps_every_statement(served, sql):
    status, text, _ = _request(served, sql.encode(), default_format="TSV")
    assert status == 200, text
    every = text.splitlines()
    assert len(every) > 2, text
    for limit in ("1", "2"):
        status, text, headers = _request(served, sql.encode(), default_format="TSV", limit=limit)
        assert status == 200, (limit, text)
        assert text.splitlines() == every[: int(limit)], (limit, text)
        # the same query again: the verdict cache keeps the limit it was checked with
        assert _request(served, sql.encode(), default_format="TSV", limit=limit)[1] == text
    assert _request(served, sql.encode(), default_format="TSV")[1].splitlines() == every  # and no limit: all rows
    assert _request(served, sql.encode(), default_format="TSV", limit="0")[1].splitlines() == every
    # in a typed format, the same columns with their types, and the first rows
    whole = json.loads(_request(served, sql.encode(), default_format="JSONCompact")[1])
    status, text, _ = _request(served, sql.encode(), default_format="JSONCompact", limit="2")
    cut = json.loads(text)
    assert status == 200 and cut["meta"] == whole["meta"] and cut["data"] == whole["data"][:2], text
    assert cut["rows"] == 2


def test_the_limit_setting_caps_exists_and_show_create(served):
    for sql in ("EXISTS TABLE otel_traces", "SHOW CREATE TABLE otel_traces"):
        status, text, _ = _request(served, sql.encode(), default_format="TSV", limit="1")
        assert status == 200 and len(text.splitlines()) == 1, (sql, text)


@pytest.mark.parametrize("name", ["limit", "max_result_rows", "max_result_bytes", "max_execution_time"])
@pytest.mark.parametrize(
    "value", ["1e300", "-1", "abc", "99999999999999999999999", "inf", "nan", "1e3", "0x10", "1_000"]
)
def test_numeric_settings_refuse_what_is_not_a_number_they_accept(served, name, value):
    status, text, headers = _request(served, b"SELECT 1", default_format="Native", **{name: value})
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "72", (name, value, text)
    assert text.startswith("Code: 72.") and f"setting {name}=" in text, text
    assert "a whole number" in text or "seconds" in text, text


@pytest.mark.parametrize(
    ("name", "value"),
    [("limit", "3"), ("limit", "0"), ("max_execution_time", "1.5"), ("max_execution_time", "60"), ("limit", "")],
)
def test_numeric_settings_take_the_numbers_they_always_took(served, name, value):
    status, text, _ = _request(served, b"SELECT 1", default_format="TSV", **{name: value})
    assert (status, text) == (200, "1\n"), (name, value, text)


def test_administration_routes_read_compressed_bodies_decoded(served):
    """aiohttp decodes no body on this port any more: the routes that read theirs (here POST /prompts) get it
    decoded by the endpoint, and a cut one refused."""
    url = urllib.parse.urlsplit(served.info["query_url"])
    for body, encoding, expected in (
        (b"[]", "", "an object with 'table'"),
        (gzip.compress(b"[]"), "gzip", "an object with 'table'"),
        (zstandard.ZstdCompressor().compress(b"[]"), "zstd", "an object with 'table'"),
        (gzip.compress(b"[]")[:-3], "gzip", "Code: 271."),
    ):
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 0, timeout=30)
        headers = {"X-ClickHouse-Key": served.info["query_key"], "Content-Type": "application/json"}
        if encoding:
            headers["Content-Encoding"] = encoding
        conn.request("POST", "/prompts", body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        conn.close()
        assert response.status == 400 and expected in text, (encoding, response.status, text)


def test_brotli_bodies_without_a_bounded_brotli_are_refused_as_unsupported(served):
    """br is decoded only with a Brotli package whose decoder takes an output limit (1.2 and later); without
    one a br body is 415 (UNKNOWN_COMPRESSION_METHOD), never run undecoded."""
    if importlib.util.find_spec("brotli") is not None:
        pytest.skip("a Brotli package is installed")
    status, text, headers = _request(served, b"\x1b\x07\x00\xf8\xa5\x40\x02", {"Content-Encoding": "br"})
    assert status == 415 and headers["X-ClickHouse-Exception-Code"] == "89" and "br" in text, text
