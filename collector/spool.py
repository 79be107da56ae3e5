"""The durable spool: an append-only on-disk log of encoded, redacted batches between the pipeline
and the store. A request is acknowledged once its record is written and fsynced (one fsync serves
every request that arrived meanwhile: group commit); the drainer inserts from it afterwards.

Layout of `<dir>`:
- `<base>.seg`: segments named by the global byte offset of their first record;
- `checkpoint`: the global offset up to which everything is in the store;
- `intent`: the range and deduplication token of the insert in flight, so a crash between
  insert and checkpoint replays exactly that insert with the same token (ClickHouse drops it).

A record is `length u32 | crc32 u32 | rows u32 | header-length u16 | header | rows payload`, the
CRC covering rows and everything after the prefix; the header is the request digest (16 bytes),
then `~` when the rows are sealed (encryption at rest: `encryption.RecordSealer`, bound to the spool's id
and the record's offset), then for a record of another table than the spans' `@<table>|`, then the
column names. Span records
carry no table (as every record did before scores existed), so a spool written by an earlier version
drains into the spans' table unchanged. A torn or corrupt tail (crash mid-write) is cut off at start,
with a warning, never a crash loop.

A failed write or fsync (disk full, I/O error) fails the requests waiting for it, never acknowledges
them: after a failed fsync the kernel may have dropped the pages, so everything after the last good
sync is cut off and the spool goes on in a new segment at an offset no earlier record was given (the
range in between is remembered as lost, so a waiter on it can never be answered by a later sync).
`id` names this spool; it is part of every deduplication token, so a new spool on an old store never
reuses the tokens of an earlier one. Every file is created 0600: records hold span data.

Request digests make retries idempotent: an exporter that resends a request whose
acknowledgement it lost (the collector died between fsync and reply) is answered from the spool
instead of storing the spans twice. Digests of the records in the last segments are kept (the
last two segments stay on disk even when already sent) and rebuilt at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from tracehouse.collector.encryption import RecordSealer, SealFailed

log = logging.getLogger(__name__)

_PREFIX = struct.Struct("<III")  # length (after the prefix), crc32, rows
_HEADER_LEN = struct.Struct("<H")
_SEGMENT_SUFFIX = ".seg"
DIGEST_BYTES = 16
NO_DIGEST = bytes(DIGEST_BYTES)
_KEPT_SEGMENTS = 2
_MAX_DIGESTS = 200_000
# Before the column names, for records of another table: `@<table>|` (a column name never starts with @).
_TABLE_MARK = b"@"
_TABLE_END = b"|"
# First in the header of a record whose rows are sealed (encryption at rest; never starts a column name).
_SEALED_MARK = b"~"


class SpoolFull(Exception):
    """The spool holds its budget of unsent bytes; the receivers ask clients to retry later."""


@dataclass(frozen=True)
class Record:
    start: int
    end: int
    rows: int
    header: bytes  # the column names, comma separated
    payload: bytes
    digest: bytes = NO_DIGEST
    table: str = ""  # the table the rows go to; "" for the spans' table (the writer's default)


def _table_prefix(table: str) -> bytes:
    if not table:
        return b""
    if not table.isidentifier() or not table.isascii():
        raise ValueError(f"spool: {table!r} is not a table name")
    return _TABLE_MARK + table.encode() + _TABLE_END


def _split_table(names: bytes) -> tuple[str, bytes]:
    """(table, column names) of a record header after its digest; "" for a span record."""
    if not names.startswith(_TABLE_MARK):
        return "", names
    table, _, columns = names[1:].partition(_TABLE_END)
    return table.decode(), columns


@dataclass(frozen=True)
class Intent:
    start: int
    end: int
    token: str


def _crc(rows: int, data: bytes | memoryview) -> int:
    return zlib.crc32(data, zlib.crc32(struct.pack("<I", rows)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_private(path: Path, flags: int):
    """A file only the collector's user can read or write (created 0600)."""
    return os.fdopen(os.open(path, flags | os.O_CREAT, 0o600), "ab" if flags & os.O_APPEND else "wb")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with _open_private(tmp, os.O_WRONLY | os.O_TRUNC) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class SpoolWriteFailed(OSError):
    """A record could not be made durable; its request must be refused (retryably), not acknowledged."""


