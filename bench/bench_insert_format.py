"""What the store format costs: Python encode time and chDB insert time per span, for each way the rows could
travel from the pipeline to ClickHouse, on the same LLM-sized spans as bench_ingest / bench_pipeline.

    .venv/bin/python bench/bench_insert_format.py [--requests 10] [--batch 512] [--repeat 3]

Each request's spans go through the default stages once; then, per format, every request is encoded on its own
(as the pipeline does, one record per request) and the records are joined into one insert of
requests x batch rows into a migrated `otel_traces` (indexes, materialized views and codecs on), each insert
with its own deduplication token (as the drainer sends). Formats:
- json: JSONCompactEachRow from `processing.encode_rows` (orjson), what the pipeline sends today;
- rowbinary: RowBinary encoded here per column type (struct / lookup tables, rows assembled column-wise);
- native: Native blocks encoded here column-wise (array('Q') for numbers, length-prefixed strings joined once),
  LowCardinality columns declared as String and maps as Map(String, ...), converted by ClickHouse on insert;
- native-cc: Native from clickhouse-connect's own serializer (`insert(..., column_oriented=True)`'s transform);
- native-rust: Native from clickhouse-connect's compiled (Rust) encoder, clickhouse-connect-core, when installed
  (not a dependency: `--formats json,native-rust` after `pip install "clickhouse-connect[rust]"`);
- arrow: pyarrow arrays from the columns, one Arrow IPC stream per insert (ArrowStream; streams do not
  concatenate as bytes, so the records' tables are concatenated and written as one stream, counted in encode).
First, every format inserts the same rows into an empty table and must read back exactly what json stored.
Prints µs per span, best and median of the runs (the machine may be shared): encode and insert as CPU time of the
whole process (chDB's threads included), the insert's wall time, what ClickHouse alone spends reading the payload
(`file()` into the table's types, discarded), and the payload's bytes per span. The decision figure is
encode + insert CPU.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracehouse.collector import store
from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.config import load_config
from tracehouse.collector.processing import INSERT_FORMAT, encode_rows, process_batch
from tracehouse.collector.stages import default_stages
from tracehouse.collector.stages.decode import decode_request

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import llm_request  # noqa: E402

_SETTINGS = {"max_partitions_per_insert_block": 0}
_DEC_SCALE = Decimal(10) ** 12
_DEC_LIMIT = Decimal(10) ** 26


# --- LEB128 lengths ------------------------------------------------------------------------------------------


def _leb(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_LEB = [_leb(n) for n in range(1 << 14)]
_LEB_LIMIT = 1 << 14


def _strings(values: Sequence[str]) -> list[bytes]:
    """Each string as LEB128 length + UTF-8, one bytes object per value."""
    encoded = [v.encode() for v in values]
    return [(_LEB[len(b)] if len(b) < _LEB_LIMIT else _leb(len(b))) + b for b in encoded]


def _strings_joined(values: Sequence[str]) -> bytes:
    encoded = [v.encode() for v in values]
    prefixes = [_LEB[n] if n < _LEB_LIMIT else _leb(n) for n in map(len, encoded)]
    return b"".join(chain.from_iterable(zip(prefixes, encoded, strict=True)))


def _decimal(value: Decimal | None) -> int | None:
    if value is None or not value.is_finite() or abs(value) >= _DEC_LIMIT:
        return None
    return int(value * _DEC_SCALE)


# --- RowBinary: per column, one bytes object per row; rows joined column-wise ----------------------------------

_U64, _I64, _U32, _F64 = struct.Struct("<Q"), struct.Struct("<q"), struct.Struct("<I"), struct.Struct("<d")


def _rb_column(ch_type: str, values: list[Any]) -> list[bytes]:
    if ch_type in ("String", "LowCardinality(String)"):
        return _strings(values)
    if ch_type == "DateTime64(9)":
        return [_I64.pack(v) for v in values]
    if ch_type == "UInt64":
        return [_U64.pack(v) for v in values]
    if ch_type == "Nullable(UInt64)":
        return [b"\x01" if v is None else b"\x00" + _U64.pack(v) for v in values]
    if ch_type == "Nullable(Float64)":
        return [b"\x01" if v is None else b"\x00" + _F64.pack(v) for v in values]
    if ch_type == "Nullable(Decimal(38, 12))":
        out = []
        for v in values:
            n = _decimal(v)
            out.append(b"\x01" if n is None else b"\x00" + n.to_bytes(16, "little", signed=True))
        return out
    if ch_type == "Map(LowCardinality(String), String)":
        return [_rb_map(m) for m in values]
    if ch_type == "Map(LowCardinality(String), UInt32)":
        return [
            _LEB[len(m)] + b"".join(k + _U32.pack(c) for k, c in zip(_strings(list(m)), m.values(), strict=True))
            if m
            else b"\x00"
            for m in values
        ]
    if ch_type.startswith("Array("):
        inner = ch_type[6:-1]
        return [_LEB[len(items)] + b"".join(_rb_column(inner, items)) if items else b"\x00" for items in values]
    raise TypeError(ch_type)


def _rb_map(m: dict[str, str]) -> bytes:
    if not m:
        return b"\x00"
    return _LEB[len(m)] + b"".join(chain.from_iterable(zip(_strings(list(m)), _strings(list(m.values())), strict=True)))


def encode_rowbinary(batch: SpanBatch, types: dict[str, str]) -> tuple[bytes, bytes]:
    parts = [_rb_column(types[name], values) for name, values in batch.columns.items()]
    return ",".join(batch.columns).encode(), b"".join(chain.from_iterable(zip(*parts, strict=True)))


# --- Native, column-wise -------------------------------------------------------------------------------------


def _native_column(ch_type: str, values: list[Any]) -> tuple[str, bytes]:
    """(the type declared in the block, the column's data)."""
    if ch_type in ("String", "LowCardinality(String)"):
        return "String", _strings_joined(values)
    if ch_type == "DateTime64(9)":
        return ch_type, array("q", values).tobytes()
    if ch_type == "UInt64":
        return ch_type, array("Q", values).tobytes()
    if ch_type in ("Nullable(UInt64)", "Nullable(Float64)"):
        code, zero = ("Q", 0) if "UInt64" in ch_type else ("d", 0.0)
        nulls = bytes([v is None for v in values])
        return ch_type, nulls + array(code, [zero if v is None else v for v in values]).tobytes()
    if ch_type == "Nullable(Decimal(38, 12))":
        ints = [_decimal(v) for v in values]
        nulls = bytes([n is None for n in ints])
        return ch_type, nulls + b"".join([(n or 0).to_bytes(16, "little", signed=True) for n in ints])
    if ch_type.startswith("Map("):
        value_type = "String" if ch_type.endswith(", String)") else "UInt32"
        offsets = array("Q", [0] * len(values))
        total = 0
        for i, m in enumerate(values):
            total += len(m)
            offsets[i] = total
        keys = list(chain.from_iterable(values))
        vals = list(chain.from_iterable(m.values() for m in values))
        data = _strings_joined(vals) if value_type == "String" else array("I", vals).tobytes()
        return f"Map(String, {value_type})", offsets.tobytes() + _strings_joined(keys) + data
    if ch_type.startswith("Array("):
        inner_type, inner = _native_column(ch_type[6:-1], list(chain.from_iterable(values)))
        offsets = array("Q", [0] * len(values))
        total = 0
        for i, items in enumerate(values):
            total += len(items)
            offsets[i] = total
        return f"Array({inner_type})", offsets.tobytes() + inner
    raise TypeError(ch_type)


def encode_native(batch: SpanBatch, types: dict[str, str]) -> tuple[bytes, bytes]:
    out = [_leb(len(batch.columns)), _leb(len(batch))]
    for name, values in batch.columns.items():
        declared, data = _native_column(types[name], values)
        out += [_strings_joined([name, declared]), data]
    return ",".join(batch.columns).encode(), b"".join(out)


# --- clickhouse-connect's Native serializer ------------------------------------------------------------------


def _cc_encoder(types: dict[str, str]) -> Callable[[SpanBatch, dict[str, str]], tuple[bytes, bytes]]:
    from clickhouse_connect.datatypes.registry import get_from_name
    from clickhouse_connect.driver.insert import InsertContext
    from clickhouse_connect.driver.transform import NativeTransform

    def encode(batch: SpanBatch, _types: dict[str, str]) -> tuple[bytes, bytes]:
        names = list(batch.columns)
        data = list(batch.columns.values())
        context = InsertContext(
            "otel_traces", names, [get_from_name(types[n]) for n in names], data, column_oriented=True
        )
        native = b"".join(NativeTransform.build_insert(context))
        return ",".join(names).encode(), native[native.index(b"\n") + 1 :]  # without its "INSERT ... FORMAT" line

    return encode


def _rust_encoder(types: dict[str, str]) -> Callable[[SpanBatch, dict[str, str]], tuple[bytes, bytes]]:
    """clickhouse-connect's compiled Native encoder (clickhouse-connect-core, `native_codec="rust"`): its private
    `_ch_core.encode_native_block`, as the driver's own insert path calls it, since the driver ignores the codec for
    chDB clients. Not a dependency of the project: `pip install "clickhouse-connect[rust]"` to measure it."""
    try:
        import _ch_core
    except ImportError:
        raise SystemExit('native-rust needs clickhouse-connect-core: pip install "clickhouse-connect[rust]"') from None

    def encode(batch: SpanBatch, _types: dict[str, str]) -> tuple[bytes, bytes]:
        names = list(batch.columns)
        data = list(batch.columns.values())
        return ",".join(names).encode(), _ch_core.encode_native_block(
            names, [types[n] for n in names], data, len(batch), None
        )

    return encode


# --- Arrow ---------------------------------------------------------------------------------------------------


def _arrow_encoder() -> tuple[Callable[[SpanBatch, dict[str, str]], Any], Callable[[list[Any]], bytes]]:
    import pyarrow as pa

    def arrow_type(ch_type: str) -> Any:
        if ch_type in ("String", "LowCardinality(String)"):
            return pa.string()
        if ch_type == "DateTime64(9)":
            return pa.timestamp("ns")
        if ch_type in ("UInt64", "Nullable(UInt64)"):
            return pa.uint64()
        if ch_type == "Nullable(Float64)":
            return pa.float64()
        if ch_type == "Nullable(Decimal(38, 12))":
            return pa.decimal128(38, 12)
        if ch_type.startswith("Map("):
            return pa.map_(pa.string(), pa.string() if ch_type.endswith(", String)") else pa.uint32())
        if ch_type.startswith("Array("):
            return pa.list_(arrow_type(ch_type[6:-1]))
        raise TypeError(ch_type)

    def encode(batch: SpanBatch, types: dict[str, str]) -> Any:
        arrays = []
        for name, values in batch.columns.items():
            kind = arrow_type(types[name])
            if types[name] == "Nullable(Decimal(38, 12))":
                values = [v if v is None or (v.is_finite() and abs(v) < _DEC_LIMIT) else None for v in values]
            arrays.append(pa.array(values, type=kind))
        return pa.Table.from_arrays(arrays, names=list(batch.columns))

    def join(tables: list[Any]) -> bytes:
        table = pa.concat_tables(tables)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    return encode, join


def _check_same_rows(client: Any, formats: dict[str, tuple], batch: SpanBatch, types: dict[str, str]) -> None:
    """Each format must store what json stores, else its figures compare different work."""
    names = list(batch.columns)
    select = f"SELECT {', '.join(f'`{n}`' for n in names)} FROM otel_traces ORDER BY SpanId"
    expected = None
    for fmt, (encode, join, wire) in formats.items():
        client.command("TRUNCATE TABLE otel_traces")
        client.raw_insert("otel_traces", column_names=names, insert_block=join([encode(batch, types)]), fmt=wire)
        rows = client.query(select).result_rows
        expected = rows if expected is None else expected
        if rows != expected or len(rows) != len(batch):
            raise SystemExit(f"{fmt} stores other rows than {next(iter(formats))}: its figures would not compare")
    client.command("TRUNCATE TABLE otel_traces")
    print(f"{', '.join(formats)}: the same {len(batch)} rows read back from each")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10, help="requests (records) per insert")
    parser.add_argument("--batch", type=int, default=512, help="spans per request")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="json,rowbinary,native,native-cc,arrow")
    args = parser.parse_args()
    rng = random.Random(11)
    stages = default_stages(load_config(environ={}))
    batches = [
        process_batch(
            stages, decode_request(ExportTraceServiceRequest.FromString(llm_request(rng, args.batch))).batch, None
        )
        for _ in range(args.requests)
    ]
    spans = args.requests * args.batch
    root = Path(tempfile.mkdtemp(prefix="tracehouse-bench-format-"))
    try:
        client = store.connect(f"chdb://{root}/store")
        store.migrate(client, "")
        # Background merges of earlier inserts would land in whichever insert's CPU time they overlap; they
        # merge the same parts whatever the format, so they are stopped here.
        for (table,) in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
        ).result_rows:
            client.command(f"SYSTEM STOP MERGES `{table}`")
        types = {
            name: kind
            for name, kind in client.query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'otel_traces'"
            ).result_rows
        }
        arrow_encode, arrow_join = _arrow_encoder()
        formats: dict[str, tuple[Callable, Callable[[list[Any]], bytes], str]] = {
            "json": (lambda b, _t: encode_rows(b), lambda parts: b"".join(p[1] for p in parts), INSERT_FORMAT),
            "rowbinary": (encode_rowbinary, lambda parts: b"".join(p[1] for p in parts), "RowBinary"),
            "native": (encode_native, lambda parts: b"".join(p[1] for p in parts), "Native"),
            "native-cc": (_cc_encoder(types), lambda parts: b"".join(p[1] for p in parts), "Native"),
            "arrow": (arrow_encode, arrow_join, "ArrowStream"),
        }
        if "native-rust" in args.formats.split(","):
            formats["native-rust"] = (_rust_encoder(types), lambda parts: b"".join(p[1] for p in parts), "Native")
        chosen = args.formats.split(",")
        _check_same_rows(client, {fmt: formats[fmt] for fmt in chosen}, batches[0], types)
        figures = ("encode_cpu", "insert_cpu", "insert", "parse_cpu")
        results = {fmt: {name: [] for name in figures} for fmt in chosen}
        sizes: dict[str, float] = {}
        names = list(batches[0].columns)
        structure = ", ".join(f"`{name}` {types[name]}" for name in names)
        parse_file = root / "payload"
        for run in range(args.repeat):
            for fmt in chosen[run % len(chosen) :] + chosen[: run % len(chosen)]:
                encode, join, wire = formats[fmt]
                cpu = time.process_time()
                payload = join([encode(b, types) for b in batches])
                results[fmt]["encode_cpu"].append(time.process_time() - cpu)
                started, cpu = time.perf_counter(), time.process_time()
                client.raw_insert(
                    "otel_traces",
                    column_names=names,
                    insert_block=payload,
                    fmt=wire,
                    settings=dict(_SETTINGS, insert_deduplication_token=f"bench-{fmt}-{run}-{time.time_ns()}"),
                )
                results[fmt]["insert"].append(time.perf_counter() - started)
                results[fmt]["insert_cpu"].append(time.process_time() - cpu)
                parse_file.write_bytes(payload)
                cpu = time.process_time()
                client.command(f"SELECT * FROM file('{parse_file}', '{wire}', '{structure}') FORMAT Null")
                results[fmt]["parse_cpu"].append(time.process_time() - cpu)
                sizes[fmt] = len(payload) / spans
        stored = client.query("SELECT count() FROM otel_traces").result_rows[0][0]
        print(
            f"{spans} LLM spans per insert ({args.requests} records of {args.batch}), {args.repeat} runs on chDB, "
            f"stored {stored} of {spans * args.repeat * len(chosen)} rows. µs per span, best / median of the runs;\n"
            "cpu = CPU time of all the process's threads (chDB runs in-process; load inflates it less than wall);\n"
            "parse cpu = ClickHouse reading "
            "the same payload into the table's types and discarding it (the format's own cost)"
        )
        print(
            f"  {'format':<10} {'encode cpu':>15} {'insert cpu':>15} {'insert wall':>15} {'parse cpu':>15}"
            f" {'encode+insert':>15} {'bytes/span':>10}"
        )
        base = None
        for fmt in chosen:
            us = {name: [v / spans * 1e6 for v in values] for name, values in results[fmt].items()}
            total = [e + i for e, i in zip(us["encode_cpu"], us["insert_cpu"], strict=True)]
            base = base or statistics.median(total)
            cells = "".join(f" {min(us[n]):6.1f} / {statistics.median(us[n]):6.1f}" for n in figures)
            print(
                f"  {fmt:<10}{cells} {min(total):6.1f} / {statistics.median(total):6.1f} {sizes[fmt]:10.0f}"
                f"  (median {100 * (1 - statistics.median(total) / base):+.0f}% vs {chosen[0]})"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
