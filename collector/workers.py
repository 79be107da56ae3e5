"""Pipeline worker processes: the CPU part of the pipeline (parse, decode, stages, encode) on every core.

Python runs one thread at a time per process; the stages are pure Python, so a process per core is
how the collector uses more than one. Each worker builds its own stages from the config once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from tracehouse.collector.config import Config
from tracehouse.collector.pipeline import Processed, process_body
from tracehouse.collector.stages import Stage, default_stages

_stages: list[Stage] = []


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


def _initialize(config: Config, collector_pid: int) -> None:
    global _stages
    # The main process handles SIGINT/SIGTERM and shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(collector_pid,), daemon=True, name="exit-with-collector").start()
    _stages = default_stages(config)


def process(body: bytes, is_json: bool, tenant: str | None) -> Processed:
    return process_body(_stages, body, is_json, tenant)


def start_workers(config: Config, count: int) -> ProcessPoolExecutor:
    """`count` worker processes (forkserver: no inherited threads or open store handles)."""
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(
        max_workers=count, mp_context=context, initializer=_initialize, initargs=(config, os.getpid())
    )
