"""HTTP Content-Encoding: bounded decompression of a whole request body.

gzip, zstd and lz4 bodies may hold several members (frames) back to back, as `gzip -d` accepts: all are
decoded and the size limit holds across them, so a bomb split over members meets it too. Runs in a thread
(zlib and zstd release the GIL), off the event loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from tracehouse.collector.errors import Invalid, PipelineError, TooLarge

MAX_MEMBERS = 10_000

try:  # Python 3.14+
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:
    try:
        from backports import zstd as _zstd  # type: ignore[no-redef]  # clickhouse-connect depends on it
    except ImportError:
        _zstd = None
try:
    import lz4.frame as _lz4  # clickhouse-connect depends on it
except ImportError:
    _lz4 = None

_MULTI_MEMBER: dict[str, Callable[[], Any]] = {"gzip": lambda: zlib.decompressobj(wbits=31)}
if _zstd is not None:
    _MULTI_MEMBER["zstd"] = _zstd.ZstdDecompressor
if _lz4 is not None:
    _MULTI_MEMBER["lz4"] = _lz4.LZ4FrameDecompressor
_ALIASES = {"x-gzip": "gzip", "zlib": "deflate"}
SUPPORTED = ("identity", *sorted({"deflate", *_MULTI_MEMBER}))


class UnsupportedEncoding(Exception):
    """415: the message names the encodings that are supported."""


def clip(text: str, limit: int = 64) -> str:
    """A client-supplied value, safe to echo in a message (repr escapes what protobuf strings refuse)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def content_coding(header: str | None) -> str:
    """The one coding a Content-Encoding header names ('identity' for none)."""
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return "identity"
    if len(codings) > 1:
        raise UnsupportedEncoding(
            f"stacked Content-Encodings {clip(header or '')} are not supported; use one of {', '.join(SUPPORTED)}"
        )
    coding = _ALIASES.get(codings[0], codings[0])
    if coding != "deflate" and coding not in _MULTI_MEMBER:
        raise UnsupportedEncoding(f"unsupported Content-Encoding {clip(codings[0])}; supported: {', '.join(SUPPORTED)}")
    return coding


def decompress(body: bytes, coding: str, limit: int) -> bytes:
    """The decoded body; TooLarge past `limit` bytes, Invalid when the body is not valid `coding`."""
    if coding == "identity" or not body:
        return body
    try:
        if coding == "deflate":
            return _deflate(body, limit)
        return _members(body, coding, limit)
    except PipelineError:
        raise
    except Exception as exc:  # zlib.error, ZstdError, RuntimeError (lz4): all mean a corrupt body
        raise Invalid(f"body is not valid {coding}: {exc}") from None


def _deflate(body: bytes, limit: int) -> bytes:
    # HTTP's "deflate" is the zlib format; some clients send raw deflate.
    zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and ((body[0] << 8) | body[1]) % 31 == 0
    decompressor = zlib.decompressobj(wbits=15 if zlib_header else -15)
    out = decompressor.decompress(body, limit + 1)
    if len(out) > limit:
        raise TooLarge(limit)
    if not decompressor.eof:
        raise Invalid("deflate body is truncated")
    if decompressor.unused_data:
        raise Invalid("deflate body has trailing data after its end")
    return out


def _members(data: bytes, coding: str, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    members = 0
    while data:
        if coding == "gzip" and not data.strip(b"\x00"):
            break  # gzip -d accepts zero padding after the last member
        members += 1
        if members > MAX_MEMBERS:
            raise Invalid(f"{coding} body has more than {MAX_MEMBERS} members")
        decompressor = _MULTI_MEMBER[coding]()
        out = decompressor.decompress(data, limit - size + 1)
        size += len(out)
        if size > limit:
            raise TooLarge(limit)
        if not decompressor.eof:
            raise Invalid(f"{coding} body is truncated")
        chunks.append(out)
        data = decompressor.unused_data
    return b"".join(chunks)
