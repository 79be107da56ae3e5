from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from collector_process import CollectorProcess  # noqa: E402


@pytest.fixture
def collector(tmp_path):
    """A running `tracehouse serve` on its own data dir and free ports; stopped after the test."""
    proc = CollectorProcess(tmp_path / "data").start()
    yield proc
    proc.kill()


@pytest.fixture
def start_collector(tmp_path):
    """Factory for collectors with extra flags or env; every one started is killed after the test."""
    started: list[CollectorProcess] = []

    def start(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> CollectorProcess:
        proc = CollectorProcess(data_dir or tmp_path / "data", *args, env=env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
