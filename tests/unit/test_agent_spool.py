"""The agent's spool: crash safety, bounds, sequence numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.spool import Spool


def events(n: int, start: int = 0) -> list[list[int]]:
    return [[5, 1_795_000_000_000 + i, 1] for i in range(start, start + n)]


def all_records(spool: Spool) -> list[tuple[int, list[int]]]:
    return [(r.seq, r.event) for r in spool.read(spool.head, 10**9, 1 << 40)]


def test_append_read_ack_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    seqs = [spool.append(e) for e in events(5000)]
    assert seqs == list(range(5000))
    batch = spool.read(spool.head, 200, 1 << 20)
    assert [r.seq for r in batch] == list(range(200))
    spool.ack(batch[-1].end)
    spool.close()
    reopened = Spool(tmp_path, fsync=False)
    assert [s for s, _ in all_records(reopened)] == list(range(200, 5000))
    reopened.ack(reopened.tail)
    assert reopened.empty and reopened.bytes_used == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # acknowledged segments are deleted
    reopened.close()


def test_power_cut_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "ref", fsync=False)
    for e in events(50):
        spool.append(e)
    spool.close()
    segment = next((tmp_path / "ref").glob("*.seg"))
    data = segment.read_bytes()
    last_record_start = len(data) - (len(data) // 50)
    for cut in range(last_record_start, len(data) + 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / segment.name).write_bytes(data[:cut])
        (folder / "seq").write_bytes((tmp_path / "ref" / "seq").read_bytes())  # state files survive too
        recovered = Spool(folder, fsync=False)
        got = all_records(recovered)
        assert [s for s, _ in got] == list(range(49 if cut < len(data) else 50)), cut
        assert recovered.append([5, 1, 1]) >= 50  # a torn record's seq is never reused by a later event
        recovered.close()


def test_corrupted_tail_is_cut_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    for e in events(10):
        spool.append(e)
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last record
    segment.write_bytes(bytes(data))
    recovered = Spool(tmp_path, fsync=False)
    assert [s for s, _ in all_records(recovered)] == list(range(9))
    assert recovered.recovered_torn_bytes > 0
    recovered.close()


def test_full_spool_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync=False)
    for e in events(20_000):
        spool.append(e)
    kept = all_records(spool)
    assert spool.bytes_used <= 64 * 1024
    assert spool.dropped_events == 20_000 - len(kept) > 0
    assert [s for s, _ in kept] == list(range(20_000 - len(kept), 20_000))  # the newest survive
    spool.close()


def test_sequence_numbers_survive_restarts_even_when_everything_was_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    last = [spool.append(e) for e in events(10)][-1]
    spool.ack(spool.tail)
    spool.close()
    again = Spool(tmp_path, fsync=False)
    assert again.append([5, 1, 1]) > last
    again.close()


@pytest.mark.parametrize("garbage", [b"", b"not a number", b"3 x"])
def test_damaged_state_files_do_not_lose_records(tmp_path: Path, garbage: bytes) -> None:
    spool = Spool(tmp_path, fsync=False)
    for e in events(10):
        spool.append(e)
    spool.close()
    (tmp_path / "head").write_bytes(garbage)
    reopened = Spool(tmp_path, fsync=False)
    assert len(all_records(reopened)) == 10
    reopened.close()
