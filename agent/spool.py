"""The agent's on-disk spool: an append-only event log, bounded, crash-safe.

Layout of the spool folder:

    00000000000000001530.seg   segment files, named by the seq of their first record
    head                       "SEGMENT OFFSET": everything before it is acknowledged

A record is `[u32 length][u32 crc32(body)][body]`, little-endian, body = msgpack
`[seq, event]`. Every accepted event is appended at once (one `write()`, so a killed
process loses nothing); a record stays until the broker has acknowledged the batch that
carried it. Then the head moves past it and fully acknowledged segments are deleted.

Why it is safe:
- A power cut can tear only unsynced records at a segment's end. On open, every segment's
  records are checked (length, CRC) and a torn or corrupt tail is cut off; nothing before
  it is touched.
- Sequence numbers never repeat. The next seq is derived from the newest record (or the
  newest segment's name, which is the seq its first record gets), so a restart after a
  kill continues without a gap. Under the "batch" and "event" policies only fsynced
  records are ever published (the agent publishes up to `synced`), so an unsynced record
  lost in a power cut was never seen and its seq may be given again. A cut tail still
  skips as many seqs as it could have held, in case it held published records (bit rot).
- `head` is a hint and is never fsynced: if it is lost or stale, unacknowledged-looking
  records are published again and the collector deduplicates them by (device, seq).
- Bounded: when the segment files exceed `max_bytes`, the oldest segment is deleted and
  its unacknowledged records are counted in `dropped_events`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from agent.errors import RecordTooLarge, SpoolError
from agent.settings import normalize_fsync

_HEADER = struct.Struct("<II")
HEADER_BYTES = _HEADER.size
MAX_RECORD_BYTES = 8 * 1024   # a valid wire event is under 3 KiB; this bounds what a read must fetch
MIN_RECORD_BYTES = 13         # header + msgpack [seq, [kind, ts]]: used to bound seqs in a cut tail
MAX_SEGMENT_BYTES = 256 * 1024


class Position(NamedTuple):
    """A record boundary: `before` records precede `offset` in `segment`. Ordered like the log."""

    segment: int
    offset: int
    before: int


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    event: list[Any]
    size: int        # bytes on disk, header included
    end: Position    # where the next record starts


@dataclass(slots=True)
class _Segment:
    size: int = 0
    count: int = 0


class Spool:
    """Not thread-safe: the agent uses it from its event loop only."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 8 * 1024 * 1024,
                 fsync: str | bool = "batch") -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.policy = normalize_fsync(fsync)
        self.segment_bytes = max(4096, min(MAX_SEGMENT_BYTES, max_bytes // 8))
        self.dropped_events = 0          # unacknowledged events deleted because the spool was full
        self.recovered_torn_bytes = 0    # bytes cut off torn or corrupt segment tails at open
        self._segments: dict[int, _Segment] = {}
        self._disk_bytes = 0
        self._fd: int | None = None      # the tail segment, opened at the first append
        self._dirty = False              # written since the last fsync
        self._next_seq = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._head = self._recover()
        except OSError as exc:
            raise SpoolError(f"spool folder {self.folder} is not usable: {exc}", path=str(self.folder)) from exc

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
        encode) before writing anything, SpoolError when the write fails (nothing is left behind)."""
        seq = self._next_seq
        body = msgpack.packb([seq, event], use_bin_type=True)
        size = HEADER_BYTES + len(body)
        if size > MAX_RECORD_BYTES:
            raise RecordTooLarge(size, MAX_RECORD_BYTES)
        last = max(self._segments)
        if self._segments[last].size and self._segments[last].size + size > self.segment_bytes:
            last = self._roll()
        seg = self._segments[last]
        self._write(last, seg.size, _HEADER.pack(len(body), zlib.crc32(body)) + body)
        self._dirty = True
        if self.policy == "event":
            self.sync()
        seg.size += size
        seg.count += 1
        self._disk_bytes += size
        self._next_seq = seq + 1
        if self._disk_bytes > self.max_bytes:
            self._drop_oldest()
        return seq, size

    def sync(self) -> None:
        """fsync what was appended since the last sync (a no-op under the "off" policy)."""
        if self._dirty and self._fd is not None and self.policy != "off":
            os.fsync(self._fd)
        self._dirty = False

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
                length, _crc = _HEADER.unpack_from(data, pos)
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
        """Everything before `end` is delivered: move the head, delete finished segments."""
        if end <= self._head:
            return  # already acknowledged, or dropped while its batch was in flight
        seg = self._segments.get(end.segment)
        if seg is not None and end.offset >= seg.size and end.segment != max(self._segments):
            later = min(n for n in self._segments if n > end.segment)
            end = Position(later, 0, 0)  # a finished segment: the head moves into the next one
        self._head = end
        for number in [n for n in self._segments if n < end.segment]:
            self._delete(number)
        self._write_head()

    def close(self) -> None:
        """Flush and close; the spool can be opened again by a new Spool (or used again: files reopen)."""
        self._close_tail()
        with contextlib.suppress(OSError):
            self._write_head()

    # -- internals -------------------------------------------------------------------------

    def _drop_oldest(self) -> None:
        """Delete the oldest segments until the files fit; the tail segment always stays."""
        while self._disk_bytes > self.max_bytes and len(self._segments) > 1:
            oldest = min(self._segments)
            seg = self._segments[oldest]
            self.dropped_events += seg.count - (self._head.before if self._head.segment == oldest else 0)
            self._delete(oldest)
            if self._head.segment <= oldest:
                self._head = Position(min(self._segments), 0, 0)
        self._write_head()

    def _roll(self) -> int:
        """Start a new tail segment, named by the seq its first record will get."""
        self._close_tail()
        number = self._next_seq
        self._path(number).touch()
        self._segments[number] = _Segment()
        # The new name must be durable before any older segment (and the seqs it proves) is deleted.
        self._sync_dir()
        return number

    def _write(self, number: int, size: int, record: bytes) -> None:
        """Append one record with one write(); on failure (disk full) cut it off again, so a
        half-written record never sits in front of later ones."""
        if self._fd is None:
            self._fd = os.open(self._path(number), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write: {written} of {len(record)} bytes")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise SpoolError(f"cannot append to {self._path(number)}: {exc}", path=str(self.folder)) from exc

    def _close_tail(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def _delete(self, number: int) -> None:
        seg = self._segments.pop(number)
        self._disk_bytes -= seg.size
        with contextlib.suppress(FileNotFoundError):
            self._path(number).unlink()

    def _path(self, number: int) -> Path:
        return self.folder / f"{number:020d}.seg"

    def _sync_dir(self) -> None:
        if self.policy == "off":
            return
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_head(self) -> None:
        tmp = self.folder / ".head.tmp"
        tmp.write_text(f"{self._head.segment} {self._head.offset}")
        os.replace(tmp, self.folder / "head")

    def _read_head(self) -> tuple[int, int] | None:
        try:
            segment, offset = (int(x) for x in (self.folder / "head").read_text().split())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return (segment, offset) if segment >= 0 and offset >= 0 else None

    def _recover(self) -> Position:
        """Check every segment, cut torn tails, find the head and the next seq."""
        numbers = sorted(int(p.name[:-4]) for p in self.folder.glob("*.seg") if p.name[:-4].isdigit())
        saved = self._read_head()
        head_segment = saved[0] if saved else (numbers[0] if numbers else 0)
        next_seq = numbers[-1] if numbers else 0
        cut = 0
        head: Position | None = None
        for number in numbers:
            if number < head_segment and number != numbers[-1]:
                self._path(number).unlink()  # fully acknowledged before the crash
                continue
            boundaries, last_seq, size = _scan(self._path(number))
            valid = boundaries[-1]
            if valid < size:
                cut += size - valid
                with self._path(number).open("r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
            self._segments[number] = _Segment(valid, len(boundaries) - 1)
            self._disk_bytes += valid
            if last_seq >= 0:
                next_seq = max(next_seq, last_seq + 1)
            if head is None and number >= head_segment:
                if number == head_segment and saved is not None:
                    # The greatest record boundary not after the saved offset (a torn tail may have gone).
                    index = max(i for i, b in enumerate(boundaries) if b <= saved[1])
                    head = Position(number, boundaries[index], index)
                else:
                    head = Position(number, 0, 0)
        if not self._segments:
            self._segments[next_seq] = _Segment()
            self._path(next_seq).touch()
            self._sync_dir()
        if head is None:  # everything on disk was acknowledged: the head is at the tail
            head = self.tail
        self.recovered_torn_bytes = cut
        # A cut tail may have held published records: never give their seqs again.
        self._next_seq = next_seq + (cut // MIN_RECORD_BYTES + 1 if cut else 0)
        return head


def _scan(path: Path) -> tuple[list[int], int, int]:
    """Record boundaries of the intact prefix (starting with 0), the last intact seq, the file size."""
    data = path.read_bytes()
    boundaries, pos, last_body = [0], 0, b""
    while pos + HEADER_BYTES <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        body = data[pos + HEADER_BYTES: pos + HEADER_BYTES + length]
        if length > MAX_RECORD_BYTES or len(body) < length or zlib.crc32(body) != crc:
            break
        pos += HEADER_BYTES + length
        boundaries.append(pos)
        last_body = body
    last_seq = -1
    if last_body:
        try:
            last_seq = int(msgpack.unpackb(last_body, raw=False)[0])
        except (ValueError, TypeError, IndexError, msgpack.UnpackException):
            raise SpoolError(f"{path}: a record with a valid CRC does not decode", path=str(path)) from None
    return boundaries, last_seq, len(data)
