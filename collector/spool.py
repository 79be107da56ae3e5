"""The durable spool: an append-only on-disk log of encoded, redacted batches between the pipeline
and the store. A request is acknowledged once its record is written and fsynced (one fsync serves
every request that arrived meanwhile: group commit); the drainer inserts from it afterwards.

Layout of `<dir>`:
- `<base>.seg`: segments named by the global byte offset of their first record;
- `checkpoint`: the global offset up to which everything is in the store;
- `intent`: the range and deduplication token of the insert in flight, so a crash between
  insert and checkpoint replays exactly that insert with the same token (ClickHouse drops it);
- `digests`: the request digest scheme and the offset from which records carry it (older records: an
  older version's digests, still looked up for retries);

A record is `length u32 | crc32 u32 | rows u32 | header-length u16 | header | rows payload`, the
CRC covering rows and everything after the prefix; the header is the request digest (16 bytes),
then `~` when the rows are sealed (encryption at rest: `encryption.RecordSealer`, bound to the spool's id
and the record's offset), then for a record of another table than the spans' `@<table>|`, then the
column names. Span records
carry no table (as every record did before scores existed), so a spool written by an earlier version
drains into the spans' table unchanged. A torn or corrupt tail (crash mid-write) is cut off at start,
with a warning, never a crash loop.

The file writes (a record of 512 LLM spans is ~7 MB: its CRC, its sealing, the write, a rotation's two
fsyncs) run in one writer thread, in the order the records were appended, off the event loop: `append`
only reserves the record's offsets (budget, digest, age accounting stay on the loop) and queues the write;
`sync(end)` waits for the write, then for an fsync that covers it.

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
import collections
import contextlib
import json
import logging
import os
import secrets
import struct
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tracehouse.collector.encryption import RecordSealer, SealFailed

log = logging.getLogger(__name__)

_PREFIX = struct.Struct("<III")  # length (after the prefix), crc32, rows
_HEADER_LEN = struct.Struct("<H")
_SEGMENT_SUFFIX = ".seg"
DIGEST_BYTES = 16
NO_DIGEST = bytes(DIGEST_BYTES)
# The file in the spool directory that names the digest scheme and the offset its records start at.
DIGESTS_FILE = "digests"
DIGEST_SCHEME = "blake3"
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


class _Broken(OSError):
    """A write queued behind a failed one: refused until the failed tail is cut."""


@dataclass
class _Job:
    """A write (or a cut after a failure) queued to the writer thread; `end` is the record's end offset (the
    new segment's base for a cut)."""

    end: int
    future: Future[None]
    cut: bool = False


