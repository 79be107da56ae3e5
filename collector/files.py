"""Everything the collector writes stays private to its user and inside its data dir.

Spool segments, dead letters, store parts and chDB's insert files hold span content in plain text.
So a process that opens the data dir runs with umask 0o077 (chDB creates its parts from C++ and
honours the process umask), keeps the data dir itself 0700, and sends Python's `tempfile` (which
clickhouse-connect's chDB driver uses for every insert) and TMPDIR to `<data_dir>/tmp` instead of a
shared /tmp, where a crash mid-insert would leave a batch behind for anyone to read.

Kept free of heavy imports: every CLI command calls it.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tracehouse.collector.settings import ConfigError

if TYPE_CHECKING:
    from tracehouse.collector.config import Config

PRIVATE_UMASK = 0o077
_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO
_MAX_SOCKET_DIR = 107 - len("/pymp-12345678/listener-12345678")

log = logging.getLogger("tracehouse")


class DataDirError(ConfigError):
    """The data dir cannot be used; the message names the path, the cause and the fix."""


def _explain(path: Path, exc: OSError, what: str = "data dir") -> DataDirError:
    reasons = {
        errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "no space left on the device",
        errno.EEXIST: "a file, not a directory, has that name",
        errno.ENOTDIR: "a part of the path is a file, not a directory",
        errno.ENOENT: "a part of the path does not exist",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return DataDirError(f"cannot use {path} as the {what}: {reason}; choose another with --data-dir")


def private_dir(path: Path, what: str = "data dir") -> bool:
    """Create `path` (and parents) as 0700, or make an existing one 0700. True if it was open to others."""
    try:
        if path.exists() and not path.is_dir():
            raise FileExistsError(errno.EEXIST, "not a directory", str(path))
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        mode = stat.S_IMODE(info.st_mode)
        if not mode & _OPEN_BITS:
            return False
        if info.st_uid != os.geteuid():
            # A volume owned by root with our group (Kubernetes fsGroup): we cannot chmod it, and the
            # files we create in it are still owner-only (umask).
            log.warning(
                "%s %s is open to its group or others and owned by uid %d: it stays so", what, path, info.st_uid
            )
            return False
        os.chmod(path, mode & ~_OPEN_BITS)
        return True
    except OSError as exc:
        raise _explain(path, exc, what) from None


def check_writable(path: Path, what: str = "data dir") -> None:
    """Fail now, with the reason, rather than at the first span (a read-only mount, a full disk)."""
    probe = path / f".write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise _explain(path, exc, what) from None


def use_private_files(config: Config, *, temp: bool = True) -> Path | None:
    """For this process: umask 0o077, a private data dir, and (with `temp`) temporary files in
    the config's temp dir (<data_dir>/tmp). Returns that dir. Warns once if the data dir was open to others."""
    data_dir = config.data_dir
    os.umask(PRIVATE_UMASK)
    if private_dir(data_dir):
        log.warning("data dir %s was readable by other users; it is now 0700 (owner only)", data_dir)
    check_writable(data_dir)
    if not temp:
        return None
    tmp = config.temp_dir
    private_dir(tmp, "temporary directory")
    tmp = tmp.resolve()
    if len(str(tmp)) > _MAX_SOCKET_DIR:
        # multiprocessing puts the worker pool's Unix socket under tempfile's dir; a socket path has
        # at most 107 bytes, so with a deep data dir it keeps the system one (a socket, no data).
        import multiprocessing.util

        multiprocessing.util.get_temp_dir()
    tempfile.tempdir = str(tmp)
    os.environ["TMPDIR"] = str(tmp)  # C++ code and child processes
    return tmp


def clean_temp(config: Config) -> None:
    """Remove what a previous process left in the temp dir; only the store lock's owner may call it."""
    tmp = config.temp_dir
    try:
        entries = list(tmp.iterdir())
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        except OSError as exc:
            log.warning("cannot remove %s left by an earlier run: %s", entry, exc)
