"""An acknowledged span is stored, exactly once: on a real collector whose drainer hits an unexpected
error, with timestamps and values at the edges of what ClickHouse holds, and with poison records in
the spool (isolated by bisection, the collector killed in the middle of it)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from collector_process import CollectorProcess, seed_store, sql_rows, wait_drained
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.spool import Spool
from tracehouse.collector.writer import TraceStore

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
T0 = 1_700_000_000_000_000_000
MAX_NS = 2**63 - 1
U64 = 2**64 - 1


def _export(endpoint: str, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(endpoint) as channel:
        reply = channel.unary_unary(EXPORT)(request.SerializeToString(), timeout=20)
    return ExportTraceServiceResponse.FromString(reply)


def _new_request(service: str) -> tuple[ExportTraceServiceRequest, object]:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    return request, rs.scope_spans.add()


def _plain_request(service: str, first_id: int, spans: int) -> ExportTraceServiceRequest:
    request, scope = _new_request(service)
    for i in range(first_id, first_id + spans):
        span = scope.spans.add()
        span.trace_id, span.span_id = (i + 1).to_bytes(16, "big"), (i + 1).to_bytes(8, "big")
        span.name = f"op-{i}"
        span.start_time_unix_nano, span.end_time_unix_nano = T0 + i, T0 + i + 1000
    return request


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _metrics(collector: CollectorProcess) -> dict[str, float]:
    _, text = _get(collector.http_endpoint + "/metrics")
    values = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _counts(data_dir: Path, service: str) -> dict[str, int]:
    rows = sql_rows(
        data_dir, f"SELECT SpanId, count() AS n FROM otel_traces WHERE ServiceName = '{service}' GROUP BY 1"
    )
    return {row["SpanId"]: int(row["n"]) for row in rows}


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- 1. the drainer cannot die quietly -------------------------------------------------------------


def test_drainer_error_is_loud_and_not_ready_then_it_recovers_and_stores_everything_once(start_collector, tmp_path):
    fault = tmp_path / "spool-read-fails"
    collector = start_collector(env={"TRACEHOUSE_FAULT_SPOOL_READ_ERROR_FILE": str(fault)}, migrated=True)
    sent: set[str] = set()

    def send(first: int) -> None:
        response = _export(collector.grpc_endpoint, _plain_request("drainer-error", first, 20))
        assert response.partial_success.rejected_spans == 0
        sent.update(f"{i + 1:016x}" for i in range(first, first + 20))

    send(0)
    wait_drained(collector.data_dir)
    assert _get(collector.http_endpoint + "/readyz")[0] == 200

    fault.touch()  # the drainer's next spool read raises OSError, as with no file descriptors left
    for k in range(1, 6):
        send(k * 20)  # still acknowledged: they are durable in the spool

    def not_ready():
        status, body = _get(collector.http_endpoint + "/readyz")
        return json.loads(body) if status == 503 else None

    report = _wait_for(not_ready, 20, "/readyz to say not ready")
    assert any(p.startswith("drainer failing: OSError") for p in report["problems"]), report
    drainer = report["drainer"]
    assert drainer["alive"] and drainer["failing"] and drainer["restarts"] >= 1
    assert "Too many open files" in drainer["last_error"] and drainer["pending_bytes"] > 0
    assert drainer["last_success_age_seconds"] is not None  # the first batch went in
    metrics = _metrics(collector)
    assert metrics['tracehouse_task_failing{task="drainer"}'] == 1
    assert metrics['tracehouse_task_errors_total{task="drainer"}'] >= 1
    assert metrics['tracehouse_task_up{task="drainer"}'] == 1
    assert metrics["tracehouse_spool_bytes"] > 0
    log = collector.log()
    assert "drainer failed, restarting" in log and "Traceback" in log and "OSError" in log

    fault.unlink()
    send(120)
    wait_drained(collector.data_dir)
    _wait_for(lambda: _get(collector.http_endpoint + "/readyz")[0] == 200, 20, "/readyz to recover")
    status, body = _get(collector.http_endpoint + "/readyz")
    assert json.loads(body)["drainer"]["failing"] is False
    assert _metrics(collector)['tracehouse_task_failing{task="drainer"}'] == 0
    assert _counts(collector.data_dir, "drainer-error") == dict.fromkeys(sent, 1)


def test_a_steady_flow_waits_for_the_linger_and_a_request_after_a_quiet_spell_is_inserted_at_once(
    start_collector, tmp_path
):
    """batch_linger_ms through the collector: the first request is stored at once (nothing was inserted before it),
    the ones that follow within the linger wait for it and go into one insert together; none is lost."""
    linger = 6.0
    collector = start_collector("--batch-linger-ms", str(int(linger * 1000)), migrated=True)

    def inserts() -> float:
        return _metrics(collector).get("tracehouse_insert_batches_total", 0.0)

    def unsent() -> float:
        return _metrics(collector)["tracehouse_spool_bytes"]

    before = inserts()
    sent = time.monotonic()
    _export(collector.grpc_endpoint, _plain_request("linger-e2e", 0, 20))
    _wait_for(lambda: unsent() == 0, 20, "the first request stored")
    assert time.monotonic() - sent < linger / 2  # not held back
    assert inserts() == before + 1
    for n in range(1, 4):  # a steady flow within the linger
        _export(collector.grpc_endpoint, _plain_request("linger-e2e", n * 100, 20))
    time.sleep(1.0)
    assert unsent() > 0 and inserts() == before + 1  # held for the linger
    _wait_for(lambda: unsent() == 0, 30, "the rest stored")
    assert inserts() == before + 2  # the three in one insert
    assert sorted(_counts(tmp_path / "data", "linger-e2e").values()) == [1] * 80
    # A score right after an insert does not linger: a person who just sent one reads it back at once.
    score = json.dumps({"trace_id": "ab" * 16, "name": "thumbs", "value": 1}).encode()
    posted = urllib.request.Request(
        collector.http_endpoint + "/v1/scores", data=score, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(posted, timeout=10) as reply:
        assert reply.status == 200
    sent = time.monotonic()
    _wait_for(lambda: unsent() == 0, 20, "the score stored")
    assert time.monotonic() - sent < linger / 2 and inserts() == before + 3


# --- 2. what decode lets through is insertable -----------------------------------------------------


def test_every_storable_time_round_trips_exactly(tmp_path):
    """DateTime64(9) as the writer encodes it, through real chDB: every digit count of seconds, the
    edges, random values. (Times before 1973-03-03 used to be read as dates and refused.)"""
    values = {1, MAX_NS, 999_999_999, 1_000_000_000, T0}
    for digits in range(1, 19):
        values |= {10**digits - 1, 10**digits, 10**digits + 1}
    rng = random.Random(7)
    values |= {rng.randrange(1, MAX_NS) for _ in range(40)}
    values |= {rng.randrange(1, 10**17) for _ in range(20)}
    ordered = sorted(v for v in values if 0 < v <= MAX_NS)
    columns = {name: [] for name in OTEL_COLUMNS}
    for i, ns in enumerate(ordered):
        row = _row(f"{i + 1:016x}", "round-trip", ns, 1)
        row["Events.Timestamp"] = [ns, T0]
        row["Events.Name"], row["Events.Attributes"] = ["a", "b"], [{}, {}]
        for name in OTEL_COLUMNS:
            columns[name].append(row[name])
    store = TraceStore(f"chdb://{tmp_path / 'store'}")
    try:
        store.insert(*encode_rows(SpanBatch(columns)))
        rows = (
            store.ensure_ready()
            .query(
                "SELECT toUnixTimestamp64Nano(Timestamp), arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) "
                "FROM otel_traces WHERE ServiceName = 'round-trip' ORDER BY Timestamp"
            )
            .result_rows
        )
    finally:
        store.close()
    assert [r[0] for r in rows] == ordered
    assert [list(r[1]) for r in rows] == [[ns, T0] for ns in ordered]


def _attr(span, key: str, value) -> None:
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, bytes):
        kv.value.bytes_value = value
    else:
        kv.value.string_value = value


# name -> (start, end, event times, attributes, expected: None = rejected, else (Timestamp, Duration, event times))
EDGE_SPANS = {
    "start-unset": (0, T0, [], {}, None),
    "start-after-2262": (MAX_NS + 1, U64, [], {}, None),
    "start-u64-max": (U64, U64, [], {}, None),
    "start-1ns": (1, 2, [], {}, (1, 1, [])),
    "start-1970-5s": (5_000_000_001, 5_000_000_002, [], {}, (5_000_000_001, 1, [])),
    "start-before-1973": (99_999_999_999_999_999, 10**17, [], {}, (99_999_999_999_999_999, 1, [])),
    "start-last-storable": (MAX_NS, U64, [], {}, (MAX_NS, U64 - MAX_NS, [])),
    "end-before-start": (T0, T0 - 5, [], {}, (T0, 0, [])),
    "end-unset": (T0, 0, [], {}, (T0, 0, [])),
    "events-out-of-range": (T0, T0 + 10, [0, U64, MAX_NS + 1, 1, T0 + 3], {}, (T0, 10, [T0, T0, T0, 1, T0 + 3])),
    "huge-cost": (T0, T0 + 1, [], {"llm.cost.total": "1e30", "gen_ai.request.model": "m"}, (T0, 1, [])),
    "nan-temperature": (
        T0,
        T0 + 1,
        [],
        {"gen_ai.request.temperature": math.nan, "gen_ai.request.top_p": math.inf},
        (T0, 1, []),
    ),
    "huge-tokens": (
        T0,
        T0 + 1,
        [],
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 2**63 - 1,
            "gen_ai.usage.output_tokens": 2**63 - 1,
            "gen_ai.response.time_to_first_chunk": 1e300,
        },
        (T0, 1, []),
    ),
    "odd-strings": (
        T0,
        T0 + 1,
        [],
        {
            "": "empty key",
            "nul\x00key": "nul\x00value",
            "bmp-edge": "\uffff\U0010ffff😀",
            "min-int": -(2**63),
            "bytes": b"\x00\xff",
            "nan": math.nan,
            "big": "9" * 5000,
        },
        (T0, 1, []),
    ),
}


@pytest.fixture(scope="module")
def edge_collector(tmp_path_factory, store_template):
    proc = CollectorProcess(tmp_path_factory.mktemp("edges") / "data", store_template=store_template).start()
    yield proc
    proc.kill()


def test_values_at_the_edges_are_rejected_by_name_or_stored_queryable(edge_collector):
    collector = edge_collector
    request, scope = _new_request("edges")
    ids = {}
    for i, (name, (start, end, events, attrs, _)) in enumerate(EDGE_SPANS.items()):
        span = scope.spans.add()
        span.trace_id, span.span_id = b"\x07" * 16, (i + 1).to_bytes(8, "big")
        span.name, span.start_time_unix_nano, span.end_time_unix_nano = name, start, end
        span.kind, span.status.code = 99, 99  # out-of-range enums
        for key, value in attrs.items():
            _attr(span, key, value)
        _attr(span, "dup", "first")
        _attr(span, "dup", "second")
        for n, t in enumerate(events):
            event = span.events.add()
            event.name, event.time_unix_nano = f"e{n}", t
        span.links.add()  # a link with no ids set is stored (one of a bad length rejects the span: test_ingest_errors)
        ids[name] = f"{i + 1:016x}"
    response = _export(collector.grpc_endpoint, request)
    rejected = [name for name, spec in EDGE_SPANS.items() if spec[4] is None]
    assert response.partial_success.rejected_spans == len(rejected)
    message = response.partial_success.error_message
    assert "'start-unset': start_time_unix_nano is unset" in message
    assert "'start-u64-max': start_time_unix_nano 18446744073709551615 is after 2262" in message
    assert "3 event(s) with an unset or out-of-range time stored at their span's start" in message

    rows = sql_rows(
        collector.data_dir,
        "SELECT SpanName, toString(toUnixTimestamp64Nano(Timestamp)) AS ts, toString(Duration) AS d, "
        "arrayMap(t -> toString(toUnixTimestamp64Nano(t)), Events.Timestamp) AS ev, SpanAttributes['dup'] AS dup, "
        "SpanKind, StatusCode, CostUsd, CostSource, InputCostUsd, Temperature, toString(InputTokens) AS tokens, "
        "SpanAttributes AS attrs "
        "FROM otel_traces WHERE ServiceName = 'edges'",
    )
    stored = {row["SpanName"]: row for row in rows}
    assert len(rows) == len(stored) == len(EDGE_SPANS) - len(rejected)
    for name, (_, _, _, _, expected) in EDGE_SPANS.items():
        if expected is None:
            assert name not in stored
            continue
        row = stored[name]
        assert (int(row["ts"]), int(row["d"]), [int(t) for t in row["ev"]]) == expected, name
        assert (row["dup"], row["SpanKind"], row["StatusCode"]) == ("second", "Unspecified", "Unset")
    assert stored["huge-cost"]["CostUsd"] is None and stored["huge-cost"]["attrs"]["llm.cost.total"] == "1e30"
    assert stored["nan-temperature"]["Temperature"] is None
    assert stored["huge-tokens"]["tokens"] == str(2**63 - 1)
    # priced at over 10^12 USD: no cost at all (not a NULL total beside stored parts), counted as unpriced
    huge = stored["huge-tokens"]
    assert (huge["CostUsd"], huge["InputCostUsd"], huge["CostSource"]) == (None, None, "unknown")
    odd = stored["odd-strings"]["attrs"]
    assert odd[""] == "empty key" and odd["nul\x00key"] == "nul\x00value" and odd["bmp-edge"] == "\uffff\U0010ffff😀"
    assert odd["min-int"] == str(-(2**63)) and odd["nan"] == "NaN" and len(odd["big"]) == 5000
    assert not (collector.data_dir / "deadletter").exists(), "an acknowledged span was dead-lettered"


def test_a_request_spanning_many_days_is_stored(edge_collector):
    """The table is partitioned by day: one insert touching 150 partitions must not be refused (and retried forever)."""
    day = 86_400 * 10**9
    request = _plain_request("many-days", 0, 150)
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.start_time_unix_nano, span.end_time_unix_nano = T0 - i * day, T0 - i * day + 1
    assert _export(edge_collector.grpc_endpoint, request).partial_success.rejected_spans == 0
    rows = sql_rows(
        edge_collector.data_dir,
        "SELECT uniqExact(toDate(Timestamp)) AS days, count() AS n FROM otel_traces WHERE ServiceName = 'many-days'",
    )
    assert (int(rows[0]["days"]), int(rows[0]["n"])) == (150, 150)


def test_json_without_timestamps_and_bad_text_are_refused_by_name(edge_collector):
    collector = edge_collector

    def post(body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
        request = urllib.request.Request(collector.traces_url, data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()) if content_type.endswith("json") else {}
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()) if content_type.endswith("json") else {}

    def spans(*items: dict) -> bytes:
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "json-edges"}}]}
        return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(items)}]}]}).encode()

    trace = "5b8efff798038103d269b633813fc60c"
    timed = {
        "traceId": trace,
        "spanId": "00000000000000a1",
        "name": "timed",
        "startTimeUnixNano": "5000000001",
        "endTimeUnixNano": 5000000009,
        "attributes": [{"key": "emoji", "value": {"stringValue": "\ud83d\ude00"}}],
    }
    untimed = {"traceId": trace, "spanId": "00000000000000a2", "name": "no-timestamps"}
    status, reply = post(spans(timed, untimed))
    assert status == 200
    assert int(reply["partialSuccess"]["rejectedSpans"]) == 1
    assert "span 'no-timestamps': start_time_unix_nano is unset" in reply["partialSuccess"]["errorMessage"]

    lone = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\\ud800"}]}]}]}'
    status, reply = post(lone)
    assert status == 400 and "surrogate" in reply["message"]
    for shape in (b'{"resourceSpans":[null]}', b'{"resourceSpans":[{"scopeSpans":[{"spans":[7]}]}]}'):
        status, reply = post(shape)
        assert status == 400 and "must be lists of objects" in reply["message"], reply
        assert "NoneType" not in reply["message"] and "attribute" not in reply["message"]
    bad_utf8 = _plain_request("json-edges", 50, 1)
    bad_utf8.resource_spans[0].scope_spans[0].spans[0].name = "ABCD"
    status, _ = post(bad_utf8.SerializeToString().replace(b"ABCD", b"\xff\xfe\xfd\xfc"), "application/x-protobuf")
    assert status == 400

    rows = sql_rows(
        collector.data_dir,
        "SELECT SpanName, toString(toUnixTimestamp64Nano(Timestamp)) AS ts, toString(Duration) AS d, "
        "SpanAttributes['emoji'] AS e "
        "FROM otel_traces WHERE ServiceName = 'json-edges'",
    )
    assert rows == [{"SpanName": "timed", "ts": "5000000001", "d": "8", "e": "😀"}]


def test_costs_the_rollups_could_not_add_up_are_not_taken_as_costs(edge_collector):
    # Decimal(38, 12) holds < 10^26 and ClickHouse's sum() of it wraps around silently: three calls "costing"
    # 9.9e25 each made llm_daily's total -4.3e25. A cost is at most 10^12 USD a call, so 10^14 calls add up.
    request, scope = _new_request("cost-sums")
    for i, cost in enumerate(("9.9e25", "9.9e25", "9.9e25", "999999999999", "1000000000000")):
        span = scope.spans.add()
        span.trace_id, span.span_id = b"\x08" * 16, (i + 1).to_bytes(8, "big")
        span.name, span.start_time_unix_nano, span.end_time_unix_nano = f"call-{i}", T0, T0 + 1
        for key, value in {"gen_ai.operation.name": "chat", "gen_ai.usage.cost": cost}.items():
            _attr(span, key, value)
    assert _export(edge_collector.grpc_endpoint, request).partial_success.rejected_spans == 0
    rows = sql_rows(
        edge_collector.data_dir,
        "SELECT SpanName, toString(CostUsd) AS cost FROM otel_traces WHERE ServiceName = 'cost-sums' ORDER BY 1",
    )
    assert [row["cost"] for row in rows] == [None, None, None, "999999999999", None]
    (daily,) = sql_rows(
        edge_collector.data_dir, "SELECT toString(sum(cost_usd)) AS total FROM llm_daily WHERE service = 'cost-sums'"
    )
    assert daily["total"] == "999999999999"


# --- 3. poison records are isolated by bisection ---------------------------------------------------


def _row(span_id: str, service: str, ts: int, duration) -> dict:
    return {
        "Timestamp": ts,
        "TraceId": "ab" * 16,
        "SpanId": span_id,
        "ParentSpanId": "",
        "TraceState": "",
        "SpanName": "op",
        "SpanKind": "Internal",
        "ServiceName": service,
        "ResourceAttributes": {},
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": {},
        "Duration": duration,
        "StatusCode": "Unset",
        "StatusMessage": "",
        **{name: [] for name in OTEL_COLUMNS if name.startswith(("Events.", "Links."))},
    }


RECORDS, ROWS_PER_RECORD, POISON = 600, 5, (17, 18, 200, 333, 480, 599)


def _spool_poisoned_records(
    data_dir: Path,
    service: str,
    records: int = RECORDS,
    poison: Collection[int] = POISON,
    by_name: bool = False,
) -> tuple[set[str], set[str]]:
    """Records put straight into a stopped collector's spool (decode cannot produce a refused row any more):
    in each poison record, row 2 has a Duration ClickHouse refuses, or with `by_name` a valid row named `poison`
    that a rule added to the store refuses, the calls priced (llm_daily's view counts them). Returns (good span
    ids, poison span ids)."""
    spool = Spool(data_dir / "spool", budget_bytes=1 << 30)
    spool.open()
    good, bad = set(), set()
    end = 0
    for r in range(records):
        rows = []
        for k in range(ROWS_PER_RECORD):
            span_id = f"{r:08x}{k:08x}"
            poisoned = r in poison and k == 2
            (bad if poisoned else good).add(span_id)
            if by_name:
                rows.append(dict(_row(span_id, service, T0 + r, 5), SpanName="poison" if poisoned else "op"))
            else:
                rows.append(_row(span_id, service, T0 + r, "not a number" if poisoned else 5))
        columns = {name: [row[name] for row in rows] for name in OTEL_COLUMNS}
        if by_name:
            columns["CostSource"] = ["provided"] * ROWS_PER_RECORD
            columns["CostUsd"] = [Decimal("0.25")] * ROWS_PER_RECORD
        end = spool.append(*encode_rows(SpanBatch(columns)), ROWS_PER_RECORD, r.to_bytes(16, "big"))
    asyncio.run(spool.sync(end))
    spool.close()
    return good, bad


def test_poison_rows_are_bisected_out_in_few_inserts_and_a_kill_mid_bisection_stores_once(tmp_path, store_template):
    data_dir = tmp_path / "data"
    good, bad = _spool_poisoned_records(data_dir, "poison")

    collector = CollectorProcess(data_dir, store_template=store_template).start()
    try:
        # Kill -9 in the middle of the isolation: some halves inserted, not all of the bad rows found.
        _wait_for(
            lambda: _metrics(collector).get('tracehouse_insert_failures_total{kind="rejected"}', 0) >= 8,
            60,
            "the bisection to start",
        )
        collector.kill()
        assert collector.log().count("dead-lettered") < len(POISON), "the kill came after the isolation ended"
    finally:
        collector.kill()
    collector = CollectorProcess(data_dir).start()
    try:
        wait_drained(data_dir)
        metrics = _metrics(collector)
        counts = _counts(data_dir, "poison")
    finally:
        collector.kill()
    assert counts == dict.fromkeys(good, 1), "good spans lost or duplicated"
    letters = sorted((data_dir / "deadletter").glob("*.rows"))
    assert len(letters) == len(POISON)
    assert {json.loads(line)[2] for path in letters for line in path.read_bytes().splitlines()} == bad
    for path in letters:
        assert path.stat().st_mode & 0o777 == 0o600
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["rows"] == 1 and "Code:" in meta["reason"]
    # The restarted collector redid the isolation alone: inserts are O(k log n), not one per record.
    attempts = metrics["tracehouse_insert_batches_total"] + metrics['tracehouse_insert_failures_total{kind="rejected"}']
    bound = 2 * len(POISON) * (math.log2(RECORDS) + math.log2(ROWS_PER_RECORD) + 2)
    assert attempts <= bound, f"{attempts} inserts to isolate {len(POISON)} bad rows"
    assert metrics["tracehouse_dead_lettered_rows_total"] == len(POISON)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (data_dir / "spool").glob("*.seg"))


def _run_ddl(data_dir: Path, *statements: str) -> None:
    """DDL on a stopped collector's store, in an interpreter of its own (chDB opens one store per process)."""
    code = (
        "import sys; from pathlib import Path; from tracehouse.collector import store; "
        "from tracehouse.collector.config import Config; "
        "client = store.connect(Config(data_dir=Path(sys.argv[1])).store_url)\n"
        "for statement in sys.argv[2:]: client.command(statement)"
    )
    subprocess.run([sys.executable, "-c", code, str(data_dir), *statements], check=True, timeout=120)


