"""Worker processes for the CPU part of the pipeline, on every core.

Python runs one thread at a time per process; the stages are pure Python, so a process per core is
how the collector uses more than one. The pool does not know what it runs: `service` hands it the
function (`processing.process_body`) and how each worker builds, once, the function's first argument
(the stages, from the config). So this module imports nothing of the collector's.

A worker that dies breaks the whole executor; one that stops (SIGSTOP) or hangs in a call that holds the
interpreter would hold its tasks, and every later one, forever. So each worker beats: a thread in it writes
the time into memory shared with the pool, and the pool's watchdog kills a worker whose beat is older than
`stall_seconds`, then starts a new executor. A long task is not a stall (the beat goes on meanwhile), and the
time a task waits in the queue does not count.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

R = TypeVar("R")

log = logging.getLogger(__name__)

BEAT_SECONDS = 0.25  # how often a worker writes its beat; the watchdog looks as often
RESTART_RETRY_SECONDS = 10.0  # after a restart that failed, the watchdog tries again this much later
_COLLECTOR_CHECK_BEATS = 4  # a worker looks for its collector every this many beats

# In a worker process: what `_initialize` was handed, and what it built.
_function: Callable[..., Any] | None = None
_state: Any = None


def _keep_beating(collector_pid: int, beats: Any, slot: int) -> None:
    """The worker's sign of life, and its way out: a collector killed with SIGKILL cannot shut its pool down,
    so its workers leave on their own."""
    n = 0
    while True:
        beats[slot] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
        time.sleep(BEAT_SECONDS)
        n += 1
        if n % _COLLECTOR_CHECK_BEATS:
            continue
        try:
            os.kill(collector_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            continue


def _initialize(
    collector_pid: int,
    pids: Any,
    beats: Any,
    function: Callable[..., Any],
    build: Callable[..., Any],
    build_args: Sequence[Any],
) -> None:
    global _function, _state
    # The main process handles SIGINT/SIGTERM and shuts the pool down in order: a stop that signals the whole
    # group (systemd, a terminal's Ctrl-C) must not kill the workers under requests still being answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with pids.get_lock():  # a slot of its own: the executor never has more workers than slots
        slot = next(i for i in range(len(pids)) if pids[i] == 0)
        beats[slot] = time.monotonic()
        pids[slot] = os.getpid()
    threading.Thread(
        target=_keep_beating, args=(collector_pid, beats, slot), daemon=True, name="tracehouse-worker-beat"
    ).start()
    _function = function
    _state = build(*build_args)


def _ready() -> int:
    """A task that keeps its worker a moment, so that `start`'s tasks land on different workers."""
    time.sleep(0.05)
    return os.getpid()


def _call(*args: Any) -> Any:
    assert _function is not None, "worker process not initialized"
    return _function(_state, *args)