class Spool:
    def __init__(
        self, directory: Path, budget_bytes: int, segment_bytes: int = 64 << 20, sealer: RecordSealer | None = None
    ) -> None:
        """`sealer` (encryption at rest): every record's rows are sealed with it, bound to their offset."""
        self.directory = directory
        self.sealer = sealer
        self.budget_bytes = budget_bytes
        self.segment_bytes = segment_bytes
        self._segments: list[int] = []  # bases, ascending (the writer thread appends, the loop drops the first)
        self._written = 0  # global end of the offsets handed out (records queued to the writer included)
        self._synced = 0  # global end of what is on disk for sure
        self._committed = 0  # global offset up to which the store has everything
        self._sync_task: asyncio.Future[None] | None = None
        self._appended = asyncio.Event()
        self._append_times: list[tuple[int, float]] = []  # (record start, wall time) for the age gauge
        self._digests: dict[bytes, int] = {}  # request digest -> end offset of its record
        self._lost: list[tuple[int, int]] = []  # offset ranges cut off after a failed write or fsync
        # Queued to the writer thread, in offset order; reaped (failures handled) on the caller's side.
        self._jobs: collections.deque[_Job] = collections.deque()
        self._writer: ThreadPoolExecutor | None = None
        self._cuts_pending = 0  # cuts queued after a failure: no fsync result counts until they are done
        self._generation = 0  # bumped by every failure: an fsync begun before it does not count
        # The writer thread's side; `_io_lock` guards the swap of `_file` and the published offsets.
        self._io_lock = threading.Lock()
        self._file = None  # the open last segment
        self._disk_base = 0  # base of the open segment
        self._disk_end = 0  # global end of what is written to the files (flushed to the kernel)
        self._disk_durable = 0  # global end of what a rotation fsynced
        self._disk_broken = False  # a write failed: later writes are refused until the tail is cut
        self.sync_error = ""  # the last write or fsync failure, until a sync succeeds again
        self.sync_failures = 0
        self.truncated_bytes = 0
        self.instance_id = ""
        # Records before this offset carry the digests of an older version (see legacy_digests).
        self._digests_since = 0
        self.legacy_digests = False

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
        self._disk_base, self._disk_end, self._disk_durable = last, valid_end, valid_end
        self._disk_broken = False
        self._drop_committed_segments()
        self._load_digest_scheme()

    def _load_digest_scheme(self) -> None:
        """Where this version's request digests (pipeline.request_digest) start. A spool without the file was
        written by an older version, with other digests: while records of it are remembered, a retry is
        looked up by its older digest too (pipeline.legacy_digest), for as long as this process runs."""
        path = self.directory / DIGESTS_FILE
        try:
            words = path.read_text().split()
        except FileNotFoundError:
            words = []
        if len(words) == 2 and words[0] == DIGEST_SCHEME and words[1].isdigit():
            self._digests_since = int(words[1])
        else:
            self._digests_since = self._written
            _write_atomic(path, f"{DIGEST_SCHEME} {self._written}\n".encode())
        self.legacy_digests = any(end <= self._digests_since for end in self._digests.values())

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
        """Finish the queued writes, fsync and close."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self._reap()
        if self._file:
            if self._disk_broken:
                with contextlib.suppress(OSError):
                    self._file.close()
            else:
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
        """Queue one record of rows for `table` ("" for the spans') to the writer thread and return its end
        offset: it is durable once `await sync(end)` returns. Raises SpoolFull at the budget; a write that
        fails (disk full, I/O error) raises SpoolWriteFailed (an OSError) from `sync`."""
        self._reap()
        if self.full:
            raise SpoolFull(f"spool holds {self.pending_bytes} unsent bytes (budget {self.budget_bytes})")
        assert self._file is not None, "spool is not open"
        assert len(digest) == DIGEST_BYTES
        names = _table_prefix(table) + header
        if self.sealer is not None:
            names = _SEALED_MARK + names
        head = _HEADER_LEN.pack(DIGEST_BYTES + len(names)) + digest + names
        start = self._written
        size = _PREFIX.size + len(head) + len(payload) + (self.sealer.overhead if self.sealer is not None else 0)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracehouse-spool")
        future = self._writer.submit(self._write, start, size, head, names, payload, rows)
        self._jobs.append(_Job(start + size, future))
        self._written = start + size
        self._append_times.append((start, time.time()))
        self._remember(digest, self._written)
        return self._written

    # --- the writer thread ------------------------------------------------------------------------

    def _write(self, start: int, size: int, head: bytes, names: bytes, payload: bytes, rows: int) -> None:
        """In the writer thread: seal, checksum, rotate if due, write and flush one record at `start`."""
        if self._disk_broken:
            raise _Broken(0, "an earlier write failed")
        assert start == self._disk_end, f"spool: record at {start} written at {self._disk_end}"
        if self.sealer is not None:
            payload = self.sealer.seal(payload, self._associated(start, names))
        assert _PREFIX.size + len(head) + len(payload) == size
        crc = zlib.crc32(payload, _crc(rows, head))
        assert self._file is not None
        try:
            if start > self._disk_base and start - self._disk_base + size > self.segment_bytes:
                self._rotate()
            self._file.write(_PREFIX.pack(size - _PREFIX.size, crc, rows))
            self._file.write(head)
            self._file.write(payload)
            self._file.flush()
        except OSError:
            self._disk_broken = True
            raise
        with self._io_lock:
            self._disk_end = start + size

    def _rotate(self) -> None:
        """Fsync and close the open segment, go on in a new one at the end of what is written. In the writer
        thread, or on the caller's side when nothing is queued (`drop_sent_segments`)."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        base = self._disk_end
        new = _open_private(self._segment_path(base), os.O_WRONLY | os.O_APPEND)
        with self._io_lock:
            old, self._file = self._file, new
            self._disk_base = self._disk_durable = base
        old.close()
        self._segments.append(base)
        _fsync_dir(self.directory)

    def _cut(self, keep: int, base: int) -> None:
        """In the writer thread, after a failure: drop everything written after `keep` (the last durable
        offset) and go on in a new segment at `base` (past every offset handed out)."""
        with self._io_lock, contextlib.suppress(OSError):
            self._file.close()  # may try to flush the failed buffer again; what it writes is cut below
        while len(self._segments) > 1 and self._segments[-1] > keep:  # segments begun after the last sync
            self._segment_path(self._segments.pop()).unlink(missing_ok=True)
        last = self._segments[-1]
        with open(self._segment_path(last), "r+b") as fh:
            fh.truncate(keep - last)
            os.fsync(fh.fileno())
        new = _open_private(self._segment_path(base if base > keep else last), os.O_WRONLY | os.O_APPEND)
        with self._io_lock:
            self._file = new
            self._disk_base = base if base > keep else last
            self._disk_end = self._disk_durable = base
        if base > keep:
            self._segments.append(base)
            _fsync_dir(self.directory)
        self._disk_broken = False

    # --- the caller's side of the queue -----------------------------------------------------------

    def _reap(self) -> None:
        """Take the finished jobs off the queue, in order; a failed write fails every record not yet
        durable (the first one to fail, that is: those queued behind it are in the range it cut)."""
        while self._jobs and self._jobs[0].future.done():
            job = self._jobs.popleft()
            exc = job.future.exception()
            if job.cut:
                self._cuts_pending -= 1
                if exc is None:
                    self._synced = max(self._synced, job.end)
                else:
                    log.error("spool: cannot cut the failed tail yet (retried on the next write): %s", exc)
            elif exc is not None and not self._is_lost(job.end):
                with self._io_lock:
                    durable = self._disk_durable  # a rotation fsynced everything before the open segment
                self._failed(exc, max(self._synced, durable))

    def _is_lost(self, end: int) -> bool:
        return any(start < end <= stop for start, stop in self._lost)

    async def sync(self, upto: int) -> None:
        """Return once everything up to `upto` is on disk; concurrent callers share one fsync.
        Raises SpoolWriteFailed when the record ending at `upto` could not be made durable."""
        while True:
            self._reap()
            if self._lost and self._is_lost(upto):
                cuts = [job.future for job in self._jobs if job.cut]
                if cuts:  # refused once the failed tail is cut: the spool goes on past it meanwhile
                    with contextlib.suppress(Exception):
                        await asyncio.wrap_future(cuts[-1])
                    self._reap()
                raise SpoolWriteFailed(0, f"spool write failed: {self.sync_error or 'record was cut off'}")
            if self._synced >= upto:
                return
            if self._disk_end < upto:  # not written yet: wait for the writer thread (its first job, then again)
                if not self._jobs:
                    raise SpoolWriteFailed(0, "spool write failed: the record is not queued")
                with contextlib.suppress(Exception):  # a failure is handled by _reap, above
                    await asyncio.wrap_future(self._jobs[0].future)
                continue
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync_once())
            before = self._synced
            await asyncio.shield(self._sync_task)
            if self._synced == before and self._synced < upto and not self._is_lost(upto):
                await asyncio.sleep(0.001)  # an fsync overtaken by a failure: look again

    async def _sync_once(self) -> None:
        try:
            generation = self._generation
            with self._io_lock:
                target = self._disk_end
                try:  # a descriptor of its own: the writer thread may rotate or cut meanwhile
                    fd = os.dup(self._file.fileno()) if self._file is not None else -1
                except (OSError, ValueError):
                    fd = -1
            if fd < 0 or self._cuts_pending:
                if fd >= 0:
                    os.close(fd)
                return
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                if generation != self._generation:
                    return  # a failure cut this file meanwhile: the sync loop looks again
                self._failed(exc, self._synced)
                raise SpoolWriteFailed(exc.errno, f"spool fsync failed: {exc.strerror or exc}") from exc
            finally:
                os.close(fd)
            if generation == self._generation and not self._cuts_pending:
                self._synced = max(self._synced, target)
                self.sync_error = ""
                self._appended.set()
        finally:
            self._sync_task = None

    def _failed(self, exc: BaseException, keep: int) -> None:
        """Forget everything after `keep`, the last durable offset (its requests are being refused), and
        have the writer thread cut it off and go on past every offset handed out."""
        self.sync_failures += 1
        self._generation += 1
        self.sync_error = f"{type(exc).__name__}: {exc}"[:300]
        end = self._written  # offsets up to here were handed out: never give them to another record
        if end > keep:
            self._lost.append((keep, end))
        self._synced = max(self._synced, keep)
        for digest in [d for d, record_end in self._digests.items() if record_end > keep]:
            del self._digests[digest]
        self._append_times = [(start, t) for start, t in self._append_times if start < keep]
        log.error("spool: write or fsync failed, the requests waiting for it are refused: %s", self.sync_error)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracehouse-spool")
        self._cuts_pending += 1
        self._jobs.append(_Job(end, self._writer.submit(self._cut, keep, end), cut=True))

    # --- draining ---------------------------------------------------------------------------------

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def synced(self) -> int:
        self._reap()
        return self._synced

    async def wait_for_data(self, timeout: float | None = None) -> None:
        await self.wait_for_synced_beyond(self._committed, timeout)

    def wake(self) -> None:
        """End a wait_for_data or wait_for_synced_beyond now (the drainer is stopping)."""
        self._appended.set()

    async def wait_for_synced_beyond(self, position: int, timeout: float | None) -> None:
        """Return once records past `position` are durable, or after `timeout` seconds."""
        if self._synced > position:
            return
        self._appended.clear()
        try:
            await asyncio.wait_for(self._appended.wait(), timeout)
        except TimeoutError:
            return

    def read(
        self,
        start: int,
        max_rows: int,
        end: int | None = None,
        max_bytes: int | None = None,
        payloads: bool = True,
    ) -> list[Record]:
        """Durable records from `start` (a record boundary) of one table and one column layout, up to
        max_rows and max_bytes of records (at least one record) or up to `end` exactly. With payloads=False
        only their framing is read (payload b""): what the drainer plans a range by, a few bytes a record
        instead of up to an insert's worth (64 MiB). It holds no state a writer thread changes but the
        segment list, which it copies, so the drainer reads payloads in a thread, off the event loop."""
        limit = self._synced if end is None else end
        records: list[Record] = []
        rows = size = 0
        position = start
        while position < limit:
            segments = list(self._segments)  # the writer thread may append one meanwhile
            base = self._segment_for(position, segments)
            seg_end = segments[segments.index(base) + 1] if base != segments[-1] else None
            with open(self._segment_path(base), "rb") as fh:
                fh.seek(position - base)
                while position < limit and (seg_end is None or position < seg_end):
                    prefix = fh.read(_PREFIX.size)
                    if len(prefix) < _PREFIX.size:
                        break
                    length, _checksum, n = _PREFIX.unpack(prefix)
                    head = fh.read(_HEADER_LEN.size)
                    (header_len,) = _HEADER_LEN.unpack(head)
                    framing = fh.read(header_len)
                    digest = framing[:DIGEST_BYTES]
                    names = framing[DIGEST_BYTES:]
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
                    if payloads:  # read on its own: no copy of the whole record sliced
                        payload = fh.read(length - _HEADER_LEN.size - header_len)
                        if sealed:
                            payload = self._open_sealed(payload, position, names)
                    else:
                        payload = b""
                        fh.seek(end_pos - base)
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
        if self._synced > self._committed and not self.read(self._committed, 1, payloads=False):
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
        self._reap()
        # Only with nothing queued to the writer thread (it is idle then) and nothing failed.
        if (
            self._committed >= self._written > self._segments[-1]
            and not self._jobs
            and not self._disk_broken
            and not self._cuts_pending
        ):
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

    def _segment_for(self, position: int, segments: list[int]) -> int:
        base = segments[0]
        for candidate in segments:
            if candidate <= position:
                base = candidate
            else:
                break
        return base

    def _segment_path(self, base: int) -> Path:
        return self.directory / f"{base:020d}{_SEGMENT_SUFFIX}"
