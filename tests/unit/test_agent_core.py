"""The agent's firmware-facing behaviour without a broker: validation, helpers, sealing,
fsync at seal time, cross-thread hand-off, AgentThread. The broker URL points at a closed
port, so the publisher only retries (delivery is tested against mosquitto elsewhere)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import agent.core as core_module
import agent.spool as spool_module
from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from agent.spool import Spool
from agent.thread import AgentThread
from proto.telemetry import check_event
from stbcommon.localservers import free_port

NOW = 1_795_000_000_000


def settings(tmp: Path, *, fsync: str = "off", **batch: Any) -> AgentSettings:
    return AgentSettings(
        device=DeviceSettings(id="box-1", household_id=7, region="north", firmware="t"),
        mqtt=AgentMqttSettings(url=f"mqtt://127.0.0.1:{free_port()}", reconnect_min_s=0.05, reconnect_max_s=0.2),
        batch=BatchPolicy(**{"max_age_s": 5.0, **batch}),
        spool=SpoolSettings(dir=str(tmp / "spool"), fsync=fsync), shutdown_grace_s=0)


GARBAGE: list[Any] = [
    None, 5, "x", {"kind": 1}, [], [1], [99, NOW], [1, NOW, 1, 2], [5, -1, 1], [5, NOW, 3], [5, NOW, True],
    [5, float(NOW), 1], [5, NOW, 1.0], [3, NOW, "s" * 129, "a"], [1, NOW, 2**32, 1, 1],
    [5, NOW, 1, 2**70],           # an extra trailing field msgpack cannot encode
    [5, NOW, 1, "x" * 20_000],    # extra trailing fields beyond the record bound
]


def test_invalid_events_are_refused_counted_and_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(settings(tmp_path))
    with caplog.at_level(logging.WARNING, logger="agent.core"):
        for _ in range(3):
            assert [agent.record(e) for e in GARBAGE] == [False] * len(GARBAGE)
    assert agent.stats.rejected == 3 * len(GARBAGE) and agent.stats.accepted == 0
    assert agent.spool.empty
    lines = [r for r in caplog.records if r.getMessage() == "event rejected"]
    assert len(lines) == 1  # rate-limited: one line, with a count of what it suppressed since
    assert agent.record([5, NOW, 1]) and agent.stats.accepted == 1
    agent.spool.close()


def test_helpers_build_valid_wire_events(tmp_path: Path) -> None:
    agent = Agent(settings(tmp_path), clock=lambda: NOW)
    assert agent.view(101, 90210, 1500, 2)
    assert agent.tune(12, 14, 1)
    assert agent.epg_click("guide", "open", 5)
    assert agent.vod_play("asset-1", 30, 5400)
    assert agent.power(2, ts_ms=NOW - 5)
    assert agent.rec_impression("req-1", "als-3", 90210, 4)
    assert agent.rec_click("req-1", 90210)
    assert not agent.tune(12, 2**32)  # helpers validate like record()
    records = agent.spool.read(agent.spool.head, agent.spool.tail, 100, 1 << 20)
    for r in records:
        check_event(r.event)
    assert [r.event for r in records][:2] == [[1, NOW - 1_500_000, 101, 90210, 1500, 2], [2, NOW, 12, 14, 1]]
    assert records[4].event == [5, NOW - 5, 2]
    agent.spool.close()


async def test_seals_by_count_and_fsyncs_once_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs: list[int] = []
    monkeypatch.setattr(spool_module.os, "fsync", fsyncs.append)
    async with Agent(settings(tmp_path, fsync="batch", max_events=10)) as agent:
        fsyncs.clear()
        for i in range(25):
            agent.record([5, NOW + i, 1])
        assert agent.sealed.before == 0 and fsyncs == []  # record() itself never fsyncs
        assert await agent.commit()  # waits for the fsync the seals started (in a worker thread)
        assert len(fsyncs) == 1  # two sealed batches and the open one: one fsync
        assert agent.sealed.before == 25  # everything written before the fsync is publishable
        assert agent.spool.pending_events == 25


async def test_seals_by_age(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with Agent(settings(tmp_path, max_events=1000, max_age_s=0.1)) as agent:
        recorded_at = loop.time()
        agent.record([5, NOW, 1])
        while agent.sealed.before == 0:
            assert loop.time() - recorded_at < 10
            await asyncio.sleep(0.01)
        assert loop.time() - recorded_at >= 0.1  # not before its age limit (a timer never fires early)


async def test_records_from_other_threads_are_handed_to_the_loop(tmp_path: Path) -> None:
    async with Agent(settings(tmp_path, max_events=1000)) as agent:
        results: list[bool] = []

        def firmware(k: int) -> None:
            results.extend(agent.record([5, NOW + k * 1000 + i, 1]) for i in range(500))

        threads = [threading.Thread(target=firmware, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            await asyncio.to_thread(t.join)
        await asyncio.sleep(0)  # the last hand-off callback was queued before the last join returned
        assert results == [True] * 2000
        assert agent.stats.accepted == 2000 == agent.spool.pending_events
        stamps = sorted(r.event[1] for r in agent.spool.read(agent.spool.head, agent.spool.tail, 10**6, 1 << 30))
        assert stamps == sorted(NOW + k * 1000 + i for k in range(4) for i in range(500))


async def test_a_full_hand_off_queue_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "HANDOFF_LIMIT", 10)
    async with Agent(settings(tmp_path)) as agent:
        results: list[bool] = []
        burst_done = threading.Event()

        def burst() -> None:
            results.extend(agent.record([5, NOW + i, 1]) for i in range(15))
            burst_done.set()

        threading.Thread(target=burst).start()
        assert burst_done.wait(10)  # blocks the loop for real: nothing drains the queue meanwhile
        assert results == [True] * 10 + [False] * 5
        await asyncio.sleep(0)  # the hand-off callback was queued before this task resumes
        assert agent.stats.accepted == 10 and agent.stats.refused == 5


async def test_closed_agent_refuses_and_keeps_what_it_had(tmp_path: Path) -> None:
    agent = Agent(settings(tmp_path))
    async with agent:
        for i in range(7):
            agent.record([5, NOW + i, 1])
    assert not agent.record([5, NOW, 1]) and agent.stats.refused == 1
    reopened = Spool(tmp_path / "spool")
    assert reopened.pending_events == 7
    reopened.close()


async def test_a_record_racing_aclose_is_kept_or_refused_never_lost(tmp_path: Path) -> None:
    """Forces the interleaving: another thread's record() runs right after aclose() took the
    hand-off queue for the last time (old code: before it set `closed`), and returns True."""
    agent = Agent(settings(tmp_path))
    await agent.__aenter__()
    for i in range(3):
        assert agent.record([5, NOW + i, 1])
    raced: list[bool] = []
    take = agent._take_handoff

    def take_then_race() -> None:
        take()
        if not raced:
            t = threading.Thread(target=lambda: raced.append(agent.record([5, NOW + 99, 1])))
            t.start()
            t.join()

    agent._take_handoff = take_then_race  # type: ignore[method-assign]
    await agent.aclose()
    for _ in range(3):
        await asyncio.sleep(0)  # any hand-off callback still queued runs now
    assert raced == [True] or raced == [False]
    reopened = Spool(tmp_path / "spool")
    kept = [r.event[1] - NOW for r in reopened.read(reopened.head, reopened.tail, 100, 1 << 20)]
    reopened.close()
    assert kept == ([0, 1, 2, 99] if raced == [True] else [0, 1, 2])  # accepted means kept
    assert agent.stats.accepted == len(kept) and agent.stats.refused == (raced == [False])
    assert not agent.record([5, NOW + 100, 1])  # closed: refused from any thread


def test_recorded_before_start_is_kept(tmp_path: Path) -> None:
    agent = Agent(settings(tmp_path, max_events=2))
    for i in range(3):
        assert agent.record([5, NOW + i, 1])
    assert agent.sealed.before == 2  # sealed without a loop: committed at once
    agent.spool.close()


def test_agent_thread_for_firmware_without_asyncio(tmp_path: Path) -> None:
    agent = AgentThread(settings(tmp_path))
    assert agent.power(1) and agent.record([2, NOW, 12, 14, 1])
    assert not agent.record([2, NOW])
    assert agent.stats.rejected == 1
    started = time.monotonic()
    assert not agent.close(timeout=0.3)  # no broker: not delivered within the timeout...
    assert time.monotonic() - started < 3
    assert agent.stats.accepted == 2
    reopened = Spool(tmp_path / "spool")
    assert reopened.pending_events == 2  # not delivered (no broker), kept for the next start
    reopened.close()


def test_agent_thread_reports_a_bad_spool_in_the_caller(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("a file, not a folder")
    with pytest.raises(Exception, match="spool"):
        AgentThread(settings(tmp_path))
