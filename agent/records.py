"""Framed records on disk and the fsync jobs that make them durable; shared by the spool and
the sent-journal.

A record is `[u32 length][u32 crc32(body)][body]`, little-endian. A file of records is
read back up to its first torn or corrupt record (`scan`); nothing after it is trusted.

`SyncJob` owns duplicated file descriptors, so it can fsync in a worker thread while the
agent's loop goes on appending through the originals (the spool may even close or delete
a segment meanwhile: an fd keeps its file). It proves durability up to one position.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

HEADER = struct.Struct("<II")
HEADER_BYTES = HEADER.size
MAX_RECORD_BYTES = 8 * 1024   # a valid wire event is under 3 KiB; this bounds what a read must fetch

P = TypeVar("P")


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


def segment_path(folder: Path, number: int) -> Path:
    """Segments are named by the seq of their first record."""
    return folder / f"{number:020d}.seg"


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def scan(data: bytes) -> tuple[list[int], list[bytes]]:
    """Record boundaries of the intact prefix (starting with 0) and the bodies in it."""
    boundaries, bodies, pos = [0], [], 0
    while pos + HEADER_BYTES <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        body = data[pos + HEADER_BYTES: pos + HEADER_BYTES + length]
        if length > MAX_RECORD_BYTES or len(body) < length or zlib.crc32(body) != crc:
            break
        pos += HEADER_BYTES + length
        boundaries.append(pos)
        bodies.append(body)
    return boundaries, bodies


class SyncJob(Generic[P]):
    """fsync these fds (owned: closed once synced); everything before `upto` is then durable.

    `run()` blocks and may run in any thread; on failure it raises and keeps the fds it has
    not synced yet, so the same job (or one it is merged into) can try again."""

    __slots__ = ("fds", "upto")

    def __init__(self, fds: list[int], upto: P) -> None:
        self.fds = fds
        self.upto = upto

    def run(self) -> None:
        while self.fds:
            os.fsync(self.fds[0])
            with contextlib.suppress(OSError):
                os.close(self.fds[0])
            self.fds.pop(0)

    def discard(self) -> None:
        """Close the fds without syncing (the data stays in the page cache for the OS to write)."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def fsync_folder(folder: Path) -> None:
    """Make created, renamed and deleted names in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
