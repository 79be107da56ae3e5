"""What one insert holds (issue 19), on the real embedded store: the direct writer (spool off) and the spool
drainer group requests / records into inserts of at most batch_max_bytes (a bigger one alone), and hand the
store the pieces themselves, not a joined copy of them; every row is stored once."""

from __future__ import annotations

import asyncio
import time

from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
from tracehouse.collector.metrics import CollectorMetrics
from tracehouse.collector.processing import encode_rows
from tracehouse.collector.spool import Spool
from tracehouse.collector.writer import DirectWriter, SpoolDrainer, TraceStore

T0 = 1_700_000_000_000_000_000


class RecordingStore(TraceStore):
    """The real store, noting the pieces of every insert it is handed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.inserts: list[list[bytes]] = []

    def insert(self, header: bytes, payload: bytes | list[bytes], token: str | None = None, table: str = "") -> None:
        self.inserts.append(payload if isinstance(payload, list) else [payload])
        super().insert(header, payload, token, table)


def _request(service: str, first: int, rows: int, pad: int = 2000, without: str = "") -> tuple[bytes, bytes]:
    """Encoded rows of `rows` spans, each ~`pad` bytes (its status message), span ids from `first`; `without` a
    column: another column layout, which the spool keeps apart from the full one."""
    columns: dict[str, list] = {name: [] for name in OTEL_COLUMNS}
    for i in range(first, first + rows):
        row = {
            "Timestamp": T0 + i,
            "TraceId": "ab" * 16,
            "SpanId": f"{i:016x}",
            "ParentSpanId": "",
            "TraceState": "",
            "SpanName": "op",
            "SpanKind": "Internal",
            "ServiceName": service,
            "ResourceAttributes": {},
            "ScopeName": "",
            "ScopeVersion": "",
            "SpanAttributes": {},
            "Duration": 1,
            "StatusCode": "Unset",
            "StatusMessage": "x" * pad,
        }
        for name in OTEL_COLUMNS:
            columns[name].append(row.get(name, []))
    columns.pop(without, None)
    return encode_rows(SpanBatch(columns))


def _stored(store: TraceStore, service: str) -> tuple[int, int]:
    client = store.ensure_ready()
    query = "SELECT count(), uniqExact(SpanId) FROM otel_traces WHERE ServiceName = {s:String}"
    ((count, distinct),) = client.query(query, parameters={"s": service}).result_rows
    return count, distinct


def test_the_direct_writer_inserts_at_most_the_byte_cap_and_the_requests_themselves(tmp_path):
    """Spool off: requests waiting together go into inserts of at most max_bytes, in order; a bigger one alone."""
    sizes = [10, 10, 40, 10, 10, 10, 10, 10]  # rows per request; the third is bigger than the cap by itself
    requests, first = [], 0
    for rows in sizes:
        requests.append(_request("direct-capped", first, rows))
        first += rows
    small = len(requests[0][1])
    cap = 3 * small + small // 2  # three small requests fit, a fourth does not

    async def scenario(store: RecordingStore) -> None:
        store.ensure_ready()
        writer = DirectWriter(store, CollectorMetrics(), max_rows=10_000, max_bytes=cap)
        writer.start()
        await asyncio.sleep(0.05)
        await asyncio.gather(
            *(writer.write(header, payload, rows) for (header, payload), rows in zip(requests, sizes, strict=True))
        )
        await writer.stop(5)

    store = RecordingStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        groups = [
            [next(i for i, r in enumerate(requests) if r[1] is piece) for piece in insert] for insert in store.inserts
        ]
        assert groups == [[0, 1], [2], [3, 4, 5], [6, 7]]  # identity: no joined copy
        assert all(sum(map(len, insert)) <= cap for insert in store.inserts if len(insert) > 1)
        assert _stored(store, "direct-capped") == (sum(sizes), sum(sizes))
    finally:
        store.close()


def test_the_drainer_inserts_the_spool_records_as_read_within_the_byte_cap(tmp_path):
    """Spool on: the drainer's inserts are runs of the spool's records, each run under max_bytes (which counts a
    record's framing too: two fit, not three), every row once."""
    header = b""
    payloads = []

    async def scenario(store: RecordingStore) -> None:
        nonlocal header
        spool = Spool(tmp_path / "spool", budget_bytes=64 << 20)
        spool.open()
        end = 0
        for n in range(9):
            header, payload = _request("drain-capped", n * 10, 10)
            payloads.append(payload)
            end = spool.append(header, payload, 10)
        await spool.sync(end)
        store.ensure_ready()
        drainer = SpoolDrainer(
            spool, store, CollectorMetrics(), 10_000, 0, tmp_path / "deadletter", max_bytes=len(payloads[0]) * 5 // 2
        )
        drainer.start()
        for _ in range(400):
            if spool.committed == end:
                break
            await asyncio.sleep(0.05)
        await drainer.stop(1)
        assert spool.committed == end
        spool.close()

    store = RecordingStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        assert [len(insert) for insert in store.inserts] == [2, 2, 2, 2, 1]
        assert [piece for insert in store.inserts for piece in insert] == payloads  # each record as it is
        assert _stored(store, "drain-capped") == (90, 90)
    finally:
        store.close()


def test_the_drainer_writes_its_intent_and_checkpoint_off_the_event_loop(tmp_path, monkeypatch):
    """Each insert's intent and checkpoint are files written and fsynced twice; on a slow disk that stalled the
    event loop the receivers answer on (up to 142 ms measured). With every such write taking 0.4 s, the loop
    still ticks while the drainer stores every record."""
    from tracehouse.collector import spool as spool_module

    real = spool_module._write_atomic

    def slow_disk(path, data):
        import time

        time.sleep(0.4)
        real(path, data)

    monkeypatch.setattr(spool_module, "_write_atomic", slow_disk)
    gaps: list[float] = []

    async def scenario(store: TraceStore) -> None:
        spool = Spool(tmp_path / "spool", budget_bytes=64 << 20)
        spool.open()
        end = 0
        for n in range(4):
            header, payload = _request("drain-off-loop", n * 10, 10)
            end = spool.append(header, payload, 10)
        await spool.sync(end)
        store.ensure_ready()
        one_record = len(payload) + 64
        drainer = SpoolDrainer(
            spool, store, CollectorMetrics(), 10_000, 0, tmp_path / "deadletter", max_bytes=one_record
        )
        drainer.start()
        loop = asyncio.get_running_loop()
        last = loop.time()
        for _ in range(400):
            await asyncio.sleep(0.02)
            now = loop.time()
            gaps.append(now - last)
            last = now
            if spool.committed == end:
                break
        await drainer.stop(1)
        assert spool.committed == end
        spool.close()

    store = TraceStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        assert _stored(store, "drain-off-loop") == (40, 40)
    finally:
        store.close()
    assert len(gaps) > 10  # four inserts, two slow writes each: > 3 s of draining
    assert max(gaps) < 0.3, f"the event loop stalled {max(gaps):.2f} s"


def test_the_drainer_inserts_at_once_after_a_quiet_spell_and_at_most_once_a_linger_under_a_steady_flow(tmp_path):
    """batch_linger_ms counts from the previous insert's start: a record after a quiet spell is inserted at once; the
    records that follow within the linger wait for it and go in one insert (each insert is a part for ClickHouse to
    write and merge again, bench/bench_merges.py)."""
    linger_ms = 5000
    events: dict[str, float] = {}

    async def scenario(store: RecordingStore) -> None:
        spool = Spool(tmp_path / "spool", budget_bytes=64 << 20)
        spool.open()
        store.ensure_ready()
        drainer = SpoolDrainer(spool, store, CollectorMetrics(), 10_000, linger_ms, tmp_path / "deadletter")
        drainer.start()
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        end = spool.append(*_request("linger", 0, 10), 10)
        await spool.sync(end)
        while spool.committed < end:
            await asyncio.sleep(0.02)
        events["first stored"] = asyncio.get_running_loop().time() - started
        for n in range(1, 4):  # a steady flow: three more within the linger
            end = spool.append(*_request("linger", n * 10, 10), 10)
            await spool.sync(end)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        events["inserts while held"] = len(store.inserts)
        while spool.committed < end:
            await asyncio.sleep(0.02)
        events["rest stored"] = asyncio.get_running_loop().time() - started
        await drainer.stop(1)
        spool.close()

    store = RecordingStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        assert events["first stored"] < 1.5  # not held: nothing was inserted before it
        assert events["inserts while held"] == 1  # the three that followed wait for the linger
        assert events["rest stored"] >= linger_ms / 1000 - 0.05
        assert [len(insert) for insert in store.inserts] == [1, 3]
        assert _stored(store, "linger") == (40, 40)
    finally:
        store.close()


def test_the_linger_ends_when_the_next_insert_can_grow_no_more_and_when_the_drainer_stops(tmp_path):
    """Records of two column layouts in turn (as scores between spans) go in one insert per run: each run is
    inserted as soon as the next record shows it can grow no more, not after a linger each (a backlog that grew
    without bound); and stop() drains at once instead of waiting out the linger."""
    linger = 3.0
    events: dict[str, float] = {}

    async def scenario(store: RecordingStore) -> None:
        loop = asyncio.get_running_loop()
        spool = Spool(tmp_path / "spool", budget_bytes=64 << 20)
        spool.open()
        store.ensure_ready()
        drainer = SpoolDrainer(spool, store, CollectorMetrics(), 10_000, int(linger * 1000), tmp_path / "deadletter")
        drainer.start()
        end = spool.append(*_request("runs", 0, 10), 10)
        await spool.sync(end)
        while spool.committed < end:
            await asyncio.sleep(0.02)
        for n in range(1, 5):  # another layout, then the first again, ...
            end = spool.append(*_request("runs", n * 10, 10, without="TraceState" if n % 2 else ""), 10)
            await spool.sync(end)
            await asyncio.sleep(0.1)
        flow_ended = loop.time()
        while spool.committed < end:
            await asyncio.sleep(0.02)
        events["drained after the flow"] = loop.time() - flow_ended
        end = spool.append(*_request("runs", 50, 10), 10)  # right after an insert: it would linger
        await spool.sync(end)
        stopping = loop.time()
        await drainer.stop(10)
        events["stop took"] = loop.time() - stopping
        events["stored at stop"] = spool.committed == end
        spool.close()

    store = RecordingStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        # The last run waits for its linger (counted from the previous insert); the three before it did not.
        assert events["drained after the flow"] < linger + 1.5
        assert [len(insert) for insert in store.inserts] == [1, 1, 1, 1, 1, 1]
        assert events["stop took"] < linger / 2 and events["stored at stop"]
        assert _stored(store, "runs") == (60, 60)
    finally:
        store.close()


def test_an_idle_drainer_stops_at_once(tmp_path):
    """stop() wakes the drain loop out of its wait for data (0.5 s at a time) instead of letting it time out: a
    collector's shutdown, and every test's, does not pay up to half a second for nothing."""
    took: list[float] = []

    async def scenario(store: RecordingStore) -> None:
        loop = asyncio.get_running_loop()
        spool = Spool(tmp_path / "spool", budget_bytes=64 << 20)
        spool.open()
        store.ensure_ready()
        for _ in range(5):
            drainer = SpoolDrainer(spool, store, CollectorMetrics(), 10_000, 2000, tmp_path / "deadletter")
            drainer.start()
            await asyncio.sleep(0.15)  # idle: in its wait for data
            stopping = loop.time()
            await drainer.stop(10)
            took.append(loop.time() - stopping)
        spool.close()

    store = RecordingStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        assert max(took) < 0.2, took  # each waited out up to 0.5 s before
    finally:
        store.close()


def test_the_direct_writer_does_not_store_what_it_refused_at_shutdown(tmp_path):
    """Spool off: a request still waiting when the grace runs out is refused (the client retries it elsewhere or
    later), so the insert still running at that moment must not store it afterwards as well: that would be the
    retry's rows twice."""

    class SlowStore(RecordingStore):
        def insert(self, header, payload, token=None, table=""):
            time.sleep(1.0)  # a slow server: the insert outlives the shutdown's grace
            super().insert(header, payload, token, table)

    outcome: dict[str, object] = {}

    async def scenario(store: RecordingStore) -> None:
        store.ensure_ready()
        writer = DirectWriter(store, CollectorMetrics(), max_rows=10_000)
        writer.start()
        first = asyncio.ensure_future(writer.write(*_request("refused-at-stop", 0, 5), 5))  # stored: the insert runs
        await asyncio.sleep(0.2)  # the first insert is running
        second = asyncio.ensure_future(writer.write(*_request("refused-at-stop", 5, 5), 5))
        await asyncio.sleep(0.05)
        await writer.stop(0.2)
        await asyncio.sleep(2.5)  # the running insert ends; nothing may follow it
        outcome["first"] = first.done() and first.exception() is None
        outcome["second"] = type(second.exception()).__name__ if second.done() else "pending"

    store = SlowStore(f"chdb://{tmp_path / 'store'}")
    try:
        asyncio.run(scenario(store))
        assert outcome["second"] == "StoreUnavailable"
        assert outcome["first"] is True  # acknowledged: its insert ran to the end
        assert len(store.inserts) == 1
        assert _stored(store, "refused-at-stop") == (5, 5)  # the first request's rows only
    finally:
        store.close()