def test_a_view_that_fails_on_stored_rows_stores_each_span_once_and_drains_on(tmp_path, store_template):
    # A materialized view of the user's own that throws on some rows: ClickHouse has written otel_traces' part
    # when the view fails, so re-inserting the rows (bisection's halves under new tokens) would store them twice.
    data_dir = tmp_path / "data"
    seed_store(data_dir, store_template)
    _run_ddl(
        data_dir,
        "CREATE TABLE user_names (SpanName String, n UInt8) ENGINE = MergeTree ORDER BY tuple()",
        "CREATE MATERIALIZED VIEW user_names_mv TO user_names AS "
        "SELECT SpanName, toUInt8(if(SpanName = 'poison', 'x', '1')) AS n FROM otel_traces",
    )
    good, bad = _spool_poisoned_records(data_dir, "view-poison", 40, {3, 17, 30}, by_name=True)
    collector = CollectorProcess(data_dir).start()
    try:
        wait_drained(data_dir)
        metrics = _metrics(collector)
        counts = _counts(data_dir, "view-poison")
        log = collector.log()
    finally:
        collector.kill()
    assert counts == dict.fromkeys(good | bad, 1), "spans lost or stored twice"
    # The rollup's view ran before the user's on some stores (the order is the store's): the retry sent it the
    # same block again, which its table's deduplication window (schema/0027) drops.
    (daily,) = sql_rows(
        data_dir,
        "SELECT toUInt64(sum(calls)) AS calls, toString(sum(cost_usd)) AS cost FROM llm_daily "
        "WHERE service = 'view-poison'",
    )
    assert (int(daily["calls"]), Decimal(daily["cost"])) == (len(good | bad), Decimal("0.25") * len(good | bad))
    assert metrics.get('tracehouse_insert_failures_total{kind="view"}', 0) >= 1
    assert "a materialized view refused these rows" in log and "user_names_mv" in log
    assert not list((data_dir / "deadletter").glob("*.rows")), "stored rows dead-lettered as refused"


