"""Worker processes for the CPU part of the pipeline, on every core.

Python runs one thread at a time per process; the stages are pure Python, so a process per core is
how the collector uses more than one. The pool does not know what it runs: `service` hands it the
function (`processing.process_body`) and how each worker builds, once, the function's first argument
(the stages, from the config). So this module imports nothing of the collector's.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

R = TypeVar("R")

# In a worker process: what `_initialize` was handed, and what it built.
_function: Callable[..., Any] | None = None
_state: Any = None


def _exit_with(collector_pid: int) -> None:
    """A collector killed with SIGKILL cannot shut its pool down: its workers leave on their own."""
    while True:
        time.sleep(1)
        try:
            os.kill(collector_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            continue


def _initialize(
    collector_pid: int, function: Callable[..., Any], build: Callable[..., Any], build_args: Sequence[Any]
) -> None:
    global _function, _state
    # The main process handles SIGINT/SIGTERM and shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(collector_pid,), daemon=True, name="exit-with-collector").start()
    _function = function
    _state = build(*build_args)


def _ready() -> int:
    """A task that keeps its worker a moment, so that `start`'s tasks land on different workers."""
    time.sleep(0.05)
    return os.getpid()


def _call(*args: Any) -> Any:
    assert _function is not None, "worker process not initialized"
    return _function(_state, *args)


class WorkerPool(Generic[R]):
    """`count` worker processes (forkserver: no inherited threads or open store handles). Each runs
    `build(*build_args)` once; `submit(*args)` then runs `function(built, *args)` in one of them.
    `function` and `build` must be module-level functions (they are pickled by name)."""

    def __init__(
        self,
        count: int,
        function: Callable[..., R],
        build: Callable[..., Any],
        build_args: Sequence[Any] = (),
    ) -> None:
        self.count = count
        self._context = multiprocessing.get_context("forkserver")
        self._initargs = (os.getpid(), function, build, tuple(build_args))
        self._executor = self._new_executor()
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every restart
        self._pids: set[int] = set()  # the current generation's workers, once started

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.count, mp_context=self._context, initializer=_initialize, initargs=self._initargs
        )

    def restart(self, broken: int) -> bool:
        """A worker of generation `broken` died, which breaks the whole executor (every later submit raises
        BrokenProcessPool): a new one takes its place, its workers started. Once per generation, whoever of
        the requests that saw it die comes first; False for the others."""
        with self._lock:
            if self.generation != broken:
                return False
            old, self._executor = self._executor, self._new_executor()
            self.generation += 1
        # Not cancel_futures: after a kill the old executor may not have seen its workers die yet, and a task it
        # cancels would reach the request as a cancellation, not as the death it handles.
        old.shutdown(wait=False)
        self.start()
        return True

    def kill(self, generation: int) -> bool:
        """A worker of `generation` holds a task past its deadline (stopped, stuck in a C call): killing only it
        is not possible, since which worker has which task is the executor's secret, so every worker of that
        generation gets SIGKILL, which breaks the executor as a death does (then `restart`). False when the
        generation is no longer the current one (another request killed or restarted it first)."""
        with self._lock:
            if self.generation != generation:
                return False
            pids = set(self._pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        return True

    def start(self, timeout: float = 120) -> None:
        """Start every worker now (each builds its stages, ~1 s): the executor would start them on the first
        requests, which would wait for it. Raises BrokenProcessPool when a worker cannot start."""
        deadline = time.monotonic() + timeout
        started: set[int] = set()
        while len(started) < self.count and time.monotonic() < deadline:
            tasks = [self._executor.submit(_ready) for _ in range(self.count)]
            started.update(task.result(timeout=max(0.0, deadline - time.monotonic())) for task in tasks)
        self._pids = started

    def submit(self, *args: Any) -> Future[R]:
        """Raises BrokenProcessPool (here or from the future) when a worker died."""
        return self._executor.submit(_call, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)
