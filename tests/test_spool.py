"""The spool on a real disk: records survive reopening, a torn or corrupt tail is cut (never a crash),
segments rotate and are dropped once sent, the budget holds, digests and the insert intent persist."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tracehouse.collector.encryption import EncryptionSettings, RecordSealer
from tracehouse.collector.spool import Intent, Spool, SpoolFull

HEADER = b"Timestamp,SpanId"


def _digest(i: int) -> bytes:
    return i.to_bytes(16, "big")


def _fill(spool: Spool, count: int, size: int = 100, start: int = 0) -> list[int]:
    ends = [
        spool.append(HEADER, bytes([65 + (start + i) % 26]) * size + b"\n", 1, _digest(start + i)) for i in range(count)
    ]
    asyncio.run(spool.sync(ends[-1]))
    return ends


def test_records_survive_reopen_and_commit(tmp_path):
    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    ends = _fill(spool, 5)
    records = spool.read(spool.committed, max_rows=100)
    assert [r.payload[:1] for r in records] == [b"A", b"B", b"C", b"D", b"E"]
    assert all(r.header == HEADER and r.rows == 1 for r in records)
    assert [r.end for r in records] == ends
    spool.commit(ends[1])
    spool.close()

    reopened = Spool(tmp_path, budget_bytes=1 << 20)
    reopened.open()
    assert reopened.committed == ends[1]
    assert [r.payload[:1] for r in reopened.read(reopened.committed, max_rows=100)] == [b"C", b"D", b"E"]
    assert reopened.pending_bytes == ends[-1] - ends[1]
    assert reopened.lookup(_digest(4)) == ends[4]  # digests are rebuilt from disk
    assert reopened.read(reopened.committed, max_rows=2)[-1].end == ends[3]  # max_rows bounds a read


@pytest.mark.parametrize("damage", ["torn", "garbage", "bitflip"])
def test_damaged_tail_is_cut_not_fatal(tmp_path, damage):
    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    ends = _fill(spool, 3)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    if damage == "torn":
        segment.write_bytes(data[: ends[2] - 17])  # crash in the middle of the third record
    elif damage == "garbage":
        segment.write_bytes(bytes(data) + os.urandom(50))
    else:
        data[ends[1] + 20] ^= 0xFF  # one flipped byte inside the third record
        segment.write_bytes(bytes(data))

    reopened = Spool(tmp_path, budget_bytes=1 << 20)
    reopened.open()
    kept = 2 if damage != "garbage" else 3
    assert len(reopened.read(0, max_rows=100)) == kept
    assert reopened.truncated_bytes > 0
    new_end = _fill(reopened, 1, start=10)[-1]  # and the spool goes on from there
    assert [r.payload[:1] for r in reopened.read(0, max_rows=100)][-1] == b"K"
    assert new_end == reopened.synced


def test_segments_rotate_and_sent_ones_are_dropped(tmp_path):
    spool = Spool(tmp_path, budget_bytes=1 << 20, segment_bytes=1000)
    spool.open()
    ends = _fill(spool, 40, size=200)
    assert len(list(tmp_path.glob("*.seg"))) > 5
    assert len(spool.read(0, max_rows=1000)) == 40  # reads cross segment boundaries
    spool.commit(ends[-1])
    assert len(list(tmp_path.glob("*.seg"))) == 2  # the last two stay, for retry digests
    assert spool.pending_bytes == 0
    spool.close()
    reopened = Spool(tmp_path, budget_bytes=1 << 20, segment_bytes=1000)
    reopened.open()
    assert reopened.read(reopened.committed, max_rows=100) == []
    assert reopened.lookup(_digest(39)) == ends[-1]


@pytest.mark.parametrize("sealed", [False, True])
def test_a_planning_read_gives_the_framing_of_a_full_read_without_the_rows(tmp_path, sealed):
    """The drainer plans a range on the event loop from the framing alone (no payload read, no record opened),
    then reads the rows in a thread: both must see the same records, across segments, by rows and bytes."""
    sealer = RecordSealer(EncryptionSettings(keys=(b"k" * 32,))) if sealed else None
    spool = Spool(tmp_path, budget_bytes=1 << 20, segment_bytes=1000, sealer=sealer)
    spool.open()
    ends = _fill(spool, 12, size=200)
    spool.append(b"Timestamp,Other", b"X\n", 1, _digest(99))
    asyncio.run(spool.sync(spool.append(HEADER, b"Y\n", 1, _digest(100))))

    def framing(records):
        return [(r.start, r.end, r.rows, r.header, r.digest, r.table) for r in records]

    for kwargs in ({"max_rows": 100}, {"max_rows": 5}, {"max_rows": 100, "max_bytes": 700}):
        full = spool.read(0, **kwargs)
        planned = spool.read(0, payloads=False, **kwargs)
        assert framing(planned) == framing(full) and len(full) < 13
        assert all(r.payload == b"" for r in planned)
    full = spool.read(0, max_rows=100)
    assert [r.end for r in full] == ends  # up to the record with other columns, across segments
    assert [r.payload[:1] for r in full] == [bytes([65 + i]) for i in range(12)]
    assert all(len(r.payload) == 201 for r in full)  # the rows alone, opened when sealed
    (other,) = spool.read(ends[-1], max_rows=100)
    assert other.header == b"Timestamp,Other" and other.payload == b"X\n"
    (last,) = spool.read(other.end, max_rows=100, payloads=False)
    assert last.header == HEADER and last.end == spool.synced
    spool.close()


def test_budget_refuses_until_data_is_sent(tmp_path):
    spool = Spool(tmp_path, budget_bytes=1000)
    spool.open()
    ends = _fill(spool, 6, size=120)  # 6 records of 167 bytes: past the budget
    assert spool.full
    with pytest.raises(SpoolFull, match="budget"):
        spool.append(HEADER, b"x" * 120, 1)
    spool.commit(ends[-1])
    spool.append(HEADER, b"x" * 120, 1)


def test_a_read_stops_at_the_byte_cap_but_takes_one_record_whatever_its_size(tmp_path):
    """batch_max_bytes: an insert's records stay under the cap (a 50,000-row insert of LLM spans is ~690 MB of
    rows held at once); a record bigger than the cap is read alone; a replay by `end` ignores the cap."""
    spool = Spool(tmp_path, budget_bytes=1 << 22)
    spool.open()
    ends = _fill(spool, 10, size=1000)
    record_bytes = ends[1] - ends[0]
    capped = spool.read(0, max_rows=100, max_bytes=3 * record_bytes)
    assert len(capped) == 3 and capped[-1].end == ends[2]
    assert [r.end for r in spool.read(0, max_rows=100, max_bytes=1)] == [ends[0]]  # one record at least
    assert spool.read(0, max_rows=2, max_bytes=10 * record_bytes)[-1].end == ends[1]  # rows still bound it
    assert spool.read(0, max_rows=100, end=ends[6], max_bytes=1)[-1].end == ends[6]  # the intent's range, whole
    assert len(spool.read(0, max_rows=100)) == 10


def test_records_with_other_columns_are_read_separately(tmp_path):
    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    spool.append(b"A,B", b"[1,2]\n", 1)
    spool.append(b"A,B", b"[3,4]\n", 1)
    end = spool.append(b"A,B,C", b"[5,6,7]\n", 1)
    asyncio.run(spool.sync(end))
    first = spool.read(0, max_rows=100)
    assert [r.payload for r in first] == [b"[1,2]\n", b"[3,4]\n"]
    second = spool.read(first[-1].end, max_rows=100)
    assert [(r.header, r.payload) for r in second] == [(b"A,B,C", b"[5,6,7]\n")]


def test_insert_intent_survives_a_crash(tmp_path):
    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    ends = _fill(spool, 4)
    spool.write_intent(Intent(0, ends[2], "tok"))
    spool.close()  # "crash" between insert and commit
    reopened = Spool(tmp_path, budget_bytes=1 << 20)
    reopened.open()
    assert reopened.read_intent() == Intent(0, ends[2], "tok")
    assert len(reopened.read(0, max_rows=100, end=ends[2])) == 3  # exactly the intended range
    reopened.commit(ends[2])
    assert reopened.read_intent() is None


def test_drainer_isolates_a_batch_clickhouse_refuses_and_dead_letters_only_the_bad_record(tmp_path):
    """Three records drained as one insert; ClickHouse refuses the batch because one record's rows are
    invalid: the valid records are inserted one by one, the bad one goes to deadletter/ with the reason,
    and the spool moves past it (never retried forever, never silently dropped)."""
    from tracehouse.collector.batch import OTEL_COLUMNS, SpanBatch
    from tracehouse.collector.metrics import CollectorMetrics
    from tracehouse.collector.processing import encode_rows
    from tracehouse.collector.writer import SpoolDrainer, TraceStore

    def record(span_id: str, duration) -> tuple[bytes, bytes]:
        row = {name: [] for name in OTEL_COLUMNS if name.startswith(("Events.", "Links."))}
        values = {
            "Timestamp": 1_700_000_000_000_000_000,
            "TraceId": "ab" * 16,
            "SpanId": span_id,
            "ParentSpanId": "",
            "TraceState": "",
            "SpanName": "op",
            "SpanKind": "Internal",
            "ServiceName": "dead-letter",
            "ResourceAttributes": {},
            "ScopeName": "",
            "ScopeVersion": "",
            "SpanAttributes": {},
            "Duration": duration,
            "StatusCode": "Unset",
            "StatusMessage": "",
        }
        columns = {name: [values.get(name, row.get(name))] for name in OTEL_COLUMNS}
        return encode_rows(SpanBatch(columns))

    async def scenario() -> None:
        spool = Spool(tmp_path / "spool", budget_bytes=1 << 20)
        spool.open()
        end = 0
        for span_id, duration in (
            ("0000000000000001", 5),
            ("0000000000000002", "not a number"),
            ("0000000000000003", 7),
        ):
            header, payload = record(span_id, duration)
            end = spool.append(header, payload, 1)
        await spool.sync(end)
        store = TraceStore(f"chdb://{tmp_path / 'store'}")
        metrics = CollectorMetrics()
        drainer = SpoolDrainer(spool, store, metrics, 100, 0, tmp_path / "deadletter")
        drainer.start()
        for _ in range(200):
            if spool.committed == end:
                break
            await asyncio.sleep(0.05)
        await drainer.stop(1)
        assert spool.committed == end
        client = store.ensure_ready()
        stored = client.query("SELECT SpanId FROM otel_traces WHERE ServiceName = 'dead-letter' ORDER BY SpanId")
        assert [r[0] for r in stored.result_rows] == ["0000000000000001", "0000000000000003"]
        store.close()
        assert metrics.dead_lettered._value.get() == 1

    asyncio.run(scenario())
    (reason_file,) = (tmp_path / "deadletter").glob("*.json")
    meta = json.loads(reason_file.read_text())
    assert meta["rows"] == 1 and "Duration" in meta["columns"]
    assert "Code:" in meta["reason"]
    assert b"not a number" in reason_file.with_suffix(".rows").read_bytes()


def test_a_failed_write_refuses_its_requests_and_the_spool_goes_on_past_it(tmp_path):
    """The disk refuses a write (here RLIMIT_FSIZE: EFBIG, like a full disk): the records not yet synced
    fail their waiters and are forgotten (a retry is not answered from the spool), everything synced
    before stays, and later records go to a new segment that the reader and a reopen both find."""
    import resource
    import signal

    from tracehouse.collector.spool import SpoolWriteFailed

    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    ok = _fill(spool, 5, size=1000)  # ~5.2 KB, synced
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8000, hard))
    try:
        failed: list[int] = []
        with pytest.raises(SpoolWriteFailed, match="spool"):  # from append or from sync, as the buffer fills
            for i in range(4):
                failed.append(spool.append(HEADER, b"F" * 1000 + b"\n", 1, _digest(100 + i)))
            asyncio.run(spool.sync(failed[-1]))
        for end in failed:  # records appended before the failure are not durable either
            with pytest.raises(SpoolWriteFailed):
                asyncio.run(spool.sync(end))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert spool.sync_error and spool.sync_failures == 1
    assert all(spool.lookup(_digest(100 + i)) is None for i in range(4))
    assert spool.lookup(_digest(4)) == ok[-1]
    later = _fill(spool, 2, size=1000, start=10)
    assert spool.sync_error == ""
    assert len(list(tmp_path.glob("*.seg"))) == 2
    payloads = [r.payload[:1] for r in spool.read(0, max_rows=100)]
    assert payloads == [b"A", b"B", b"C", b"D", b"E", b"K", b"L"]
    spool.commit(ok[-1])
    assert [r.end for r in spool.read(spool.committed, max_rows=100)] == later  # across the gap
    spool.close()
    reopened = Spool(tmp_path, budget_bytes=1 << 20)
    reopened.open()
    assert [r.payload[:1] for r in reopened.read(reopened.committed, max_rows=100)] == [b"K", b"L"]
    reopened.commit(later[-1])
    assert reopened.pending_bytes == 0


def test_a_gap_without_records_is_skipped(tmp_path):
    """A failed write when everything before it was already sent leaves only a gap: the checkpoint moves over it."""
    import resource
    import signal

    from tracehouse.collector.spool import SpoolWriteFailed

    spool = Spool(tmp_path, budget_bytes=1 << 20)
    spool.open()
    ok = _fill(spool, 2, size=1000)
    spool.commit(ok[-1])
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (ok[-1] + 500, hard))
    try:
        with pytest.raises(SpoolWriteFailed):
            asyncio.run(spool.sync(spool.append(HEADER, b"F" * 1000 + b"\n", 1)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert spool.synced > spool.committed and spool.read(spool.committed, 10) == []
    spool.skip_gap()
    assert spool.pending_bytes == 0
