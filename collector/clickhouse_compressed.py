"""ClickHouse's compressed-block framing (the `compress=1` answers clickhouse-go asks for) and the
CityHash128 v1.0.2 checksum each block carries (ClickHouse's own copy of that version; later CityHash
versions give other values). Pure Python, checked in tests/test_grafana_protocol.py against checksums
chDB wrote into part files. Bytes in, bytes out: the read endpoint (collector/query.py) frames a query's
answer with `compressed_blocks`.
"""

from __future__ import annotations

import struct

# ClickHouse's compressed blocks (`compress=1`): CityHash128 (v1.0.2, ClickHouse's copy) of what follows,
# then the method byte, the compressed size (with this 9-byte header), the raw size, the payload.
_LZ4_METHOD = 0x82
COMPRESSED_BLOCK_BYTES = 1 << 20  # max_compress_block_size's default
_MASK = (1 << 64) - 1
_K0, _K1, _K2, _K3 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F, 0xC949D7C7509E6557
_KMUL = 0x9DDFEA08EB382D69


def _u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "little")


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _rot(value: int, shift: int) -> int:
    return value if shift == 0 else ((value >> shift) | (value << (64 - shift))) & _MASK


def _shift_mix(value: int) -> int:
    return value ^ (value >> 47)


def _hash16(low: int, high: int) -> int:
    a = ((low ^ high) * _KMUL) & _MASK
    a ^= a >> 47
    b = ((high ^ a) * _KMUL) & _MASK
    b ^= b >> 47
    return (b * _KMUL) & _MASK


def _hash0to16(s: bytes) -> int:
    n = len(s)
    if n > 8:
        a, b = _u64(s, 0), _u64(s, n - 8)
        return _hash16(a, _rot((b + n) & _MASK, n)) ^ b
    if n >= 4:
        return _hash16((n + (_u32(s, 0) << 3)) & _MASK, _u32(s, n - 4))
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_shift_mix(((y * _K2) ^ (z * _K3)) & _MASK) * _K2) & _MASK
    return _K2


