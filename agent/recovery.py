"""Opening a spool folder after a clean stop, a kill or a power cut: check every segment,
cut torn tails, find the head and the next seq, make what is kept durable.

- A torn or corrupt tail (length, CRC) is cut off; nothing before it is touched. It may have
  held published records (bit rot), so the next seq skips as many as it could have held.
- The next seq follows the newest record, or the newest segment's name (the seq its first
  record gets), so seqs never repeat across restarts.
- `head` is a hint; a missing or damaged one means "everything is unacknowledged".
- Records found here are published at once, so they are fsynced first (a killed agent may
  have left them in the page cache only); an fsync that fails leaves its fd to the next sync.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from agent.errors import SpoolError
from agent.records import Position, fsync_folder, scan, segment_path

MIN_RECORD_BYTES = 13         # header + msgpack [seq, [kind, ts]]: used to bound seqs in a cut tail


@dataclass
class Recovered:
    segments: dict[int, tuple[int, int]]   # segment -> (bytes, records) of its intact prefix
    head: Position
    next_seq: int
    torn_bytes: int                        # cut off torn or corrupt tails
    unsynced: list[int] = field(default_factory=list)  # fds whose fsync failed: for the next sync


def recover(folder: Path, policy: str, on_io_error: Callable[[str, OSError], None]) -> Recovered:
    """Raises OSError when the folder cannot be read or repaired at all."""
    numbers = sorted(int(p.name[:-4]) for p in folder.glob("*.seg") if p.name[:-4].isdigit())
    saved = _read_head(folder)
    head_segment = saved[0] if saved else (numbers[0] if numbers else 0)
    next_seq = numbers[-1] if numbers else 0
    cut = 0
    head: Position | None = None
    segments: dict[int, tuple[int, int]] = {}
    unsynced: list[int] = []
    for number in numbers:
        path = segment_path(folder, number)
        if number < head_segment and number != numbers[-1]:
            path.unlink()  # fully acknowledged before the crash
            continue
        boundaries, last_seq, size = _scan_segment(path)
        valid = boundaries[-1]
        if valid < size:
            cut += size - valid
            with path.open("r+b") as f:
                f.truncate(valid)
        if policy != "off":
            _fsync(path, unsynced, on_io_error)
        segments[number] = (valid, len(boundaries) - 1)
        if last_seq >= 0:
            next_seq = max(next_seq, last_seq + 1)
        if head is None and number >= head_segment:
            if number == head_segment and saved is not None:
                # The greatest record boundary not after the saved offset (a torn tail may have gone).
                index = max(i for i, b in enumerate(boundaries) if b <= saved[1])
                head = Position(number, boundaries[index], index)
            else:
                head = Position(number, 0, 0)
    if not segments:
        segments[next_seq] = (0, 0)
        segment_path(folder, next_seq).touch()
        if policy != "off":
            fsync_folder(folder)
    if head is None:  # everything on disk was acknowledged: the head is at the tail
        last = max(segments)
        head = Position(last, *segments[last])
    # A cut tail may have held published records: never give their seqs again.
    next_seq += cut // MIN_RECORD_BYTES + 1 if cut else 0
    return Recovered(segments, head, next_seq, cut, unsynced)


def _fsync(path: Path, unsynced: list[int], on_io_error: Callable[[str, OSError], None]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        unsynced.append(fd)
        on_io_error("fsync a recovered segment", exc)
        return
    os.close(fd)


def _read_head(folder: Path) -> tuple[int, int] | None:
    try:
        segment, offset = (int(x) for x in (folder / "head").read_text().split())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return (segment, offset) if segment >= 0 and offset >= 0 else None


def _scan_segment(path: Path) -> tuple[list[int], int, int]:
    """Record boundaries of the intact prefix (starting with 0), the last intact seq, the file size."""
    data = path.read_bytes()
    boundaries, bodies = scan(data)
    last_seq = -1
    if bodies:
        try:
            last_seq = int(msgpack.unpackb(bodies[-1], raw=False)[0])
        except (ValueError, TypeError, IndexError, msgpack.UnpackException):
            raise SpoolError(f"{path}: a record with a valid CRC does not decode", path=str(path)) from None
    return boundaries, last_seq, len(data)
