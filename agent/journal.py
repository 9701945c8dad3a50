"""The sent-journal: how each published batch was cut, so that a resend is byte-identical.

A batch is cut from the spool and stamped (household, firmware, `sent`) when it is first
published. If its PUBACK never comes, it is sent again: after a reconnect, or after a
restart of the agent. A fresh cut at that point could differ (another batch size, a new
`sent`, a household or firmware changed by the restart), and the collector would store a
second, different copy of the same (device, seq) range: the events table deduplicates
only identical copies under one key (docs/SCHEMA.md). So the first cut is kept:

    sent       one framed record (agent/records.py) per published batch, msgpack
               [seq0, events, sent_ms, household_id, firmware], appended with one write()
               before the PUBLISH goes out

and a resend from the spool head reuses it exactly (same records, same header), so the
payload is the same bytes. `sent` still says when the batch *first* left, which is what
the collector's clock correction of a backlog needs (the batch's events are that old).

Entries are forgotten once the head has passed them; when none is left the file is
truncated, and when it grows beyond COMPACT_BYTES it is rewritten with the live ones.
It is not fsynced on its own: a killed agent keeps it (one write() before the PUBLISH),
and the spool's next fsync takes it along, so a power cut can lose at most the entries of
the last seconds; a batch whose entry was lost is cut afresh (same seqs and events, the
new header). A failed write is counted and the batch is published anyway: a full disk
must not stop the spool from draining.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import msgpack

from agent.records import frame, scan

COMPACT_BYTES = 64 * 1024


class Cut(NamedTuple):
    """One published batch: `events` consecutive seqs from `seq0`, and its envelope's header."""

    seq0: int
    events: int      # how many (consecutive seqs from seq0)
    sent_ms: int
    household_id: int
    firmware: str


class SentJournal:
    """Not thread-safe: used from the agent's loop."""

    def __init__(self, folder: Path, on_io_error: Callable[[str, OSError], None]) -> None:
        self._folder = folder
        self._path = folder / "sent"
        self._on_io_error = on_io_error
        self._cuts: dict[int, Cut] = {}
        self._fd: int | None = None
        self._size = 0             # bytes of whole entries in the file
        self._dirty = False        # written since the spool's last fsync
        self._stale = False        # the file does not match memory: rewrite it at the next add
        self._load()

    def __len__(self) -> int:
        return len(self._cuts)

    def get(self, seq0: int) -> Cut | None:
        return self._cuts.get(seq0)

    def add(self, cut: Cut) -> None:
        """Journal a batch about to be published (replaces an entry with the same seq0)."""
        self._cuts[cut.seq0] = cut
        if self._stale or self._size > COMPACT_BYTES:
            self._rewrite()
            return
        data = _entry(cut)
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            written = os.write(self._fd, data)
        except OSError as exc:
            self._on_io_error("write the sent-journal", exc)
            return
        if written != len(data):
            self._on_io_error("write the sent-journal", OSError(f"short write: {written} of {len(data)} bytes"))
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._stale = True  # a torn entry would hide every later one: replace the file
            return
        self._size += written
        self._dirty = True

    def forget_before(self, seq: int) -> None:
        """Drop the entries of batches wholly before `seq` (acknowledged or dropped)."""
        stale = [k for k, cut in self._cuts.items() if cut.seq0 + cut.events <= seq]
        if not stale:
            return
        for k in stale:
            del self._cuts[k]
        if self._cuts:
            return  # rewritten by add() once it is large; stale entries never match a later seq
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
            elif self._size:
                os.truncate(self._path, 0)
        except OSError as exc:
            self._on_io_error("truncate the sent-journal", exc)
            return
        self._size, self._stale = 0, False

    def take_unsynced(self) -> list[int]:
        """An fd for the spool's next fsync, if entries were written since the last one."""
        if not self._dirty:
            return []
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError as exc:
            self._on_io_error("open the sent-journal for fsync", exc)
            return []
        self._dirty = False
        return [fd]

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _load(self) -> None:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return
        boundaries, bodies = scan(data)
        for i, body in enumerate(bodies):
            try:
                seq0, events, sent_ms, household_id, firmware = msgpack.unpackb(body, raw=False)
                cut = Cut(int(seq0), int(events), int(sent_ms), int(household_id), str(firmware))
            except (ValueError, TypeError, msgpack.UnpackException):
                boundaries = boundaries[: i + 1]
                break
            self._cuts[cut.seq0] = cut
        self._size = boundaries[-1]
        if self._size < len(data):  # a torn entry at the end: later entries must not follow it
            try:
                os.truncate(self._path, self._size)
            except OSError as exc:
                self._on_io_error("truncate the sent-journal", exc)
                self._stale = True

    def _rewrite(self) -> None:
        """Replace the file by the live entries (write a temporary file, rename it over)."""
        tmp = self._folder / ".sent.tmp"
        data = b"".join(_entry(cut) for cut in self._cuts.values())
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self._path)
        except OSError as exc:
            self._on_io_error("rewrite the sent-journal", exc)
            self._stale = True
            return
        self.close()  # the old fd writes to the replaced file
        self._size, self._stale, self._dirty = len(data), False, True


def _entry(cut: Cut) -> bytes:
    return frame(msgpack.packb(list(cut), use_bin_type=True))
