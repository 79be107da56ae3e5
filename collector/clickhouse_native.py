"""ClickHouse's Native format as a client of a given protocol revision reads it over HTTP.

clickhouse-go (so the Grafana ClickHouse plugin) names its protocol revision on every request
(`client_protocol_version`) and then reads Native blocks the way the TCP protocol frames them. chDB writes
Native for revision 0; `native_for_revision` walks those blocks column by column (it has to know each
type's layout to find where a column ends) and adds what that revision expects. Pure bytes in, bytes out:
the read endpoint (collector/query.py) calls it on a query's answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracehouse.collector.sql_text import split_top_level

# The Native format of a client that names its protocol revision (`client_protocol_version`, which
# clickhouse-go sends on every request) carries what the TCP protocol's blocks do: a BlockInfo before each
# block from revision 51903, a custom-serialization flag byte after each column's type from 54454. chDB
# writes Native for revision 0, so the endpoint adds them (clickhouse-go's lib/proto/block.go reads them).
REVISION_WITH_BLOCK_INFO = 51903
REVISION_WITH_CUSTOM_SERIALIZATION = 54454
# BlockInfo, field by field: 1 is_overflows=false, 2 bucket_num=-1, 0 the end.
_BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"
_FIXED_WIDTHS = {
    **dict.fromkeys(("UInt8", "Int8", "Bool", "Enum8"), 1),
    **dict.fromkeys(("UInt16", "Int16", "Date", "BFloat16", "Enum16"), 2),
    **dict.fromkeys(("UInt32", "Int32", "Float32", "Date32", "DateTime", "IPv4", "Time", "Decimal32"), 4),
    **dict.fromkeys(("UInt64", "Int64", "Float64", "DateTime64", "Time64", "Decimal64"), 8),
    **dict.fromkeys(("UInt128", "Int128", "UUID", "IPv6", "Decimal128"), 16),
    **dict.fromkeys(("UInt256", "Int256", "Decimal256"), 32),
}
_ARRAY_ALIASES = {
    "Ring": "Array(Point)",
    "LineString": "Array(Point)",
    "Polygon": "Array(Ring)",
    "MultiLineString": "Array(LineString)",
    "MultiPolygon": "Array(Polygon)",
}
# LowCardinality's per-granule flags (SerializationLowCardinality): the index width, and whether keys follow.
_LC_INDEX_WIDTHS = (1, 2, 4, 8)
_LC_HAS_ADDITIONAL_KEYS = 1 << 9
_LC_NEEDS_GLOBAL_DICTIONARY = 1 << 8


class NativeUnsupported(Exception):
    """A column whose Native layout the endpoint cannot re-frame for a protocol-revision client."""


def split_type(text: str) -> tuple[str, list[str]]:
    """`Map(String, Array(UInt8))` as ("Map", ["String", "Array(UInt8)"]): the arguments at depth one,
    quoted names and values (Enum8('a, b' = 1), DateTime('UTC')) kept whole."""
    text = text.strip()
    open_at = text.find("(")
    if open_at < 0 or not text.endswith(")"):
        return text, []
    return text[:open_at], split_top_level(text[open_at + 1 : -1])


def _element_type(element: str) -> str:
    """A Tuple element without its name (`name Type` or `Type`)."""
    head, _, rest = element.partition(" ")
    if rest and "(" not in head and (head.startswith("`") or head not in _FIXED_WIDTHS and head[:1].islower()):
        return rest.strip()
    return element


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def skip_column(data: bytes, pos: int, type_name: str, rows: int) -> int:
    """Where the Native (revision 0, default serialization) data of `rows` values of `type_name` that
    starts at `pos` ends."""
    if rows == 0:
        return pos
    base, args = split_type(type_name)
    width = _FIXED_WIDTHS.get(base)
    if width is not None:
        return pos + width * rows
    if base == "String":
        for _ in range(rows):
            length, pos = _varint(data, pos)
            pos += length
        return pos
    if base == "FixedString":
        return pos + int(args[0]) * rows
    if base == "Decimal":
        precision = int(args[0])
        return pos + rows * (4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32)
    if base.startswith("Interval"):
        return pos + 8 * rows
    if base == "Nothing":
        return pos + rows
    if base == "Nullable":
        return skip_column(data, pos + rows, args[0], rows)
    if base in ("SimpleAggregateFunction",):
        return skip_column(data, pos, args[-1], rows)
    if base == "Point":
        return pos + 16 * rows
    if base in _ARRAY_ALIASES:
        return skip_column(data, pos, _ARRAY_ALIASES[base], rows)
    if base in ("Array", "Map", "Nested"):
        pos += 8 * rows
        nested = int.from_bytes(data[pos - 8 : pos], "little")
        if base == "Array":
            return skip_column(data, pos, args[0], nested)
        for element in args:
            pos = skip_column(data, pos, _element_type(element), nested)
        return pos
    if base == "Tuple":
        for element in args:
            pos = skip_column(data, pos, _element_type(element), rows)
        return pos
    if base == "LowCardinality":
        return _skip_low_cardinality(data, pos + 8, args[0], rows)  # the state prefix: the key version
    raise NativeUnsupported(type_name)


def _skip_low_cardinality(data: bytes, pos: int, type_name: str, rows: int) -> int:
    keys_base, keys_args = split_type(type_name)
    keys_type = keys_args[0] if keys_base == "Nullable" else type_name  # a dictionary's keys are not Nullable
    done = 0
    while done < rows:
        flags = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8
        if flags & _LC_NEEDS_GLOBAL_DICTIONARY or (flags & 0xFF) >= len(_LC_INDEX_WIDTHS):
            raise NativeUnsupported(f"LowCardinality({type_name}) with a shared dictionary")
        if flags & _LC_HAS_ADDITIONAL_KEYS:
            keys = int.from_bytes(data[pos : pos + 8], "little")
            pos = skip_column(data, pos + 8, keys_type, keys)
        granule = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8 + granule * _LC_INDEX_WIDTHS[flags & 0xFF]
        done += granule
    return pos


@dataclass(frozen=True)
class NativeBody:
    body: bytes
    rows: int


def native_for_revision(body: bytes, revision: int) -> NativeBody:
    """Revision-0 Native blocks as ClickHouse writes them for a client of protocol `revision`, and the
    row count. Raises NativeUnsupported for a column type it cannot walk (Dynamic, JSON, Variant, ...)."""
    block_info = revision >= REVISION_WITH_BLOCK_INFO
    flag = revision >= REVISION_WITH_CUSTOM_SERIALIZATION
    out = bytearray()
    pos = total = 0
    try:
        while pos < len(body):
            start = pos
            columns, pos = _varint(body, pos)
            rows, pos = _varint(body, pos)
            total += rows
            if block_info:
                out += _BLOCK_INFO
            out += body[start:pos]
            for _ in range(columns):
                start = pos
                length, pos = _varint(body, pos)
                pos += length
                length, pos = _varint(body, pos)
                type_name = body[pos : pos + length].decode()
                pos += length
                out += body[start:pos]
                if flag:
                    out += b"\x00"  # default serialization (revision 0 output has no sparse columns)
                start, pos = pos, skip_column(body, pos, type_name, rows)
                out += body[start:pos]
    except (IndexError, ValueError) as exc:
        raise NativeUnsupported(f"Native output that could not be walked ({exc})") from None
    if pos != len(body):
        raise NativeUnsupported("Native output that ends inside a block")
    return NativeBody(bytes(out), total)
