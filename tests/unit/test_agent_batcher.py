"""Batching: when a batch is sealed, how the spool is cut into wire payloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.batcher import Batcher, next_batch
from agent.settings import BatchPolicy
from agent.spool import Spool
from proto.telemetry import MAX_PAYLOAD_BYTES, check_event, decode_envelope, encode_batch, topic_for

TS = 1_795_000_000_000


def test_seals_by_count() -> None:
    b = Batcher(BatchPolicy(max_events=3, max_bytes=1 << 16, max_age_s=5))
    assert [b.add(20, 0.0) for _ in range(3)] == [False, False, True]
    b.reset()
    assert b.events == 0 and b.deadline is None


def test_seals_by_bytes() -> None:
    b = Batcher(BatchPolicy(max_events=1000, max_bytes=1024, max_age_s=5))
    assert not b.add(1000, 0.0)
    assert b.add(30, 0.0)


def test_age_deadline_runs_from_the_oldest_unsealed_event() -> None:
    b = Batcher(BatchPolicy(max_events=1000, max_bytes=1 << 16, max_age_s=2.5))
    assert b.deadline is None
    b.add(20, 10.0)
    b.add(20, 11.0)
    assert b.deadline == 12.5
    b.reset()
    b.add(20, 20.0)
    assert b.deadline == 22.5


def fill(spool: Spool, n: int) -> None:
    for i in range(n):
        spool.append([5, TS + i, 1])


def test_next_batch_respects_count_and_stop(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="off")
    fill(spool, 50)
    policy = BatchPolicy(max_events=20, max_bytes=1 << 16, max_age_s=1)
    first = next_batch(spool, spool.head, spool.tail, policy)
    assert [r.seq for r in first] == list(range(20))
    stop = spool.read(spool.head, spool.tail, 30, 1 << 20)[-1].end
    second = next_batch(spool, first[-1].end, stop, policy)
    assert [r.seq for r in second] == list(range(20, 30))  # not past what is sealed
    spool.close()


def test_next_batch_ends_at_a_seq_gap(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="off")
    fill(spool, 5)
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[:-3])  # torn: the next seqs skip what it could have held
    spool = Spool(tmp_path, fsync="off")
    fill(spool, 3)
    policy = BatchPolicy(max_events=100, max_bytes=1 << 16, max_age_s=1)
    first = next_batch(spool, spool.head, spool.tail, policy)
    assert [r.seq for r in first] == [0, 1, 2, 3]
    second = next_batch(spool, first[-1].end, spool.tail, policy)
    assert len(second) == 3 and second[0].seq > 4 and [r.seq - second[0].seq for r in second] == [0, 1, 2]
    spool.close()


@pytest.mark.parametrize("max_events", [1, 200, 1000])
def test_largest_batches_fit_the_wire_limits(tmp_path: Path, max_events: int) -> None:
    """Even with the longest legal strings, a batch encodes within 256 KiB and 1000 events."""
    spool = Spool(tmp_path, fsync="off")
    long = "é" * 128
    for i in range(1500):
        event = [6, TS + i, long, long, 2**64 - 1, 65535]
        check_event(event)
        spool.append(event)
    policy = BatchPolicy(max_events=max_events, max_bytes=MAX_PAYLOAD_BYTES // 2, max_age_s=1)
    cursor, seen = spool.head, 0
    while cursor < spool.tail:
        records = next_batch(spool, cursor, spool.tail, policy)
        payload = encode_batch(device_id="d" * 64, household_id=2**64 - 1, firmware="f" * 64,
                               seq0=records[0].seq, sent_ms=TS, events=[r.event for r in records])
        envelope = decode_envelope(payload, topic_for("north", "d" * 64))
        assert envelope.seq0 == seen and len(envelope.events) == len(records) <= max_events
        assert len(payload) <= MAX_PAYLOAD_BYTES // 2 + 1024
        seen += len(records)
        cursor = records[-1].end
    assert seen == 1500
    spool.close()
