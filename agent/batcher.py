"""Batching: when events become a batch (count, bytes, age) and how the spool is cut into payloads.

Events are spooled one by one as they are accepted; a batch is a *sealed* range of the
spool. Sealing is what the batch policy decides (and, under the "batch" fsync policy, when
the spool is fsynced); publishing later cuts the sealed range into wire payloads of at most
`max_events` events and `max_bytes` spooled bytes, each a run of consecutive seqs. The two
are separate so that a backlog spooled during an outage goes out in full-sized batches.
"""

from __future__ import annotations

import itertools

from agent.settings import BatchPolicy
from agent.spool import Position, Record, Spool


class Batcher:
    """Counts the unsealed events; `add` says when they must be sealed now, `deadline` when at the latest."""

    __slots__ = ("_max_age", "_max_bytes", "_max_events", "bytes", "events", "opened_at")

    def __init__(self, policy: BatchPolicy) -> None:
        self._max_events = policy.max_events
        self._max_bytes = policy.max_bytes
        self._max_age = policy.max_age_s
        self.events = 0
        self.bytes = 0
        self.opened_at = 0.0

    def add(self, size: int, now: float) -> bool:
        """Count one spooled event of `size` bytes; True when the batch is full."""
        if self.events == 0:
            self.opened_at = now
        self.events += 1
        self.bytes += size
        return self.events >= self._max_events or self.bytes >= self._max_bytes

    @property
    def deadline(self) -> float | None:
        """When the oldest unsealed event reaches the age limit (None when there is none)."""
        return self.opened_at + self._max_age if self.events else None

    def reset(self) -> None:
        self.events = 0
        self.bytes = 0


def next_batch(spool: Spool, start: Position, stop: Position, policy: BatchPolicy) -> list[Record]:
    """The next payload's records from `start` (before `stop`): within the limits, seqs consecutive.

    A batch carries seq0 and implies seq0 + i for event i, so a gap in the spool's seqs
    (a tail cut after a crash) ends a batch."""
    records = spool.read(start, stop, policy.max_events, policy.max_bytes)
    for i in range(1, len(records)):
        if records[i].seq != records[i - 1].seq + 1:
            return records[:i]
    return records


def consecutive(records: list[Record]) -> bool:
    return all(b.seq == a.seq + 1 for a, b in itertools.pairwise(records))
