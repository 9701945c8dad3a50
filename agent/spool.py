"""The agent's on-disk spool: an append-only event log, bounded, crash-safe.

Every accepted event is appended at once as one framed record
`[u32 length][u32 crc32][msgpack [seq, event]]` to the newest segment file. A record
stays until the broker has acknowledged the batch that carried it; then the head moves
past it (persisted atomically in `head`) and fully acknowledged segments are deleted.

- Crash safety: a power cut can tear only the record being appended; on open, the tail
  of each segment is checked (length and CRC) and a torn record is cut off. Nothing
  before it is touched.
- Bounded: beyond `max_bytes` the oldest records are dropped (and counted).
- Sequence numbers never repeat: `seq` holds a reserved high-water mark, raised (and
  written) before any number beyond it is used, so a restart continues above it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

_HEADER = struct.Struct("<II")
SEGMENT_BYTES = 256 * 1024
SEQ_RESERVE = 10_000
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    event: list[Any]
    end: Position  # where the next record starts
    size: int


class Spool:
    """Not thread-safe: the agent calls it from one thread (its event loop)."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 8 * 1024 * 1024, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dropped_events = 0
        self.recovered_torn_bytes = 0
        self._file: Any = None
        self._sizes: dict[int, int] = {}
        self._head = Position(0, 0)
        self._recover()

    # -- state ---------------------------------------------------------------------------

    @property
    def head(self) -> Position:
        return self._head

    @property
    def tail(self) -> Position:
        last = max(self._sizes)
        return Position(last, self._sizes[last])

    @property
    def bytes_used(self) -> int:
        return sum(self._sizes.values()) - self._head.offset

    @property
    def empty(self) -> bool:
        return self._head == self.tail

    @property
    def next_seq(self) -> int:
        return self._next_seq

    # -- writing ---------------------------------------------------------------------------

    def append(self, event: list[Any]) -> int:
        """Write one event; returns its sequence number."""
        seq = self._next_seq
        if seq >= self._reserved:
            self._reserved = seq + SEQ_RESERVE
            self._write_atomic("seq", str(self._reserved).encode())
        payload = msgpack.packb([seq, event], use_bin_type=True)
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        segment, size = self.tail.segment, self.tail.offset
        if size and size + len(record) > SEGMENT_BYTES:
            segment, size = self._roll()
        f = self._open_tail(segment)
        f.write(record)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        self._sizes[segment] = size + len(record)
        self._next_seq = seq + 1
        if self.bytes_used > self.max_bytes:
            self._drop_oldest()
        return seq

    def read(self, start: Position, max_records: int, max_bytes: int) -> list[Record]:
        """Records from `start`, in order, up to the limits (at least one if any)."""
        out: list[Record] = []
        total = 0
        for record in self._records_from(start):
            if out and (len(out) >= max_records or total + record.size > max_bytes):
                break
            out.append(record)
            total += record.size
        return out

    def ack(self, end: Position) -> None:
        """Everything before `end` is delivered: move the head, delete finished segments."""
        if (end.segment, end.offset) <= (self._head.segment, self._head.offset):
            return  # already dropped or acknowledged
        self._head = end
        self._write_atomic("head", f"{end.segment} {end.offset}".encode())
        for segment in sorted(self._sizes):
            if segment < end.segment:
                self._delete_segment(segment)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- internals ---------------------------------------------------------------------------

    def _records_from(self, start: Position) -> Iterator[Record]:
        """Intact records from `start` on, reading segments in chunks (a batch is small)."""
        for segment in sorted(s for s in self._sizes if s >= start.segment):
            offset = start.offset if segment == start.segment else 0
            end = self._sizes[segment]
            with self._path(segment).open("rb") as f:
                f.seek(offset)
                buf, buf_start = b"", offset
                while offset < end:
                    rel = offset - buf_start
                    if len(buf) < rel + _HEADER.size:
                        buf += f.read(min(_READ_CHUNK, end - buf_start - len(buf)))
                    length, _crc = _HEADER.unpack_from(buf, rel)
                    stop = rel + _HEADER.size + length
                    if len(buf) < stop:
                        buf += f.read(max(_READ_CHUNK, stop - len(buf)))
                    seq, event = msgpack.unpackb(buf[rel + _HEADER.size: stop], raw=False)
                    offset = buf_start + stop
                    if stop > _READ_CHUNK:  # drop what was consumed
                        buf, buf_start = buf[stop:], offset
                    yield Record(seq, event, Position(segment, offset), _HEADER.size + length)

    def _drop_oldest(self) -> None:
        """Advance the head past whole records until the spool fits again."""
        head, dropped = self._head, 0
        for record in self._records_from(head):
            if self.bytes_used_from(head) <= self.max_bytes:
                break
            head, dropped = record.end, dropped + 1
        self.dropped_events += dropped
        self.ack(head)

    def bytes_used_from(self, pos: Position) -> int:
        return sum(size for seg, size in self._sizes.items() if seg >= pos.segment) - pos.offset

    def _roll(self) -> tuple[int, int]:
        segment = self.tail.segment + 1
        self.close()
        self._sizes[segment] = 0
        self._path(segment).touch()
        return segment, 0

    def _open_tail(self, segment: int) -> Any:
        if self._file is None or self._file.name != str(self._path(segment)):
            self.close()
            self._file = self._path(segment).open("ab")
        return self._file

    def _delete_segment(self, segment: int) -> None:
        if segment == self.tail.segment:
            return
        if self._file is not None and self._file.name == str(self._path(segment)):
            self.close()
        with contextlib.suppress(FileNotFoundError):
            self._path(segment).unlink()
        del self._sizes[segment]

    def _path(self, segment: int) -> Path:
        return self.folder / f"{segment:012d}.seg"

    def _write_atomic(self, name: str, data: bytes) -> None:
        tmp = self.folder / f".{name}.tmp"
        with tmp.open("wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)

    def _read_small(self, name: str) -> str | None:
        try:
            return (self.folder / name).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def _recover(self) -> None:
        segments = sorted(int(p.stem) for p in self.folder.glob("*.seg") if p.stem.isdigit())
        head_text = self._read_small("head")
        try:
            seg, off = (int(x) for x in (head_text or "").split())
            self._head = Position(seg, off)
        except ValueError:
            self._head = Position(segments[0] if segments else 0, 0)
        max_seq = -1
        for segment in segments:
            if segment < self._head.segment:
                self._path(segment).unlink()
                continue
            valid, last_seq = _valid_prefix(self._path(segment))
            size = self._path(segment).stat().st_size
            if valid < size:  # a torn or corrupt tail: cut it off
                self.recovered_torn_bytes += size - valid
                with self._path(segment).open("r+b") as f:
                    f.truncate(valid)
            self._sizes[segment] = valid
            max_seq = max(max_seq, last_seq)
        if not self._sizes:
            self._sizes[self._head.segment] = 0
            self._path(self._head.segment).touch()
            self._head = Position(self._head.segment, 0)
        if self._head.segment not in self._sizes or self._head.offset > self._sizes[self._head.segment]:
            first = min(self._sizes)
            self._head = Position(first, 0)
        reserved = int(self._read_small("seq") or 0)
        self._next_seq = max(reserved, max_seq + 1)
        self._reserved = self._next_seq  # reserve a fresh range before the first append


def _valid_prefix(path: Path) -> tuple[int, int]:
    """Length of the segment's intact records, and the last intact record's seq."""
    data = path.read_bytes()
    pos, last_seq = 0, -1
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        body = data[pos + _HEADER.size: pos + _HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        try:
            last_seq = int(msgpack.unpackb(body, raw=False)[0])
        except Exception:
            break
        pos += _HEADER.size + length
    return pos, last_seq