class Spool:
    def __init__(
        self, directory: Path, budget_bytes: int, segment_bytes: int = 64 << 20, sealer: RecordSealer | None = None
    ) -> None:
        """`sealer` (encryption at rest): every record's rows are sealed with it, bound to their offset."""
        self.directory = directory
        self.sealer = sealer
        self.budget_bytes = budget_bytes
        self.segment_bytes = segment_bytes
        self._segments: list[int] = []  # bases, ascending
        self._file = None  # the open last segment
        self._written = 0  # global end of what was written
        self._synced = 0  # global end of what is on disk for sure
        self._committed = 0  # global offset up to which the store has everything
        self._sync_task: asyncio.Future[None] | None = None
        self._appended = asyncio.Event()
        self._append_times: list[tuple[int, float]] = []  # (record start, wall time) for the age gauge
        self._digests: dict[bytes, int] = {}  # request digest -> end offset of its record
        self._lost: list[tuple[int, int]] = []  # offset ranges cut off after a failed write or fsync
        self._broken = False  # a failure could not be cleaned up yet: appends retry the clean-up first
        self.sync_error = ""  # the last write or fsync failure, until a sync succeeds again
        self.sync_failures = 0
        self.truncated_bytes = 0
        self.instance_id = ""

    # --- opening and recovery --------------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.instance_id = self._load_instance_id()
        self._segments = sorted(
            int(p.name.removesuffix(_SEGMENT_SUFFIX))
            for p in self.directory.iterdir()
            if p.name.endswith(_SEGMENT_SUFFIX) and p.name.removesuffix(_SEGMENT_SUFFIX).isdigit()
        )
        checkpoint = self.directory / "checkpoint"
        self._committed = int(checkpoint.read_text()) if checkpoint.exists() else 0
        if not self._segments:
            self._segments = [self._committed]
            _open_private(self._segment_path(self._committed), os.O_WRONLY | os.O_APPEND).close()
            _fsync_dir(self.directory)
        for base in self._segments:
            os.chmod(self._segment_path(base), 0o600)  # segments written by versions before 0600
        for base in self._segments[-_KEPT_SEGMENTS:-1]:
            self._scan_segment(base)
        last = self._segments[-1]
        valid_end = self._scan_segment(last)
        path = self._segment_path(last)
        size = path.stat().st_size
        if valid_end < last + size:
            self.truncated_bytes = last + size - valid_end
            log.warning("spool: cut a torn or corrupt tail of %d bytes from %s", self.truncated_bytes, path.name)
            with open(path, "r+b") as fh:
                fh.truncate(valid_end - last)
                os.fsync(fh.fileno())
        self._written = self._synced = valid_end
        self._committed = min(max(self._committed, self._segments[0]), valid_end)
        self._file = _open_private(path, os.O_WRONLY | os.O_APPEND)
        self._drop_committed_segments()

    def _load_instance_id(self) -> str:
        path = self.directory / "id"
        try:
            value = path.read_text().strip()
        except FileNotFoundError:
            value = ""
        if not value.isalnum():
            value = secrets.token_hex(8)
            _write_atomic(path, value.encode())
        return value

    def _scan_segment(self, base: int) -> int:
        """Verify a segment's records, remember their digests; return where the last intact one ends."""
        data = memoryview(self._segment_path(base).read_bytes())
        offset = 0
        while offset + _PREFIX.size <= len(data):
            length, crc, rows = _PREFIX.unpack_from(data, offset)
            body = data[offset + _PREFIX.size : offset + _PREFIX.size + length]
            if len(body) < length or length < _HEADER_LEN.size + DIGEST_BYTES or _crc(rows, body) != crc:
                break
            offset += _PREFIX.size + length
            self._remember(bytes(body[_HEADER_LEN.size : _HEADER_LEN.size + DIGEST_BYTES]), base + offset)
        return base + offset

    def close(self) -> None:
        if self._file:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    # --- appending --------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self._written - self._committed

    @property
    def full(self) -> bool:
        return self.pending_bytes >= self.budget_bytes

    def oldest_age_seconds(self) -> float:
        while self._append_times and self._append_times[0][0] < self._committed:
            self._append_times.pop(0)
        return time.time() - self._append_times[0][1] if self._append_times else 0.0

    def _remember(self, digest: bytes, end: int) -> None:
        if digest == NO_DIGEST:
            return
        self._digests[digest] = end
        if len(self._digests) > _MAX_DIGESTS:
            del self._digests[next(iter(self._digests))]

    def lookup(self, digest: bytes) -> int | None:
        """The end offset of an earlier record of the same request, if the spool still knows it."""
        return self._digests.get(digest)

    def append(self, header: bytes, payload: bytes, rows: int, digest: bytes = NO_DIGEST, table: str = "") -> int:
        """Write one record (not yet durable: await `sync(end)`) of rows for `table` ("" for the spans');
        return its end offset. Raises SpoolFull at the budget, SpoolWriteFailed (an OSError) when the disk
        fails."""
        if self.full:
            raise SpoolFull(f"spool holds {self.pending_bytes} unsent bytes (budget {self.budget_bytes})")
        assert self._file is not None, "spool is not open"
        assert len(digest) == DIGEST_BYTES
        if self._broken:
            self._cut_unsynced()
        names = _table_prefix(table) + header
        start = self._written
        if self.sealer is not None:
            names = _SEALED_MARK + names
            payload = self.sealer.seal(payload, self._associated(start, names))
        head = _HEADER_LEN.pack(DIGEST_BYTES + len(names)) + digest + names
        length = len(head) + len(payload)
        crc = zlib.crc32(payload, _crc(rows, head))
        size = _PREFIX.size + length
        try:
            if start > self._segments[-1] and start - self._segments[-1] + size > self.segment_bytes:
                self._rotate()
            self._file.write(_PREFIX.pack(length, crc, rows))
            self._file.write(head)
            self._file.write(payload)
        except OSError as exc:
            self._failed(exc, start + size)
            raise SpoolWriteFailed(exc.errno, f"spool write failed: {exc.strerror or exc}") from exc
        self._written = start + size
        self._append_times.append((start, time.time()))
        self._remember(digest, self._written)
        return self._written

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._synced = self._written
        self._start_segment(self._written)

    def _start_segment(self, base: int) -> None:
        self._file = _open_private(self._segment_path(base), os.O_WRONLY | os.O_APPEND)
        self._segments.append(base)
        _fsync_dir(self.directory)

    async def sync(self, upto: int) -> None:
        """Return once everything up to `upto` is on disk; concurrent callers share one fsync.
        Raises SpoolWriteFailed when the record ending at `upto` could not be made durable."""
        while self._synced < upto:
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync_once())
            await asyncio.shield(self._sync_task)
        if self._lost and any(start < upto <= end for start, end in self._lost):
            raise SpoolWriteFailed(0, f"spool write failed: {self.sync_error or 'record was cut off'}")

    async def _sync_once(self) -> None:
        try:
            assert self._file is not None
            target = self._written
            try:
                self._file.flush()
                await asyncio.to_thread(os.fsync, self._file.fileno())
            except OSError as exc:
                self._failed(exc, self._written)
                raise SpoolWriteFailed(exc.errno, f"spool fsync failed: {exc.strerror or exc}") from exc
            self._synced = max(self._synced, target)
            self.sync_error = ""
            self._appended.set()
        finally:
            self._sync_task = None

    def _failed(self, exc: OSError, attempted_end: int) -> None:
        """Forget everything after the last good sync (its requests are being refused) and go on past it."""
        self.sync_failures += 1
        self.sync_error = f"{type(exc).__name__}: {exc}"[:300]
        end = max(self._written, attempted_end)
        if end > self._synced:
            self._lost.append((self._synced, end))
        self._written = end  # offsets up to `end` were handed out: never give them to another record
        for digest in [d for d, record_end in self._digests.items() if record_end > self._synced]:
            del self._digests[digest]
        self._append_times = [(start, t) for start, t in self._append_times if start < self._synced]
        log.error("spool: write or fsync failed, the requests waiting for it are refused: %s", self.sync_error)
        self._broken = True
        try:
            self._cut_unsynced()
        except OSError as cleanup:
            log.error("spool: cannot cut the failed tail yet (retried on the next write): %s", cleanup)

    def _cut_unsynced(self) -> None:
        """Truncate the last segment to what is durable and continue in a new segment at `_written`."""
        assert self._file is not None
        last = self._segments[-1]
        with contextlib.suppress(OSError):
            self._file.close()  # may try to flush the failed buffer again; what it writes is cut below
        with open(self._segment_path(last), "r+b") as fh:
            fh.truncate(self._synced - last)
            os.fsync(fh.fileno())
        self._file = _open_private(self._segment_path(last), os.O_WRONLY | os.O_APPEND)
        if self._written > self._synced:
            self._file.close()
            self._start_segment(self._written)
        self._synced = self._written
        self._broken = False

    # --- draining ---------------------------------------------------------------------------------

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def synced(self) -> int:
        return self._synced

    async def wait_for_data(self, timeout: float | None = None) -> None:
        if self._synced > self._committed:
            return
        self._appended.clear()
        try:
            await asyncio.wait_for(self._appended.wait(), timeout)
        except TimeoutError:
            return

    def read(self, start: int, max_rows: int, end: int | None = None, max_bytes: int | None = None) -> list[Record]:
        """Durable records from `start` (a record boundary) of one table and one column layout, up to
        max_rows and max_bytes of records (at least one record) or up to `end` exactly."""
        limit = self._synced if end is None else end
        records: list[Record] = []
        rows = size = 0
        position = start
        while position < limit:
            base = self._segment_for(position)
            seg_end = self._segments[self._segments.index(base) + 1] if base != self._segments[-1] else None
            with open(self._segment_path(base), "rb") as fh:
                fh.seek(position - base)
                while position < limit and (seg_end is None or position < seg_end):
                    prefix = fh.read(_PREFIX.size)
                    if len(prefix) < _PREFIX.size:
                        break
                    length, _checksum, n = _PREFIX.unpack(prefix)
                    body = fh.read(length)
                    (header_len,) = _HEADER_LEN.unpack_from(body, 0)
                    digest = body[2 : 2 + DIGEST_BYTES]
                    names = body[2 + DIGEST_BYTES : 2 + header_len]
                    sealed = names.startswith(_SEALED_MARK)
                    table, header = _split_table(names[1:] if sealed else names)
                    if records and (
                        header != records[0].header
                        or table != records[0].table
                        or (end is None and rows + n > max_rows)
                        or (end is None and max_bytes is not None and size + length > max_bytes)
                    ):
                        return records
                    end_pos = position + _PREFIX.size + length
                    payload = body[2 + header_len :]
                    if sealed:
                        payload = self._open_sealed(payload, position, names)
                    records.append(Record(position, end_pos, n, header, payload, digest, table))
                    rows += n
                    size += length
                    position = end_pos
            if seg_end is None:
                break
            position = max(position, seg_end)  # a segment cut after a failed write ends before the next begins
        return records

    def _associated(self, start: int, names: bytes) -> bytes:
        """What a sealed record is bound to: this spool, its offset, its header (moved or altered: refused)."""
        return self.instance_id.encode() + struct.pack("<Q", start) + names

    def _open_sealed(self, payload: bytes, position: int, names: bytes) -> bytes:
        where = f"spool record at offset {position}"
        if self.sealer is None:
            raise SealFailed(f"{where} is encrypted: give the encryption keys ([encryption])")
        return self.sealer.open(payload, self._associated(position, names), where)

    def skip_gap(self) -> None:
        """Move the checkpoint over a range with no durable record in it (cut off after a failed write)."""
        if self._synced > self._committed and not self.read(self._committed, 1):
            self.commit(self._synced)

    def write_intent(self, intent: Intent) -> None:
        """A file written and fsynced, no state of this object touched: safe to run in a thread."""
        _write_atomic(self.directory / "intent", json.dumps(intent.__dict__).encode())

    def read_intent(self) -> Intent | None:
        path = self.directory / "intent"
        try:
            intent = Intent(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return intent if intent.start == self._committed and intent.end <= self._synced else None

    def write_checkpoint(self, upto: int) -> None:
        """The durable part of `commit` (a file written and fsynced, no state of this object touched), so the
        drainer can run it in a thread, off the event loop the receivers' appends run on."""
        _write_atomic(self.directory / "checkpoint", str(upto).encode())

    def commit(self, upto: int, checkpoint_written: bool = False) -> None:
        """Everything before `upto` is in the store: move the checkpoint and drop whole segments.
        `checkpoint_written`: write_checkpoint(upto) has already run."""
        if not checkpoint_written:
            self.write_checkpoint(upto)
        self._committed = upto
        (self.directory / "intent").unlink(missing_ok=True)
        self._drop_committed_segments()

    def drop_sent_segments(self) -> int:
        """Delete every segment whose records are all in the store, the open one too when it is all sent
        (the spool goes on in a new one), and return the bytes removed. `tracehouse forget` calls it after
        an erasure so that no sent copy of the erased spans stays on disk; the request digests of the
        dropped records stay in memory, so until a restart a retried request is still answered from them."""
        # Not while an fsync of the open file runs in its thread: it would be closed under it.
        if self._committed >= self._written > self._segments[-1] and not self._broken and self._sync_task is None:
            self._rotate()
        removed = 0
        while len(self._segments) > 1 and self._segments[1] <= self._committed:
            path = self._segment_path(self._segments.pop(0))
            with contextlib.suppress(FileNotFoundError):
                removed += path.stat().st_size
                path.unlink()
        if removed:
            _fsync_dir(self.directory)
        return removed

    def _drop_committed_segments(self) -> None:
        while len(self._segments) > _KEPT_SEGMENTS and self._segments[1] <= self._committed:
            self._segment_path(self._segments.pop(0)).unlink(missing_ok=True)

    def _segment_for(self, position: int) -> int:
        base = self._segments[0]
        for candidate in self._segments:
            if candidate <= position:
                base = candidate
            else:
                break
        return base

    def _segment_path(self, base: int) -> Path:
        return self.directory / f"{base:020d}{_SEGMENT_SUFFIX}"
