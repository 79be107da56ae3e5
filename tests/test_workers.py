"""The worker pool on its own (collector/workers.py), with real forkserver processes: what the collector
tests cannot set up at will, a restart whose new workers hang while they start."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import worker_functions

from tracehouse.collector import workers
from tracehouse.collector.workers import WorkerPool


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_restart_whose_workers_hang_at_start_is_tried_again_until_it_works(tmp_path, monkeypatch):
    """A worker dies; the new ones hang while they build (their beat goes on, so the watchdog has no stall to
    see). The restart gave up after its start deadline and /readyz said "could not be restarted" until some
    later death: no request ever broke the half-started pool. Now the watchdog tries again, killing the hung
    workers, and once the cause is gone the pool works and the problem is cleared."""
    monkeypatch.setattr(workers, "RESTART_RETRY_SECONDS", 1.0)
    hold = tmp_path / "hold"
    pool = WorkerPool(
        2, worker_functions.whoami, worker_functions.build_unless_held, (str(hold),), stall_seconds=1, start_seconds=2
    )
    try:
        pool.start()
        state, tag, first = pool.submit("a").result(timeout=30)
        assert (state, tag) == ("built", "a")
        hold.touch()  # the next workers hang in their build
        os.kill(first, signal.SIGKILL)
        assert _wait(lambda: pool.problems() and "could not be restarted" in pool.problems()[0], 30), pool.problems()
        assert pool.problems() == ["pipeline workers could not be restarted: 0 of 2 workers were up after 2 s"]
        hung = pool._current.pids[:]  # the hung generation's workers, from their slots
        assert len([pid for pid in hung if pid]) == 2
        assert _wait(lambda: pool.problems() == ["pipeline workers are being restarted (one died or stalled)"], 10)
        hold.unlink()
        assert _wait(lambda: pool.problems() == [], 30), pool.problems()
        state, tag, later = pool.submit("b").result(timeout=30)
        assert (state, tag) == ("built", "b") and later != first
        assert _wait(lambda: not any(_alive(pid) for pid in hung if pid), 10)  # the hung ones were killed
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