_REPLAY = """
import json, sys
from decimal import Decimal
from pathlib import Path
from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.config import Config
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.writer import TraceStore
rows = json.loads(sys.argv[2])
columns = {name: [row[name] for row in rows] for name in OTEL_COLUMNS}
columns["CostSource"], columns["CostUsd"] = ["provided"] * len(rows), [Decimal("0.25")] * len(rows)
store = TraceStore(Config(data_dir=Path(sys.argv[1])).store_url)
for _ in range(2):
    store.insert(*encode_rows(SpanBatch(columns)), "replayed-token")
client = store.ensure_ready()
print(json.dumps([client.query(sql).result_rows[0][0] for sql in sys.argv[3:]]))
"""


def test_an_insert_replayed_under_its_token_is_counted_once_by_every_rollup(tmp_path, store_template):
    # The drainer's replay after a crash (and its retry past a failed view) sends an insert again under the same
    # token: otel_traces dropped it, but each view's table took the block again and llm_daily counted calls twice.
    data_dir = tmp_path / "data"
    seed_store(data_dir, store_template)
    rows = [_row(f"{i:016x}", "replayed", T0 + i, 5) for i in range(5)]
    counts = [
        "SELECT count() FROM otel_traces WHERE ServiceName = 'replayed'",
        "SELECT toUInt64(sum(calls)) FROM llm_daily WHERE service = 'replayed'",
        "SELECT count() FROM otel_traces_trace_id_ts",
    ]
    out = subprocess.run(
        [sys.executable, "-c", _REPLAY, str(data_dir), json.dumps(rows), *counts],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert json.loads(out.stdout) == [5, 5, 1]


def test_rows_a_check_constraint_refuses_are_dead_lettered_and_the_rest_stored(tmp_path, store_template):
    # Code 469 (VIOLATED_CONSTRAINT) was not known as a refusal: the drainer retried the range forever, and every
    # later span waited behind it.
    data_dir = tmp_path / "data"
    seed_store(data_dir, store_template)
    _run_ddl(data_dir, "ALTER TABLE otel_traces ADD CONSTRAINT no_poison CHECK SpanName != 'poison'")
    good, bad = _spool_poisoned_records(data_dir, "check-poison", 40, {3, 17, 30}, by_name=True)
    collector = CollectorProcess(data_dir).start()
    try:
        wait_drained(data_dir)
        counts = _counts(data_dir, "check-poison")
    finally:
        collector.kill()
    assert counts == dict.fromkeys(good, 1)
    letters = sorted((data_dir / "deadletter").glob("*.rows"))
    assert {json.loads(line)[2] for path in letters for line in path.read_bytes().splitlines()} == bad
    assert all("VIOLATED_CONSTRAINT" in json.loads(p.with_suffix(".json").read_text())["reason"] for p in letters)


@pytest.mark.parametrize("kind", ["segment", "checkpoint"])
def test_spool_files_are_private(tmp_path, kind):
    spool = Spool(tmp_path / "spool", budget_bytes=1 << 20)
    spool.open()
    asyncio.run(spool.sync(spool.append(b"A", b"[1]\n", 1)))
    spool.commit(spool.synced)
    paths = list((tmp_path / "spool").glob("*.seg")) if kind == "segment" else [tmp_path / "spool" / "checkpoint"]
    assert paths and all(p.stat().st_mode & 0o777 == 0o600 for p in paths)
