"""The spool's writer thread: a record's write (checksum, sealing, the write itself, a rotation's fsyncs)
runs off the event loop, in append order, and an acknowledgement still means written and fsynced: a huge
append never stalls the loop, and a kill -9 with writes written but not fsynced, or still queued, loses
only records that were never acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tracehouse.collector.spool import Spool

HEADER = b"Timestamp,SpanId"
HUGE = 160 << 20  # a record this large takes a few hundred ms to checksum and write


def _digest(i: int) -> bytes:
    return i.to_bytes(16, "big")


async def _max_loop_gap(work) -> tuple[float, object]:
    """Run `work` while a ticker on the loop measures the longest the loop went without running it."""
    gaps = [0.0]
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    try:
        result = await work()
    finally:
        stop.set()
        await task
    return max(gaps), result


def test_a_huge_append_never_stalls_the_event_loop(tmp_path):
    """The loop keeps serving (other connections, /healthz) while a 160 MB record is checksummed, written
    and fsynced; the record is durable and intact afterwards. Before the writer thread, append ran on the
    loop: it stalled for the whole checksum and write (~0.3-0.6 s here)."""
    spool = Spool(tmp_path, budget_bytes=1 << 30)
    spool.open()
    payload = os.urandom(1 << 20) * (HUGE >> 20)

    async def work() -> int:
        end = spool.append(HEADER, payload, 1, _digest(1))
        await spool.sync(end)
        return end

    gap, end = asyncio.run(_max_loop_gap(work))
    assert spool.synced == end
    (record,) = spool.read(0, max_rows=10)
    assert record.end == end and record.payload == payload
    spool.close()
    assert gap < 0.15, f"the event loop stalled for {gap * 1000:.0f} ms during a {HUGE >> 20} MB append"


_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from tracehouse.collector.spool import Spool

    directory, mode = Path(sys.argv[1]), sys.argv[2]
    spool = Spool(directory, budget_bytes=1 << 31, segment_bytes=64 << 20)
    spool.open()

    def payload(i, size):
        return bytes([65 + i % 26]) * size + b"\\n"

    async def main():
        for i in range(6):  # acknowledged: written and fsynced
            end = spool.append(b"Timestamp,SpanId", payload(i, 3 << 20), 1, (i + 1).to_bytes(16, "big"))
            await spool.sync(end)
            print("acked", i, end, flush=True)
        size = 3 if mode == "written" else 24
        ends = [
            spool.append(b"Timestamp,SpanId", payload(i, size << 20), 1, (i + 1).to_bytes(16, "big"))
            for i in range(6, 12)
        ]  # never fsynced, never acknowledged
        if mode == "written":  # wait until the writer thread has handed every record to the kernel
            while max(int(p.name[:20]) + p.stat().st_size for p in directory.glob("*.seg")) < ends[-1]:
                time.sleep(0.01)
        print("unacked", *ends, flush=True)
        time.sleep(600)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode", ["written", "queued"])
def test_kill_9_between_write_and_fsync_loses_only_unacknowledged_records(tmp_path, mode):
    """`written`: the kill comes after the writer thread wrote every unacknowledged record, before any fsync
    (the page cache outlives the process: they are all there, whole, and a retry of one is answered from
    the spool). `queued`: the kill comes while large writes are still queued to the writer thread (a torn
    tail, cut at start). Either way every acknowledged record is there, intact, once, with its digest,
    and the spool goes on after the last intact record."""
    directory = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(directory), mode], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    acked: dict[int, int] = {}
    unacked: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            word, *values = line.split()
            if word == "acked":
                acked[int(values[0])] = int(values[1])
            elif word == "unacked":
                unacked = [int(v) for v in values]
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert len(acked) == 6 and len(unacked) == 6, "the child did not get to the kill point"

    spool = Spool(directory, budget_bytes=1 << 31, segment_bytes=64 << 20)
    spool.open()
    records = spool.read(0, max_rows=100)
    ends = [r.end for r in records]
    assert ends[:6] == [acked[i] for i in range(6)], "an acknowledged record is missing"
    assert [r.payload[:1] for r in records[:6]] == [bytes([65 + i]) for i in range(6)]
    assert all(len(r.payload) == (3 << 20) + 1 for r in records[:6])
    survivors = ends[6:]
    assert survivors == unacked[: len(survivors)], "an unacknowledged record survived out of order"
    if mode == "written":  # 36 MB in one segment: every digest is rebuilt at start (only the last two segments')
        assert survivors == unacked
        for i in range(6):
            assert spool.lookup(_digest(i + 1)) == acked[i]  # a retry of an acknowledged request is answered
        for j, end in enumerate(unacked):  # and of an unacknowledged one that reached the kernel
            assert spool.lookup(_digest(7 + j)) == end
    later = spool.append(HEADER, b"Z\n", 1, _digest(99))
    asyncio.run(spool.sync(later))
    assert spool.read(ends[-1], max_rows=10)[-1].payload == b"Z\n"  # and the spool goes on
    spool.close()
