"""The agent's spool: framing, crash recovery, bounds, sequence numbers, acks and compaction."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgpack
import pytest

import agent.spool as spool_module
from agent.errors import RecordTooLarge, SpoolError
from agent.spool import HEADER_BYTES, Position, Spool

TS = 1_795_000_000_000


def events(n: int, start: int = 0) -> list[list[int]]:
    return [[5, TS + i, 1] for i in range(start, start + n)]


def everything(spool: Spool) -> list[tuple[int, list[int]]]:
    return [(r.seq, r.event) for r in spool.read(spool.head, spool.tail, 10**9, 1 << 40)]


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.seg"))


def test_record_framing_is_length_crc_msgpack(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="off")
    body = msgpack.packb([0, [1, TS, 101, 90210, 1500, 0]])
    assert spool.append([1, TS, 101, 90210, 1500, 0]) == (0, HEADER_BYTES + len(body))
    assert spool.append([3, TS, "guide", "open"])[0] == 1
    spool.close()
    data = segments(tmp_path)[0].read_bytes()
    records, pos = [], 0
    while pos < len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        body = data[pos + 8: pos + 8 + length]
        assert zlib.crc32(body) == crc
        records.append(msgpack.unpackb(body))
        pos += 8 + length
    assert records == [[0, [1, TS, 101, 90210, 1500, 0]], [1, [3, TS, "guide", "open"]]]
    assert segments(tmp_path)[0].name == "00000000000000000000.seg"  # named by its first seq


def test_append_read_ack_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=256 * 1024, fsync="off")  # 32 KiB segments
    assert [spool.append(e)[0] for e in events(5000)] == list(range(5000))
    assert spool.pending_events == 5000 and len(segments(tmp_path)) > 1
    batch = spool.read(spool.head, spool.tail, 200, 1 << 20)
    assert [r.seq for r in batch] == list(range(200))
    spool.ack(batch[-1].end)
    assert spool.pending_events == 4800
    spool.close()
    reopened = Spool(tmp_path, fsync="off")
    assert [s for s, _ in everything(reopened)] == list(range(200, 5000))
    assert reopened.pending_events == 4800
    reopened.ack(reopened.tail)
    assert reopened.empty and reopened.bytes_used == 0 and reopened.pending_events == 0
    assert len(segments(tmp_path)) == 1  # acknowledged segments are deleted; the tail stays
    reopened.close()


def test_read_respects_stop_and_limits_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync="off")  # 8 KiB segments
    for e in events(1000):
        spool.append(e)
    assert spool.segment_count > 2
    stop = spool.read(spool.head, spool.tail, 700, 1 << 20)[-1].end
    got = spool.read(spool.head, stop, 10_000, 1 << 20)
    assert [r.seq for r in got] == list(range(700))  # spans segments, stops at `stop`
    by_bytes = spool.read(spool.head, spool.tail, 10_000, 1000)
    assert sum(r.size for r in by_bytes) <= 1000 < sum(r.size for r in by_bytes) + by_bytes[0].size
    later = spool.read(by_bytes[-1].end, spool.tail, 5, 1 << 20)
    assert [r.seq for r in later] == list(range(len(by_bytes), len(by_bytes) + 5))
    spool.close()


def test_power_cut_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    spool = Spool(ref, fsync="off")
    sizes = [spool.append(e)[1] for e in events(50)]
    spool.close()
    segment = segments(ref)[0]
    data = segment.read_bytes()
    last_start = len(data) - sizes[-1]
    for cut in range(last_start, len(data) + 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        (folder / segment.name).write_bytes(data[:cut])
        (folder / "head").write_bytes((ref / "head").read_bytes())
        recovered = Spool(folder, fsync="off")
        kept = 49 if cut < len(data) else 50
        assert [s for s, _ in everything(recovered)] == list(range(kept)), cut
        assert recovered.recovered_torn_bytes == (cut - last_start if cut < len(data) else 0)
        assert (folder / segment.name).stat().st_size == last_start if kept == 49 else len(data)
        seq = recovered.append([5, 1, 1])[0]
        if last_start < cut < len(data):
            assert seq >= 50  # a partly written record's seq is never given again
        else:
            assert seq == kept  # nothing of it is left (it was never synced, so never published)
        recovered.close()


def test_corrupt_record_cuts_the_rest_and_skips_its_seqs(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="off")
    sizes = [spool.append(e)[1] for e in events(10)]
    spool.close()
    segment = segments(tmp_path)[0]
    data = bytearray(segment.read_bytes())
    data[sum(sizes[:6]) + HEADER_BYTES + 2] ^= 0xFF  # bit rot inside record 6
    segment.write_bytes(bytes(data))
    recovered = Spool(tmp_path, fsync="off")
    assert [s for s, _ in everything(recovered)] == list(range(6))
    assert recovered.recovered_torn_bytes == sum(sizes[6:])
    assert recovered.append([5, 1, 1])[0] >= 10  # records 6..9 may have been published
    recovered.close()


def test_full_spool_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync="off")
    for e in events(20_000):
        spool.append(e)
    kept = everything(spool)
    assert spool.disk_bytes <= 64 * 1024
    assert sum(p.stat().st_size for p in segments(tmp_path)) == spool.disk_bytes
    assert spool.dropped_events == 20_000 - len(kept) > 0
    assert [s for s, _ in kept] == list(range(20_000 - len(kept), 20_000))  # the newest survive
    assert len(kept) > 0.8 * 64 * 1024 / kept_size(spool)  # dropping is by segment: at most 1/8 unused
    spool.close()


def kept_size(spool: Spool) -> int:
    return spool.read(spool.head, spool.tail, 1, 1 << 20)[0].size


def test_drop_counts_only_unacknowledged_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync="off")
    for e in events(300):
        spool.append(e)
    spool.ack(spool.read(spool.head, spool.tail, 100, 1 << 20)[-1].end)  # 100 of the first segment's delivered
    oldest_count = spool.read(Position(spool.head.segment, 0, 0), spool.tail, 10**6, spool.segment_bytes)
    in_first = sum(1 for r in oldest_count if r.end.segment == spool.head.segment)
    for e in events(5000, 300):
        spool.append(e)
    assert in_first > 100  # the oldest segment was dropped partly acknowledged
    assert spool.dropped_events == 5300 - 100 - spool.pending_events  # acknowledged events are not "dropped"
    spool.close()


def test_seq_continues_after_reopen_kill_and_full_compaction(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync="off")
    for e in events(2000):
        spool.append(e)
    spool.ack(spool.tail)  # everything delivered: only the (possibly empty) tail segment is left
    spool.close()
    again = Spool(tmp_path, fsync="off")
    assert again.append([5, 1, 1])[0] == 2000
    # A killed process: no close(), the next process opens the same folder.
    killed = Spool(tmp_path, fsync="off")
    assert killed.next_seq == 2001
    assert [s for s, _ in everything(killed)] == [2000]
    killed.close()
    again.close()


def test_seq_continues_when_the_tail_segment_is_empty(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync="off")
    n = 0
    while spool.segment_count == 1:
        spool.append([5, TS, 1])
        n += 1
    spool.ack(spool.read(spool.head, spool.tail, n, 1 << 30)[-2].end)  # all but the record in the new segment
    spool.close()
    tail = segments(tmp_path)[-1]
    tail.write_bytes(b"")  # the new segment's only record was never written back (power cut, fsync off)
    reopened = Spool(tmp_path, fsync="off")
    assert reopened.next_seq == n - 1  # from the tail's name, although no record in it survived
    reopened.close()


@pytest.mark.parametrize("garbage", [b"", b"not a number", b"3 x", b"-1 0", b"99999999999999 5"])
def test_damaged_or_stale_head_never_loses_records(tmp_path: Path, garbage: bytes) -> None:
    spool = Spool(tmp_path, fsync="off")
    for e in events(10):
        spool.append(e)
    spool.close()
    (tmp_path / "head").write_bytes(garbage)
    reopened = Spool(tmp_path, fsync="off")
    expected = 0 if garbage.startswith(b"9999") else 10  # a head beyond everything: all acknowledged
    assert len(everything(reopened)) == expected
    assert reopened.next_seq == 10
    reopened.close()


def test_head_inside_a_record_snaps_back_to_its_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="off")
    sizes = [spool.append(e)[1] for e in events(10)]
    spool.close()
    name = int(segments(tmp_path)[0].name[:-4])
    (tmp_path / "head").write_text(f"{name} {sum(sizes[:4]) + 3}")
    reopened = Spool(tmp_path, fsync="off")
    assert [s for s, _ in everything(reopened)] == list(range(4, 10))  # resent rather than lost
    reopened.close()


def test_oversize_and_unencodable_events_are_refused_before_writing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="off")
    with pytest.raises(RecordTooLarge):
        spool.append([5, TS, 1, "x" * 10_000])  # extra trailing fields are legal but bounded
    with pytest.raises(OverflowError):
        spool.append([5, TS, 1, 2**70])
    assert spool.append([5, TS, 1]) == (0, HEADER_BYTES + len(msgpack.packb([0, [5, TS, 1]])))
    spool.close()


def test_failed_write_leaves_no_partial_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, fsync="off")
    spool.append([5, TS, 1])
    real_write = os.write
    monkeypatch.setattr(spool_module.os, "write", lambda fd, data: real_write(fd, data[:5]))  # disk full
    with pytest.raises(SpoolError):
        spool.append([5, TS + 1, 1])
    monkeypatch.setattr(spool_module.os, "write", real_write)
    spool.append([5, TS + 2, 1])
    assert spool.io_errors == 1
    spool.close()
    reopened = Spool(tmp_path, fsync="off")
    # Part of seq 1 reached the file: that seq is never given again (a gap ends a batch).
    assert everything(reopened) == [(0, [5, TS, 1]), (2, [5, TS + 2, 1])]
    assert reopened.recovered_torn_bytes == 0
    reopened.close()


@pytest.mark.parametrize(("policy", "appends", "syncs", "expected"),
                         [("event", 5, 0, 5), ("batch", 5, 1, 1), ("off", 5, 1, 0), (True, 5, 1, 1),
                          (False, 5, 1, 0)])
def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str | bool, appends: int,
                      syncs: int, expected: int) -> None:
    spool = Spool(tmp_path, fsync=policy)
    calls: list[int] = []
    monkeypatch.setattr(spool_module.os, "fsync", calls.append)
    for e in events(appends):
        spool.append(e)
    for _ in range(syncs):
        spool.sync()
    spool.sync()  # nothing new: no second fsync
    assert len(calls) == expected
    spool.close()


def test_unusable_folder_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError):
        Spool(tmp_path / "file" / "spool")
