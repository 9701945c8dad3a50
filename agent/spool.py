"""The agent's on-disk spool: an append-only event log, bounded, crash-safe.

Layout of the spool folder:

    00000000000000001530.seg   segment files, named by the seq of their first record
    head                       "SEGMENT OFFSET": everything before it is acknowledged
    sent                       the sent-journal: how published batches were cut (agent/journal.py)

A record is `[u32 length][u32 crc32(body)][body]` (agent/records.py), body = msgpack
`[seq, event]`. Every accepted event is appended at once (one `write()`, so a killed
process loses nothing); a record stays until the broker has acknowledged the batch that
carried it. Then the head moves past it and fully acknowledged segments are deleted.

Why it is safe:
- A power cut can tear only unsynced records at a segment's end; on open (agent/recovery.py)
  a torn or corrupt tail is cut off, nothing before it is touched, and what is kept is
  fsynced before it may be published.
- Sequence numbers never repeat: the next seq follows the newest record or the newest
  segment's name. Under the "batch" and "event" policies only fsynced records are ever
  published (up to `synced`), so an unsynced record lost in a power cut was never seen. A
  cut tail skips as many seqs as it could have held, and a seq whose bytes may have
  reached the file is never given again, even if its write failed (skipping is fine:
  batches end at seq gaps).
- `head` is a hint and is never fsynced: if it is lost or stale, unacknowledged-looking
  records are published again and the collector deduplicates them by (device, seq).
- Bounded: when the segment files exceed `max_bytes`, the oldest segment is deleted and
  its unacknowledged records are counted in `dropped_events`.

Disk errors (full disk, EIO) never corrupt it and never escape except as `SpoolError` from
`append` (the event was not taken) or `sync`: each is counted in `io_errors` and reported
to `on_io_error`. The in-memory sizes follow the files as soon as bytes may have reached
them: a record whose write failed is cut off again, and if even that fails the rest of
its segment is marked junk and the next record starts a new segment. A failed fsync under
the "event" policy cuts the record off and refuses the event, or, if the cut fails too,
keeps it for the next sync. A failed `head` write is counted and ignored.

fsync: `sync()` blocks; `start_sync()` hands the same work to a `SyncJob` that may run in a
worker thread (the agent does that under the "batch" policy), `finish_sync()` takes its
result back on the owner's thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from agent.errors import RecordTooLarge, SpoolError
from agent.journal import SentJournal
from agent.records import (
    HEADER,
    HEADER_BYTES,
    MAX_RECORD_BYTES,
    Position,
    Record,
    SyncJob,
    frame,
    fsync_folder,
    segment_path,
)
from agent.recovery import recover
from agent.settings import normalize_fsync

__all__ = ["HEADER_BYTES", "MAX_RECORD_BYTES", "Position", "Record", "Spool"]

MAX_SEGMENT_BYTES = 256 * 1024


@dataclass(slots=True)
class _Segment:
    size: int = 0    # bytes of whole records
    count: int = 0
    junk: int = 0    # bytes of a failed write that could not be cut off: nothing is appended after them


class Spool:
    """Not thread-safe: the agent uses it from its event loop only (a SyncJob may run elsewhere)."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 8 * 1024 * 1024,
                 fsync: str | bool = "batch", on_io_error: Callable[[str, OSError], None] | None = None) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.policy = normalize_fsync(fsync)
        self.segment_bytes = max(4096, min(MAX_SEGMENT_BYTES, max_bytes // 8))
        self.dropped_events = 0          # unacknowledged events deleted because the spool was full
        self.io_errors = 0               # failed writes, fsyncs, truncations, head writes, deletions
        self.on_io_error = on_io_error
        self._fd: int | None = None      # the tail segment, opened at the first append
        self._dirty = False              # the tail written since its last fsync
        self._head_saved = True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            found = recover(self.folder, self.policy, self._io_error)
            self.journal = SentJournal(self.folder, self._io_error)
        except OSError as exc:
            raise SpoolError(f"spool folder {self.folder} is not usable: {exc}", path=str(self.folder)) from exc
        self.recovered_torn_bytes = found.torn_bytes  # cut off torn or corrupt segment tails at open
        self._segments = {n: _Segment(size, count) for n, (size, count) in found.segments.items()}
        self._disk_bytes = sum(seg.size for seg in self._segments.values())
        self._head = found.head
        self._next_seq = found.next_seq
        self._unsynced = found.unsynced  # owned fds of other files waiting for an fsync
        self._synced = self._head if self._unsynced else self.tail

    # -- state -------------------------------------------------------------------------------

    @property
    def head(self) -> Position:
        """The oldest unacknowledged record."""
        return self._head

    @property
    def tail(self) -> Position:
        """Where the next record will be appended."""
        last = max(self._segments)
        seg = self._segments[last]
        return Position(last, seg.size, seg.count)

    @property
    def synced(self) -> Position:
        """Records before this are durable (under the "off" policy: written), so publishable."""
        return self.tail if self.policy == "off" else min(self._synced, self.tail)

    @property
    def empty(self) -> bool:
        return self._head == self.tail

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def bytes_used(self) -> int:
        """Unacknowledged bytes. No segment precedes the head's: acknowledged ones are deleted."""
        return self._disk_bytes - self._head.offset

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    @property
    def pending_events(self) -> int:
        """Unacknowledged events."""
        return sum(s.count for s in self._segments.values()) - self._head.before

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    # -- writing ---------------------------------------------------------------------------

    def append(self, event: list[Any]) -> tuple[int, int]:
        """Write one event (one write() call); returns (seq, bytes on disk).

        Raises RecordTooLarge (or TypeError/ValueError/OverflowError for values msgpack cannot
        encode) before writing anything, SpoolError when the event could not be kept (disk
        full, I/O error; counted; no partial record is left in front of later ones)."""
        seq = self._next_seq
        body = msgpack.packb([seq, event], use_bin_type=True)
        size = HEADER_BYTES + len(body)
        if size > MAX_RECORD_BYTES:
            raise RecordTooLarge(size, MAX_RECORD_BYTES)
        last = max(self._segments)
        seg = self._segments[last]
        if seg.junk or (seg.size and seg.size + size > self.segment_bytes):
            last = self._roll()
            seg = self._segments[last]
        offset = seg.size
        self._write(last, seg, frame(body))
        # The bytes are in the file: from here on memory says so, and the seq is spent.
        seg.size += size
        seg.count += 1
        self._disk_bytes += size
        self._next_seq = seq + 1
        self._dirty = True
        if self.policy == "event":
            try:
                self.sync()
            except SpoolError:
                if self._truncate_tail(offset):  # refused: the caller is told, the seq stays spent
                    seg.size, seg.count = offset, seg.count - 1
                    self._disk_bytes -= size
                    raise
                # Neither durable nor removable: keep it; the next sync retries (and publishes it).
        if self._disk_bytes > self.max_bytes:
            self._drop_oldest()
        return seq, size

    def sync(self) -> None:
        """fsync what was appended since the last sync (a no-op under the "off" policy).

        SpoolError if it failed (counted); what was not synced is retried by the next sync."""
        job = self.start_sync()
        if job is None:
            return
        try:
            job.run()
        except OSError as exc:
            self.finish_sync(job, exc)
            raise SpoolError(f"cannot fsync the spool in {self.folder}: {exc}", path=str(self.folder)) from exc
        self.finish_sync(job, None)

    def start_sync(self) -> SyncJob[Position] | None:
        """The fsyncs that make everything written so far durable, as a job that may run in
        another thread (None when there is nothing to do). Hand it back with finish_sync()."""
        if self.policy == "off":
            return None
        fds, self._unsynced = self._unsynced, []
        fds += self.journal.take_unsynced()
        if self._dirty and self._fd is not None:
            try:
                fds.append(os.dup(self._fd))
            except OSError as exc:  # out of fds: try again at the next sync
                self._unsynced = fds
                self._io_error("dup for fsync", exc)
                return None
            self._dirty = False
        if not fds:
            self._synced = max(self._synced, self.tail)
            return None
        return SyncJob(fds, self.tail)

    def finish_sync(self, job: SyncJob[Position], error: BaseException | None) -> None:
        """Take a job's outcome: move `synced`, or count the failure and keep its fds for the next sync."""
        if error is None:
            self._synced = max(self._synced, job.upto)
            return
        self._unsynced[:0] = job.fds
        job.fds = []
        self._io_error("fsync", error if isinstance(error, OSError) else OSError(str(error)))

    def read(self, start: Position, stop: Position, max_records: int, max_bytes: int) -> list[Record]:
        """Records from `start` up to `stop`, in order, within the limits (at least one if any)."""
        out: list[Record] = []
        total = 0
        for number in sorted(n for n in self._segments if start.segment <= n <= stop.segment):
            begin, index = (start.offset, start.before) if number == start.segment else (0, 0)
            end = min(self._segments[number].size, stop.offset if number == stop.segment else 1 << 62)
            if begin >= end:
                continue
            with self._path(number).open("rb") as f:
                f.seek(begin)
                # Enough to reach the byte limit plus one whole record, since no record is larger.
                data = f.read(min(end - begin, max_bytes - total + MAX_RECORD_BYTES))
            pos = 0
            while pos + HEADER_BYTES <= len(data):
                length, _crc = HEADER.unpack_from(data, pos)
                size = HEADER_BYTES + length
                if pos + size > len(data):
                    break
                if out and (len(out) >= max_records or total + size > max_bytes):
                    return out
                seq, event = msgpack.unpackb(data[pos + HEADER_BYTES: pos + size], raw=False)
                pos += size
                index += 1
                out.append(Record(seq, event, size, Position(number, begin + pos, index)))
                total += size
            if len(out) >= max_records or total >= max_bytes:
                break
        return out

    def ack(self, end: Position) -> None:
        """Everything before `end` is delivered: move the head, delete finished segments.
        The head file is written by `save_head()` (once per wake-up is enough: it is a hint)."""
        if end <= self._head:
            return  # already acknowledged, or dropped while its batch was in flight
        seg = self._segments.get(end.segment)
        if seg is not None and end.offset >= seg.size and end.segment != max(self._segments):
            later = min(n for n in self._segments if n > end.segment)
            end = Position(later, 0, 0)  # a finished segment: the head moves into the next one
        self._head = end
        self._head_saved = False
        for number in [n for n in self._segments if n < end.segment]:
            self._delete(number)

    @property
    def head_saved(self) -> bool:
        """The head file says where the head is (a restart resumes from there)."""
        return self._head_saved

    def save_head(self) -> bool:
        """Write the head file if the head moved; a failure is counted and ignored (it is a
        hint: the next save tries again). True if the file is up to date."""
        if self._head_saved:
            return True
        tmp = self.folder / ".head.tmp"
        try:
            tmp.write_text(f"{self._head.segment} {self._head.offset}")
            os.replace(tmp, self.folder / "head")
        except OSError as exc:
            self._io_error("write head", exc)
            return False
        self._head_saved = True
        return True

    def close(self) -> None:
        """Sync, save the head and close; a new Spool can open the folder (or this one is used
        again: files reopen). A failed sync is counted; the data stays for the OS to write back."""
        with contextlib.suppress(SpoolError):
            self.sync()
        for fd in ([self._fd] if self._fd is not None else []) + self._unsynced:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd, self._unsynced, self._dirty = None, [], False
        self.journal.close()
        self._head_saved = False  # at close always: a fresh folder gets its head file too
        self.save_head()

    # -- internals -------------------------------------------------------------------------

    def _io_error(self, what: str, exc: OSError) -> None:
        self.io_errors += 1
        if self.on_io_error is not None:
            self.on_io_error(what, exc)

    def _fail(self, what: str, exc: OSError) -> SpoolError:
        self._io_error(what, exc)
        return SpoolError(f"cannot {what} in {self.folder}: {exc}", path=str(self.folder))

    def _drop_oldest(self) -> None:
        """Delete the oldest segments until the files fit; the tail segment always stays."""
        while self._disk_bytes > self.max_bytes and len(self._segments) > 1:
            oldest = min(self._segments)
            seg = self._segments[oldest]
            self.dropped_events += seg.count - (self._head.before if self._head.segment == oldest else 0)
            self._delete(oldest)
            if self._head.segment <= oldest:
                self._head = Position(min(self._segments), 0, 0)
                self._head_saved = False
        self.save_head()

    def _roll(self) -> int:
        """Start a new tail segment, named by the seq its first record will get.

        SpoolError (counted) if it cannot be created durably; then nothing changed. The old
        tail is not fsynced here: its fd waits for the next sync (which may run off the loop)."""
        number = self._next_seq
        path = self._path(number)
        try:
            path.touch()
        except OSError as exc:
            raise self._fail("create a segment", exc) from exc
        if self.policy != "off":
            try:  # the new name must be durable before any older segment (and the seqs it proves) is deleted
                fsync_folder(self.folder)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    path.unlink()  # left behind, an empty segment named by an unused seq is harmless
                raise self._fail("fsync the spool folder", exc) from exc
        if self._fd is not None:
            if self._dirty:
                self._unsynced.append(self._fd)
            else:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd, self._dirty = None, False
        self._segments[number] = _Segment()
        return number

    def _write(self, number: int, seg: _Segment, record: bytes) -> None:
        """Append one record with one write(); on failure (disk full) cut it off again, so a
        half-written record never sits in front of later ones, and raise SpoolError."""
        try:
            if self._fd is None:
                self._fd = os.open(self._path(number), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            written = os.write(self._fd, record)
        except OSError as exc:  # nothing was written (a failing write() transfers no bytes)
            raise self._fail(f"append to {self._path(number).name}", exc) from exc
        if written == len(record):
            return
        # A short write: part of the record is in the file. Its seq is spent either way.
        self._next_seq += 1
        if not self._truncate_tail(seg.size):
            seg.junk += written  # memory follows the file; the next record starts a new segment
            self._disk_bytes += written
        raise self._fail(f"append to {self._path(number).name}",
                         OSError(f"short write: {written} of {len(record)} bytes (disk full?)"))

    def _truncate_tail(self, size: int) -> bool:
        """Cut the tail segment's file back to `size` bytes; False (counted) if that fails."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            self._io_error("cut off a failed record", exc)
            return False
        return True

    def _delete(self, number: int) -> None:
        seg = self._segments.pop(number)
        self._disk_bytes -= seg.size + seg.junk
        try:
            self._path(number).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # left on disk; the next start deletes it (it is before the head)
            self._io_error(f"delete {self._path(number).name}", exc)

    def _path(self, number: int) -> Path:
        return segment_path(self.folder, number)
