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
from dataclasses import dataclass
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
# The output formats a read may use (`--format`, `default_format`, a FORMAT clause): text and
# columnar data formats only. Not Template or CustomSeparated (their layout comes from files named
# by settings), Protobuf or CapnProto (a schema file), nor anything else this list does not name.
OUTPUT_FORMATS = (
    "TabSeparated TabSeparatedRaw TabSeparatedWithNames TabSeparatedWithNamesAndTypes TabSeparatedRawWithNames"
    " TabSeparatedRawWithNamesAndTypes TSV TSVRaw TSVWithNames TSVWithNamesAndTypes TSVRawWithNames"
    " TSVRawWithNamesAndTypes CSV CSVWithNames CSVWithNamesAndTypes JSON JSONStrings JSONCompact"
    " JSONCompactStrings JSONEachRow JSONLines NDJSON JSONStringsEachRow JSONCompactEachRow"
    " JSONCompactEachRowWithNames JSONCompactEachRowWithNamesAndTypes JSONCompactStringsEachRow JSONColumns"
    " JSONCompactColumns JSONObjectEachRow Pretty PrettyCompact PrettyCompactMonoBlock PrettyMonoBlock"
    " PrettySpace PrettySpaceMonoBlock PrettyNoEscapes PrettyCompactNoEscapes PrettySpaceNoEscapes Vertical"
    " Markdown XML Values Native RowBinary RowBinaryWithNames RowBinaryWithNamesAndTypes Parquet Arrow"
    " ArrowStream ORC Null"
).split()
_FORMATS_BY_LOWER = {name.lower(): name for name in OUTPUT_FORMATS} | {
    short: full for short, full in TABLE_FORMATS.items()
}


class StoreBusy(RuntimeError):
    pass


class EndpointUnreachable(Exception):
    pass


class EndpointRefused(Exception):
    """The collector answered with an error; the message is ClickHouse's or the guard's."""


class QueryFailed(Exception):
    """A read query that did not run; the message is for the user."""


class QueryCancelled(Exception):
    """Ctrl-C stopped a read query (it was killed in the store, not left running)."""


class FormatRefused(ValueError):
    """An output format outside OUTPUT_FORMATS."""


@dataclass(frozen=True)
class QueryResult:
    body: bytes
    format: str  # the output format the body is in


def resolve_format(name: str) -> str:
    """The ClickHouse output format for a short name (table, csv, ...) or an allow-listed format name."""
    key = name.strip().lower()
    found = TABLE_FORMATS.get(key) or _FORMATS_BY_LOWER.get(key)
    if found is None:
        shown = name if len(name) <= 40 and name.isprintable() else repr(name[:40]) + "..."
        raise FormatRefused(
            f"unknown output format {shown}: use table, csv, tsv, json, jsonl or a ClickHouse output format "
            "such as TSVWithNames, JSONEachRow, Parquet"
        )
    return found


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


def query_endpoint(info: dict, sql: str, fmt: str, timeout: float = 300) -> QueryResult:
    """Run a query through a running collector's read-only endpoint."""
    try:
        fmt = resolve_format(fmt)
    except FormatRefused as exc:
        raise EndpointRefused(str(exc)) from None
    url = info["query_url"] + "?" + urllib.parse.urlencode({"default_format": fmt})
    request = urllib.request.Request(
        url, data=sql.encode(), headers={"X-ClickHouse-Key": info["query_key"]}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return QueryResult(response.read(), response.headers.get("X-ClickHouse-Format") or fmt)
    except urllib.error.HTTPError as exc:
        raise EndpointRefused(exc.read().decode(errors="replace").strip()) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise EndpointUnreachable(str(exc)) from None


def run_read_query(config: Config, sql: str, fmt: str) -> bytes:
    """The body of `read_query` (for callers that name their format)."""
    return read_query(config, sql, fmt).body


def read_query(config: Config, sql: str, fmt: str) -> QueryResult:
    """A read-only query over the store: through the running collector's endpoint when one owns the
    embedded store, else on the store itself (under the store lock). Raises QueryFailed, and
    QueryCancelled on Ctrl-C once the query has been stopped."""
    try:
        resolve_format(fmt)
    except FormatRefused as exc:
        raise QueryFailed(str(exc)) from None
    info = read_runtime_info(config) if config.is_embedded else None
    if info is not None:
        try:
            return query_endpoint(info, sql, fmt)
        except EndpointUnreachable:
            pass  # a collector that just died: open the store ourselves
        except EndpointRefused as exc:
            raise QueryFailed(str(exc)) from None
        except KeyboardInterrupt:
            raise QueryCancelled() from None  # the endpoint stops a query whose client hung up
    try:
        lock = lock_store(config)
    except StoreBusy:
        raise QueryFailed("the store is open in another process and no query endpoint answers") from None
    try:
        if config.is_embedded and not (config.data_dir / "clickhouse").exists():
            raise QueryFailed(f"no store in {config.data_dir}; start `tracehouse serve` first")
        return _read_in_process(config, sql, fmt)
    finally:
        if lock:
            lock.close()


def _read_in_process(config: Config, sql: str, fmt: str) -> QueryResult:
    """Run on the store in a worker thread: the main thread stays free to take Ctrl-C (a query in
    chDB's C++ code would not see it) and then kills the query before returning."""
    import threading

    from tracehouse.collector import store
    from tracehouse.collector.query import QueryRefused, ReadOnlySql, query_limits

    runner = ReadOnlySql(lambda: store.connect(config.store_url), query_limits(config))
    outcome: list[QueryResult | BaseException] = []

    def work() -> None:
        try:
            outcome.append(runner.run(sql, fmt))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome.append(exc)

    worker = threading.Thread(target=work, name="tracehouse-sql", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        runner.cancel_all()
        worker.join(10)
        runner.close()
        raise QueryCancelled() from None
    runner.close()
    result = outcome[0]
    if isinstance(result, QueryRefused):
        raise QueryFailed(str(result)) from None
    if isinstance(result, BaseException):
        raise result
    return result