def _weak32(s: bytes, at: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = _u64(s, at), _u64(s, at + 8), _u64(s, at + 16), _u64(s, at + 24)
    a = (a + w) & _MASK
    b = _rot((b + a + z) & _MASK, 21)
    c = a
    a = (a + x + y) & _MASK
    b = (b + _rot(a, 44)) & _MASK
    return (a + z) & _MASK, (b + c) & _MASK


def _city_murmur(s: bytes, a: int, b: int) -> tuple[int, int]:
    n = len(s)
    if n <= 16:
        a = (_shift_mix((a * _K1) & _MASK) * _K1) & _MASK
        c = (b * _K1 + _hash0to16(s)) & _MASK
        d = _shift_mix((a + (_u64(s, 0) if n >= 8 else c)) & _MASK)
    else:
        c = _hash16((_u64(s, n - 8) + _K1) & _MASK, a)
        d = _hash16((b + n) & _MASK, (c + _u64(s, n - 16)) & _MASK)
        a = (a + d) & _MASK
        at, left = 0, n - 16
        while True:
            a ^= (_shift_mix((_u64(s, at) * _K1) & _MASK) * _K1) & _MASK
            a = (a * _K1) & _MASK
            b ^= a
            c ^= (_shift_mix((_u64(s, at + 8) * _K1) & _MASK) * _K1) & _MASK
            c = (c * _K1) & _MASK
            d ^= c
            at += 16
            left -= 16
            if left <= 0:
                break
    a = _hash16(a, c)
    b = _hash16(d, b)
    return a ^ b, _hash16(b, a)


def _city128_seed(s: bytes, x: int, y: int) -> tuple[int, int]:
    n = len(s)
    if n < 128:
        return _city_murmur(s, x, y)
    z = (n * _K1) & _MASK
    v0 = (_rot(y ^ _K1, 49) * _K1 + _u64(s, 0)) & _MASK
    v1 = (_rot(v0, 42) * _K1 + _u64(s, 8)) & _MASK
    w0 = (_rot((y + z) & _MASK, 35) * _K1 + x) & _MASK
    w1 = (_rot((x + _u64(s, 88)) & _MASK, 53) * _K1) & _MASK
    # The 128-byte rounds, inlined over the input's words unpacked at once: this loop is the checksum's
    # whole cost on a large answer (each `_rot` is ((v >> r) | (v << 64 - r)) & _MASK written out).
    rounds = n // 128
    words = struct.unpack_from(f"<{rounds * 16}Q", s)
    mask, k1 = _MASK, _K1
    for k in range(0, rounds * 16, 8):
        a = (x + y + v0 + words[k + 2]) & mask
        x = ((((a >> 37) | (a << 27)) & mask) * k1) & mask
        a = (y + v1 + words[k + 6]) & mask
        y = ((((a >> 42) | (a << 22)) & mask) * k1) & mask
        x ^= w1
        y ^= v0
        a = z ^ w0
        z = ((a >> 33) | (a << 31)) & mask
        # v = WeakHashLen32WithSeeds(s + k, v1 * k1, x + w0)
        a = (((v1 * k1) & mask) + words[k]) & mask
        b = (x + w0 + a + words[k + 3]) & mask
        b = ((b >> 21) | (b << 43)) & mask
        c = a
        a = (a + words[k + 1] + words[k + 2]) & mask
        b = (b + (((a >> 44) | (a << 20)) & mask)) & mask
        v0, v1 = (a + words[k + 3]) & mask, (b + c) & mask
        # w = WeakHashLen32WithSeeds(s + k + 32, z + w1, y)
        a = (z + w1 + words[k + 4]) & mask
        b = (y + a + words[k + 7]) & mask
        b = ((b >> 21) | (b << 43)) & mask
        c = a
        a = (a + words[k + 5] + words[k + 6]) & mask
        b = (b + (((a >> 44) | (a << 20)) & mask)) & mask
        w0, w1 = (a + words[k + 7]) & mask, (b + c) & mask
        z, x = x, z
    left = n - rounds * 128
    y = (y + _rot(w0, 37) * _K0 + z) & _MASK
    x = (x + _rot((v0 + z) & _MASK, 49) * _K0) & _MASK
    done = 0
    while done < left:
        done += 32
        tail = n - done
        y = (_rot((y - x) & _MASK, 42) * _K0 + v1) & _MASK
        w0 = (w0 + _u64(s, tail + 16)) & _MASK
        x = (_rot(x, 49) * _K0 + w0) & _MASK
        w0 = (w0 + v0) & _MASK
        v0, v1 = _weak32(s, tail, v0, v1)
    x = _hash16(x, v0)
    y = _hash16(y, w0)
    return (_hash16((x + v1) & _MASK, w1) + y) & _MASK, _hash16((x + w1) & _MASK, (y + v1) & _MASK)


def cityhash128(data: bytes) -> tuple[int, int]:
    """CityHash128 v1.0.2 as ClickHouse checksums compressed blocks with it: (low, high)."""
    if len(data) >= 16:
        return _city128_seed(data[16:], _u64(data, 0) ^ _K3, _u64(data, 8))
    if len(data) >= 8:
        n = len(data)
        return _city128_seed(b"", _u64(data, 0) ^ ((n * _K0) & _MASK), _u64(data, n - 8) ^ _K1)
    return _city128_seed(data, _K0, _K1)


def compressed_blocks(data: bytes) -> bytes:
    """`data` in ClickHouse's compressed-block framing, LZ4 (network_compression_method's default)."""
    import lz4.block

    out = bytearray()
    for start in range(0, len(data), COMPRESSED_BLOCK_BYTES):
        chunk = data[start : start + COMPRESSED_BLOCK_BYTES]
        payload = lz4.block.compress(chunk, store_size=False)
        framed = bytes([_LZ4_METHOD]) + (len(payload) + 9).to_bytes(4, "little") + len(chunk).to_bytes(4, "little")
        framed += payload
        low, high = cityhash128(framed)
        out += low.to_bytes(8, "little") + high.to_bytes(8, "little") + framed
    return bytes(out)
