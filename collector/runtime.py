"""What a running collector leaves in its data dir: the store lock and its endpoints (collector.json).

Kept free of heavy imports: `tracehouse sql` reads it on every call. The query client that uses them
is in `query`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tracehouse.collector.config import Config


class StoreBusy(RuntimeError):
    """The embedded store is open in another process (the message names it)."""


def lock_store(config: Config) -> IO[str] | None:
    """chDB must not open one on-disk store from two processes: hold an exclusive lock while we do.

    The owner writes its pid into the lock file, so a second process can say who holds it; the
    owner also clears <data_dir>/tmp of what a crashed predecessor left there."""
    if not config.is_embedded:
        return None
    from tracehouse.collector.files import DataDirError, clean_temp, private_dir

    private_dir(config.data_dir)
    path = config.lock_file
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
    clean_temp(config)
    return handle


@contextlib.contextmanager
def migrated_store(config: Config) -> Iterator[Any]:
    """A client on the store with its schema up to date, for a command that works without a collector:
    under the store lock (StoreBusy when another process holds it), closed and unlocked after."""
    from tracehouse.collector import store

    lock = lock_store(config)
    try:
        client = store.connect(config.store_url)
        try:
            store.migrate(client, config.cluster, retention_settings=config.retention)
            yield client
        finally:
            client.close()
    finally:
        if lock:
            lock.close()


def read_runtime_info(config: Config) -> dict | None:
    """The running collector's endpoints, or None when no live collector owns this data dir."""
    try:
        info = json.loads(config.endpoint_file.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


class CollectorRefused(RuntimeError):
    """The running collector answered a local administration request with an error (its message)."""


def post_to_collector(info: dict, path: str, body: bytes, timeout: float) -> bytes | None:
    """POST JSON to a route of the running collector's local query endpoint, with its key; the answer's
    body, or None when no collector answers (it just stopped: the caller does the work itself)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        info["query_url"].rstrip("/") + path,
        data=body,
        headers={"X-ClickHouse-Key": info["query_key"], "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        raise CollectorRefused(message or f"the collector refused it (HTTP {exc.code})") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


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
