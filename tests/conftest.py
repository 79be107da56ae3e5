from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from collector_process import CollectorProcess, migrate_store_template  # noqa: E402


def _cache_bytecode_for_subprocesses() -> None:
    """The tests start a thousand collector and CLI processes; with PYTHONDONTWRITEBYTECODE set (as on CI)
    each one compiled tracehouse's modules again (~0.3 s of CPU a start). The children get a bytecode cache
    outside the checkout instead, so the tree stays free of __pycache__ as that setting wants."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    cache = Path(tempfile.gettempdir()) / f"tracehouse-tests-pycache-{os.getuid()}"
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)


_cache_bytecode_for_subprocesses()


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """One data dir migrated by `tracehouse migrate` per run, copied into the data dirs of tests that want a
    store at the current schema rather than the seconds of migrations an empty one costs."""
    return migrate_store_template(tmp_path_factory.mktemp("store-template"))


@pytest.fixture
def collector(tmp_path):
    """A running `tracehouse serve` on its own data dir and free ports; stopped after the test."""
    proc = CollectorProcess(tmp_path / "data").start()
    yield proc
    proc.kill()


@pytest.fixture
def start_collector(tmp_path, request):
    """Factory for collectors with extra flags or env; every one started is killed after the test.
    `migrated=True`: a data dir without a store starts from a copy of the session's migrated one."""
    started: list[CollectorProcess] = []

    def start(
        *args: str, data_dir: Path | None = None, env: dict[str, str] | None = None, migrated: bool = False
    ) -> CollectorProcess:
        template = request.getfixturevalue("store_template") if migrated else None
        proc = CollectorProcess(data_dir or tmp_path / "data", *args, env=env, store_template=template).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