class _Generation:
    """One executor and what its workers share with the pool: their pids and beats, by slot."""

    def __init__(self, number: int, count: int, context: Any, initargs: tuple[Any, ...]) -> None:
        self.number = number
        self.pids = context.Array("q", count)  # 0: a slot no worker has taken
        self.beats = context.Array("d", count, lock=False)
        collector_pid, *rest = initargs
        self.executor = ProcessPoolExecutor(
            max_workers=count,
            mp_context=context,
            initializer=_initialize,
            initargs=(collector_pid, self.pids, self.beats, *rest),
        )
        # The workers seen beating: a pidfd signals that very process, never another that got its pid later.
        self.pidfds: dict[int, int] = {}

    def watch(self, pid: int) -> None:
        """Open a pidfd for a worker known to be running (it just beat, or answered a task)."""
        if pid not in self.pidfds:
            with contextlib.suppress(OSError):  # exited meanwhile (or no descriptor left): looked at again next time
                self.pidfds[pid] = os.pidfd_open(pid)

    def stalled(self, now: float, stall_seconds: float) -> list[tuple[int, int, float]]:
        """(slot, pid, seconds since its beat) of each worker quiet for longer than `stall_seconds`."""
        quiet = []
        for slot in range(len(self.pids)):
            pid = self.pids[slot]
            if not pid:
                continue
            # Its first sight is within a beat of the worker taking the slot (or of its last beat): it runs then.
            self.watch(pid)
            since = now - self.beats[slot]
            if since > stall_seconds and pid in self.pidfds:
                quiet.append((slot, pid, since))
        return quiet

    def processes(self) -> list[Any]:
        """The executor's worker processes (its shutdown forgets them): a worker that hung before it took a slot
        is known to the executor only."""
        return list((getattr(self.executor, "_processes", None) or {}).values())

    def kill_all(self, processes: list[Any] | None = None) -> None:
        """SIGKILL every worker still there: once one died the executor is broken and its tasks failed, and a
        survivor may be blocked for good on the call queue's lock, which the dead one held."""
        for slot in range(len(self.pids)):
            if self.pids[slot] in self.pidfds:
                self.kill(slot, self.pids[slot])
        for process in self.processes() if processes is None else processes:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                if process.is_alive():  # polls first: no signal for a pid another process may hold by now
                    process.kill()

    def kill(self, slot: int, pid: int) -> bool:
        """SIGKILL the worker (stopped ones too); False when it had exited already."""
        self.pids[slot] = 0  # seen to: not reported again
        try:
            signal.pidfd_send_signal(self.pidfds[pid], signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def still_running(self, timeout: float) -> list[tuple[int, int]]:
        """Wait up to `timeout` for every worker to exit; (slot, pid) of those still running then."""
        running = {
            self.pidfds[pid]: (slot, pid) for slot in range(len(self.pids)) if (pid := self.pids[slot]) in self.pidfds
        }
        poller = select.poll()
        for fd in running:
            poller.register(fd, select.POLLIN)  # a pidfd turns readable when its process exits
        deadline = time.monotonic() + timeout
        while running and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                running.pop(fd, None)
        return list(running.values())

    def close(self) -> None:
        for fd in self.pidfds.values():
            os.close(fd)
        self.pidfds.clear()


class WorkerPool(Generic[R]):
    """`count` worker processes (forkserver: no inherited threads or open store handles). Each runs
    `build(*build_args)` once; `submit(*args)` then runs `function(built, *args)` in one of them.
    `function` and `build` must be module-level functions (they are pickled by name). A worker that has not
    beaten for `stall_seconds` (0: never looked at) is killed and the pool restarted."""

    def __init__(
        self,
        count: int,
        function: Callable[..., R],
        build: Callable[..., Any],
        build_args: Sequence[Any] = (),
        stall_seconds: float = 0.0,
        start_seconds: float = 120.0,
    ) -> None:
        self.count = count
        self.stall_seconds = stall_seconds
        self.start_seconds = start_seconds  # a restart whose workers are not all up by then failed
        self._context = multiprocessing.get_context("forkserver")
        self._initargs = (os.getpid(), function, build, tuple(build_args))
        self._lock = threading.Lock()
        self._current = _Generation(0, count, self._context, self._initargs)
        self._restarting = False
        self._restart_error = ""  # why the last restart failed, until one succeeds
        self._retry_at = float("inf")  # when the watchdog tries a failed restart again
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def generation(self) -> int:
        """Bumped by every restart."""
        return self._current.number

    def start(self, timeout: float | None = None) -> None:
        """Start every worker now (each builds its stages, ~1 s): the executor would start them on the first
        requests, which would wait for it. Raises BrokenProcessPool when a worker cannot start, RuntimeError
        when they are not all up within `timeout` (default `start_seconds`)."""
        timeout = self.start_seconds if timeout is None else timeout
        if self.stall_seconds and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, daemon=True, name="tracehouse-worker-watchdog")
            self._watchdog.start()
        current = self._current
        deadline = time.monotonic() + timeout
        started: set[int] = set()
        try:
            while len(started) < self.count and time.monotonic() < deadline:
                tasks = [current.executor.submit(_ready) for _ in range(self.count)]
                started.update(task.result(timeout=max(0.0, deadline - time.monotonic())) for task in tasks)
        except TimeoutError:
            raise RuntimeError(f"{len(started)} of {self.count} workers were up after {timeout:g} s") from None
        with self._lock:
            for pid in started:
                current.watch(pid)

    def submit(self, *args: Any) -> Future[R]:
        """Raises BrokenProcessPool (here or from the future) when a worker died or was killed."""
        return self._current.executor.submit(_call, *args)

    def restart_soon(self, broken: int) -> None:
        """A worker of generation `broken` died or was killed, which breaks its whole executor (every later
        submit raises BrokenProcessPool): a new one takes its place, in a thread. Once per generation, whoever
        saw it first; the others, and a call while a restart runs, do nothing."""
        with self._lock:
            if self._current.number != broken or self._restarting or self._closed.is_set():
                return
            self._restarting = True
        threading.Thread(target=self._restart, daemon=True, name="tracehouse-worker-restart").start()

    def _restart(self) -> None:
        try:
            with self._lock:  # the watchdog looks at one generation at a time, under the lock
                if self._closed.is_set():  # shut down meanwhile: no new workers
                    return
                old = self._current
                self._current = _Generation(old.number + 1, self.count, self._context, self._initargs)
                old.kill_all()
                old.close()
            # Not cancel_futures: the old executor may not have seen its worker die yet, and a task it cancels
            # would reach the request as a cancellation, not as the death it handles.
            old.executor.shutdown(wait=False)
            self.start()
        except Exception as exc:  # noqa: BLE001 - the watchdog tries again, as does the next death; /readyz says why
            if self._closed.is_set():  # the shutdown cancelled the start: nothing failed
                return
            self._restart_error = str(exc) or type(exc).__name__
            self._retry_at = time.monotonic() + RESTART_RETRY_SECONDS
            log.error("pipeline workers could not be restarted (%s); tried again in %g s", exc, RESTART_RETRY_SECONDS)
        else:
            self._restart_error = ""
            log.warning("pipeline workers restarted")
        finally:
            with self._lock:
                self._restarting = False

    def _watch(self) -> None:
        while not self._closed.wait(BEAT_SECONDS):
            try:
                with self._lock:
                    current = self._current
                    stalled = current.stalled(time.monotonic(), self.stall_seconds)
                    killed = [(pid, since, current.kill(slot, pid)) for slot, pid, since in stalled]
                for pid, since, alive in killed:
                    log.error(
                        "pipeline worker %d gave no sign of life for %.1f s (stopped, stuck in a call that holds the"
                        " interpreter, or dead)%s: the workers are restarted, the requests they held refused for a"
                        " retry",
                        pid,
                        since,
                        "; killed" if alive else "",
                    )
                if killed:
                    self.restart_soon(current.number)
                elif getattr(current.executor, "_broken", False) and not (self._restarting or self._restart_error):
                    # A worker died (the executor saw it at once): restart now, not when a request finds it.
                    log.error("a pipeline worker process died; the workers are restarted")
                    self.restart_soon(current.number)
                elif self._restart_error and not self._restarting and time.monotonic() >= self._retry_at:
                    self._retry_at = float("inf")
                    self.restart_soon(current.number)
            except Exception:  # noqa: BLE001 - the watchdog must outlive whatever it meets
                log.exception("the pipeline workers' watchdog failed to look; it looks again")

    def problems(self) -> list[str]:
        """What keeps requests from being processed now, for /readyz."""
        if self._restarting:
            return ["pipeline workers are being restarted (one died or stalled)"]
        if self._restart_error:
            return [f"pipeline workers could not be restarted: {self._restart_error}"]
        return []

    def shutdown(self, wait: bool = True, cancel_futures: bool = False, exit_seconds: float = 5.0) -> None:
        """With `wait`, a worker that has not exited `exit_seconds` after the others were told to (stopped, or
        stuck in a call) is killed: the executor would wait for it forever, and the collector with it."""
        self._closed.set()
        with self._lock:
            current = self._current
        processes = current.processes()
        current.executor.shutdown(wait=False, cancel_futures=cancel_futures)
        if wait:
            for slot, pid in current.still_running(exit_seconds):
                alive = current.kill(slot, pid)
                if alive:
                    log.warning(
                        "pipeline worker %d did not exit %g s after shutdown (stopped or stuck): killed",
                        pid,
                        exit_seconds,
                    )
            current.kill_all(processes)  # and one that hung before it took a slot
            current.executor.shutdown(wait=True)
        with self._lock:
            current.close()
