"""Module-level functions for WorkerPool tests: the pool pickles its function and build by name, so its
forkserver workers import them from here (tests/ is on their sys.path, as on the test process's)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def build_unless_held(hold_file: str) -> str:
    """A worker's build that does not end while `hold_file` exists: a start-up hung on, say, a file system."""
    while Path(hold_file).exists():
        time.sleep(0.05)
    return "built"


def whoami(state: str, tag: str) -> tuple[str, str, int]:
    return state, tag, os.getpid()
