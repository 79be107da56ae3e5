"""What a running collector leaves in its data dir: the store lock and its endpoints (collector.json).

Kept free of heavy imports: `tracehouse sql` reads it on every call.
"""

from __future__ import annotations

import fcntl
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from tracehouse.collector.config import Config

TABLE_FORMATS = {
    "table": "PrettyCompactMonoBlock",
    "csv": "CSVWithNames",
    "tsv": "TSVWithNames",
    "json": "JSON",
    "jsonl": "JSONEachRow",
}


class StoreBusy(RuntimeError):
    pass


class EndpointUnreachable(Exception):
    pass


class EndpointRefused(Exception):
    """The collector answered with an error; the message is ClickHouse's or the guard's."""


class QueryFailed(Exception):
    """A read query that did not run; the message is for the user."""


def resolve_format(name: str) -> str:
    return TABLE_FORMATS.get(name.lower(), name)


def lock_store(config: Config) -> IO[str] | None:
    """chDB must not open one on-disk store from two processes: hold an exclusive lock while we do.

    The owner writes its pid into the lock file, so a second process can say who holds it; the
    owner also clears <data_dir>/tmp of what a crashed predecessor left there."""
    if not config.is_embedded:
        return None
    from tracehouse.collector.files import DataDirError, clean_temp, private_dir

    private_dir(config.data_dir)
    path = config.data_dir / "store.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DataDirError(
            f"cannot create {path}: {exc.strerror}; choose a writable data dir with --data-dir"
        ) from None
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = handle.read().strip()
        handle.close()
        who = f"process {owner}" if owner.isdigit() else "another process"
        stop = f"stop process {owner}" if owner.isdigit() else "stop that process"
        raise StoreBusy(f"the store in {config.data_dir} is open in {who}; {stop}, or use another --data-dir") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    clean_temp(config.data_dir)
    return handle


def read_runtime_info(config: Config) -> dict | None:
    """The running collector's endpoints, or None when no live collector owns this data dir."""
    try:
        info = json.loads(config.endpoint_file.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def write_runtime_info(path: Path, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)


def remove_runtime_info(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def query_endpoint(info: dict, sql: str, fmt: str, timeout: float = 300) -> bytes:
    """Run a query through a running collector's read-only endpoint."""
    url = info["query_url"] + "?" + urllib.parse.urlencode({"default_format": resolve_format(fmt)})
    request = urllib.request.Request(
        url, data=sql.encode(), headers={"X-ClickHouse-Key": info["query_key"]}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise EndpointRefused(exc.read().decode(errors="replace").strip()) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise EndpointUnreachable(str(exc)) from None


def run_read_query(config: Config, sql: str, fmt: str) -> bytes:
    """A read-only query over the store: through the running collector's endpoint when one owns the
    embedded store, else on the store itself (under the store lock). Raises QueryFailed."""
    info = read_runtime_info(config) if config.is_embedded else None
    if info is not None:
        try:
            return query_endpoint(info, sql, fmt)
        except EndpointUnreachable:
            pass  # a collector that just died: open the store ourselves
        except EndpointRefused as exc:
            raise QueryFailed(str(exc)) from None
    try:
        lock = lock_store(config)
    except StoreBusy:
        raise QueryFailed("the store is open in another process and no query endpoint answers") from None
    try:
        if config.is_embedded and not (config.data_dir / "clickhouse").exists():
            raise QueryFailed(f"no store in {config.data_dir}; start `tracehouse serve` first")
        from tracehouse.collector import store
        from tracehouse.collector.query import QueryRefused, ReadOnlySql

        runner = ReadOnlySql(lambda: store.connect(config.store_url))
        try:
            return runner.run(sql, fmt)
        except QueryRefused as exc:
            raise QueryFailed(str(exc)) from None
        finally:
            runner.close()
    finally:
        if lock:
            lock.close()
