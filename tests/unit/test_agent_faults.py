"""Disk faults in the spool and the agent: a full disk or an I/O error in a write, an fsync,
a truncation, a segment roll or a head write. None may raise out of record() or into the
loop, corrupt the spool, make memory disagree with the files, or give a seq twice."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import agent.core as core_module
import agent.spool as spool_module
from agent.core import Agent
from agent.errors import SpoolError
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from agent.spool import Spool
from stbcommon.localservers import free_port

NOW = 1_795_000_000_000
real_write, real_fsync = os.write, os.fsync


def settings(tmp: Path, *, fsync: str, max_bytes: int = 8 * 1024 * 1024, **batch: Any) -> AgentSettings:
    return AgentSettings(
        device=DeviceSettings(id="box-1", household_id=7, region="north", firmware="t"),
        mqtt=AgentMqttSettings(url=f"mqtt://127.0.0.1:{free_port()}", reconnect_min_s=0.05, reconnect_max_s=0.2),
        batch=BatchPolicy(**{"max_age_s": 5.0, **batch}),
        spool=SpoolSettings(dir=str(tmp / "spool"), fsync=fsync, max_bytes=max_bytes), shutdown_grace_s=0)


def oserror(code: int) -> Callable[..., Any]:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))
    return fail


def short_write(fd: int, data: bytes) -> int:
    return real_write(fd, data[:5])  # the disk filled up in the middle of the record


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "write ENOSPC": lambda m: m.setattr(os, "write", oserror(errno.ENOSPC)),
    "short write, cut fails": lambda m: (m.setattr(os, "write", short_write),
                                         m.setattr(os, "ftruncate", oserror(errno.EIO))),
    "open EMFILE": lambda m: m.setattr(os, "open", oserror(errno.EMFILE)),
    "event fsync EIO": lambda m: m.setattr(os, "fsync", oserror(errno.EIO)),
    "event fsync and cut fail": lambda m: (m.setattr(os, "fsync", oserror(errno.EIO)),
                                           m.setattr(os, "ftruncate", oserror(errno.EIO))),
    "batch fsync EIO": lambda m: m.setattr(os, "fsync", oserror(errno.EIO)),
    "head write ENOSPC": lambda m: m.setattr(Path, "write_text", oserror(errno.ENOSPC)),
    "head rename EIO": lambda m: m.setattr(os, "replace", oserror(errno.EIO)),
    "roll: create fails": lambda m: m.setattr(Path, "touch", oserror(errno.ENOSPC)),
}


def seg_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.seg"))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_disk_faults_never_raise_corrupt_or_reuse_a_seq(tmp_path: Path, fault: str) -> None:
    policy = "event" if fault.startswith("event") else "batch"
    # A 64 KiB spool of 8 KiB segments: the faulty stretch rolls segments and drops the oldest.
    agent = Agent(settings(tmp_path, fsync=policy, max_bytes=64 * 1024, max_events=10))
    accepted: list[int] = []

    def burst(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            if agent.record([5, NOW + i, 1]):  # a raise fails the test
                accepted.append(i)

    burst(0, 50)
    faulty_until = 3000 if fault.startswith("head") else 600  # head writes need drops: a full spool
    with pytest.MonkeyPatch.context() as m:
        FAULTS[fault](m)
        burst(50, faulty_until)
        assert agent.sealed <= agent.spool.synced  # nothing unsynced is ever publishable
        if fault == "batch fsync EIO":
            assert agent.spool.synced < agent.spool.tail
    burst(faulty_until, faulty_until + 100)
    assert agent.stats.io_errors > 0 and agent.stats.io_errors == agent.spool.io_errors
    assert agent.stats.accepted == len(accepted) and agent.stats.refused == faulty_until + 100 - len(accepted)
    assert seg_bytes(tmp_path / "spool") == agent.spool.disk_bytes  # memory follows the files
    agent.spool.close()

    reopened = Spool(tmp_path / "spool")
    records = reopened.read(reopened.head, reopened.tail, 10**6, 1 << 30)
    seqs = [r.seq for r in records]
    assert seqs == sorted(set(seqs))  # no seq given twice
    kept = [r.event[1] - NOW for r in records]
    assert kept == accepted[len(accepted) - len(kept):]  # the newest accepted, all of them, in order
    assert len(accepted) - len(kept) == agent.spool.dropped_events  # the rest was dropped (counted) for room
    assert faulty_until + 99 in kept
    reopened.close()


def test_event_fsync_failure_cuts_the_record_and_spends_its_seq(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, fsync="event")
    spool.append([5, NOW, 1])
    size = spool.disk_bytes
    monkeypatch.setattr(os, "fsync", oserror(errno.EIO))
    with pytest.raises(SpoolError):
        spool.append([5, NOW + 1, 1])
    assert (spool.disk_bytes, spool.pending_events, seg_bytes(tmp_path)) == (size, 1, size)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert spool.append([5, NOW + 2, 1])[0] == 2  # seq 1 reached the file once: never again
    spool.close()


def test_event_fsync_failure_that_cannot_be_cut_keeps_the_record(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, fsync="event")
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", oserror(errno.EIO))
    monkeypatch.setattr(os, "ftruncate", oserror(errno.EIO))
    assert spool.append([5, NOW, 1])[0] == 0  # kept (the caller is told it was taken)
    assert spool.synced.before == 0 and spool.tail.before == 1
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    spool.append([5, NOW + 1, 1])
    assert synced and spool.synced == spool.tail  # synced with the next event
    assert spool.io_errors == 2  # the failed fsync and the failed cut
    spool.close()


def test_failed_roll_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, fsync="batch")  # 8 KiB segments
    while spool.segment_count == 1:
        spool.append([5, NOW, 1])
    monkeypatch.setattr(spool_module, "fsync_folder", oserror(errno.EIO))
    for _ in range(1000):  # fills the tail segment, then the roll fails
        tail, next_seq = spool.tail, spool.next_seq
        try:
            spool.append([5, NOW, 1])
        except SpoolError:
            break
    else:
        pytest.fail("no roll was attempted")
    assert (spool.tail, spool.next_seq) == (tail, next_seq)  # refused, nothing changed
    assert spool.segment_count == 2 and len(list(tmp_path.glob("*.seg"))) == 2  # the new file was removed
    assert spool.io_errors == 1 and seg_bytes(tmp_path) == spool.disk_bytes
    monkeypatch.undo()
    assert spool.append([5, NOW, 1])[0] == next_seq and spool.segment_count == 3
    spool.close()


def test_a_failed_head_write_is_counted_and_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, fsync="off")
    for i in range(10):
        spool.append([5, NOW + i, 1])
    monkeypatch.setattr(Path, "write_text", oserror(errno.ENOSPC))
    spool.ack(spool.read(spool.head, spool.tail, 4, 1 << 20)[-1].end)
    spool.save_head()
    assert spool.io_errors == 1 and spool.pending_events == 6
    monkeypatch.undo()
    spool.save_head()  # tried again until it is written
    spool.close()
    assert [r.seq for r in Spool(tmp_path).read(spool.head, spool.tail, 100, 1 << 20)] == list(range(4, 10))


async def test_batch_fsync_failure_is_retried_off_the_loop_and_holds_back_publishing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "SYNC_RETRY_S", 0.01, raising=False)
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
    failing = threading.Event()
    failing.set()
    attempts: list[int] = []

    def flaky_fsync(fd: int) -> None:
        attempts.append(fd)
        if failing.is_set():
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    async with Agent(settings(tmp_path, fsync="batch", max_events=10)) as agent:
        monkeypatch.setattr(os, "fsync", flaky_fsync)
        for i in range(10):
            assert agent.record([5, NOW + i, 1])  # sealed: the fsync starts, fails
        assert not await agent.commit()
        assert agent.sealed.before == 0 and agent.stats.io_errors >= 1  # unsynced: not publishable
        failing.clear()
        tries = len(attempts)
        for _ in range(500):  # the retry timer syncs without any further seal
            if agent.sealed.before == 10:
                break
            await asyncio.sleep(0.01)
        assert agent.sealed.before == 10 and len(attempts) > tries
    assert loop_errors == []


async def test_batch_fsync_runs_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow fsync (here: one that waits for the loop to go on) does not stall the loop."""
    loop_thread = threading.get_ident()
    threads: list[int] = []
    may_finish = threading.Event()

    def slow_fsync(fd: int) -> None:
        threads.append(threading.get_ident())
        if threading.get_ident() != loop_thread:
            assert may_finish.wait(10)
        real_fsync(fd)

    async with Agent(settings(tmp_path, fsync="batch", max_events=10)) as agent:
        monkeypatch.setattr(os, "fsync", slow_fsync)
        for i in range(10):
            assert agent.record([5, NOW + i, 1])
        for _ in range(5):
            await asyncio.sleep(0)  # the loop runs on while the fsync waits
        assert agent.record([5, NOW + 10, 1]) and agent.sealed.before == 0  # not synced yet: not released
        may_finish.set()
        assert await agent.commit()
        assert agent.sealed.before == 11
    assert threads and loop_thread not in threads
