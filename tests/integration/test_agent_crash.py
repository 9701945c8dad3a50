"""Crashes and limits: SIGKILL mid-stream, a power cut that tears the spool, a full spool."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.core import Agent
from agent.settings import AgentMqttSettings
from agent.spool import Spool
from proto.telemetry import decode_envelope, topic_for
from tests.integration.test_agent_delivery import (
    NOW,
    Inbox,
    agent_settings,
    check_exactly_once_in_order,
    check_in_order_resends_identical,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inbox(mosquitto: Any) -> Any:
    box = Inbox(mosquitto.port)
    yield box
    box.close()


class AgentProcess:
    """`python -m agent` fed over its UNIX socket, as C firmware would feed it."""

    def __init__(self, url: str, tmp: Path, device: str = "box-9", *extra: str) -> None:
        self.sock = tmp / f"{device}.sock"
        self.log = tmp / f"{device}.log"
        self.cmd = [sys.executable, "-m", "agent", "--mqtt", url, "--device-id", device, "--household-id", "9",
                    "--region", "north", "--spool", str(tmp / f"{device}-spool"), "--socket", str(self.sock),
                    "--log-format", "text", *extra]
        self.env = {**os.environ, "STB_AGENT__BATCH__MAX_AGE_S": "0.1", "STB_AGENT__MQTT__RECONNECT_MIN_S": "0.05",
                    "STB_AGENT__MQTT__RECONNECT_MAX_S": "0.3", "STB_AGENT__SHUTDOWN_GRACE_S": "5"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> None:
        self.sock.unlink(missing_ok=True)  # a killed agent leaves its socket file behind
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env={**self.env, **env}, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.sock.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.02)

    def send(self, datagrams: list[bytes], pause_every: int = 100) -> None:
        """Send until done or until the agent is gone (ECONNREFUSED once it was killed)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for i, data in enumerate(datagrams):
                try:
                    s.sendto(data, str(self.sock))
                except OSError:
                    return
                if i % pause_every == pause_every - 1:
                    time.sleep(0.01)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(20)


def power(lo: int, hi: int) -> list[bytes]:
    return [msgpack.packb([5, NOW + i, 1]) for i in range(lo, hi)]


def test_sigkill_mid_stream_loses_nothing_accepted_and_reuses_no_seq(mosquitto: Any, inbox: Inbox,
                                                                      tmp_path: Path) -> None:
    agent = AgentProcess(mosquitto.url, tmp_path)
    agent.start(STB_AGENT__BATCH__MAX_AGE_S="2")  # full batches go out, the last one waits unsealed
    inbox.wait_for(lambda i: i.status("box-9") == ["online"], 10)
    sender = threading.Thread(target=agent.send, args=(power(0, 3000),), kwargs={"pause_every": 37})
    sender.start()
    time.sleep(0.3)
    agent.signal(signal.SIGKILL)  # mid-stream: batches published, in flight, sealed, unsealed
    sender.join()
    # What the agent had accepted: delivered already, or in its spool (datagrams still in the
    # socket buffer died with the process: they were never accepted).
    delivered = {d.event[1] - NOW for d in inbox.delivered()}
    spool = Spool(tmp_path / "box-9-spool", fsync="off")
    spooled = {r.event[1] - NOW for r in spool.read(spool.head, spool.tail, 10**6, 1 << 30)}
    spool.close()
    accepted = delivered | spooled
    assert delivered and spooled and len(accepted) < 3000, "the kill should land mid-stream"
    inbox.wait_for(lambda i: i.status("box-9") == ["online", "offline"], 10)  # the last will
    agent.start()
    agent.send(power(3000, 3200))
    want = accepted | set(range(3000, 3200))
    inbox.wait_for(lambda i: want <= {d.event[1] - NOW for d in i.delivered()})
    assert agent.signal(signal.SIGTERM) == 0
    # Seqs contiguous across the kill (none lost, none reused); what was in flight at the kill
    # is resent after the restart, in the same bytes (its cut and `sent` are journalled).
    order = check_in_order_resends_identical(inbox, AgentMqttSettings().inflight)
    assert order == {"box-9": list(range(len(want)))}
    assert inbox.status("box-9")[-2:] == ["online", "offline"]


async def test_power_cut_tears_the_spool_rest_is_delivered(mosquitto: Any, inbox: Inbox, tmp_path: Path) -> None:
    await asyncio.to_thread(mosquitto.stop)
    spool_dir = tmp_path / "spool"
    async with Agent(agent_settings(mosquitto.url, spool_dir, fsync="batch")) as agent:
        for i in range(100):
            agent.record([5, NOW + i, 1])
    segment = next(spool_dir.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[:-7])  # the power went in the middle of the last record
    await asyncio.to_thread(mosquitto.start)
    async with Agent(agent_settings(mosquitto.url, spool_dir)) as agent:
        assert agent.spool.recovered_torn_bytes > 0
        assert agent.record([5, NOW + 1000, 1])
        assert await agent.drain(10)
    got = await asyncio.to_thread(inbox.wait_for_unique, 100)
    assert [d.event[1] - NOW for d in got] == [*range(99), 1000]
    seqs = [d.seq for d in got]
    assert seqs[:99] == list(range(99)) and seqs[99] > 99  # the torn record's seq is never given again


async def test_full_spool_drops_the_oldest_counts_and_keeps_the_newest(mosquitto: Any, inbox: Inbox, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    await asyncio.to_thread(mosquitto.stop)
    cfg = agent_settings(mosquitto.url, tmp_path / "spool", max_bytes=64 * 1024, max_events=500)
    with caplog.at_level(logging.WARNING, logger="agent.core"):
        async with Agent(cfg) as agent:
            for i in range(10_000):
                assert agent.record([5, NOW + i, 1])  # accepted: the spool makes room by dropping the oldest
            dropped = agent.spool.dropped_events
            assert 0 < dropped < 10_000 and agent.spool.pending_events == 10_000 - dropped
            assert agent.spool.disk_bytes <= 64 * 1024
            await asyncio.to_thread(mosquitto.start)
            assert await agent.drain(20)
            assert agent.stats.events_published == 10_000 - dropped
    assert [r for r in caplog.records if r.getMessage() == "spool full: oldest events dropped"]
    got = await asyncio.to_thread(inbox.wait_for_unique, 10_000 - dropped)
    assert check_exactly_once_in_order(got) == {"box-1": list(range(dropped, 10_000))}  # the newest survive
    assert [d.event[1] - NOW for d in got][:1] == [dropped]


def unread_by_broker(port: int) -> int:
    """Bytes clients sent that the broker has not read yet (its sockets' receive queues)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # established
            total += int(fields[4].split(":")[1], 16)
    return total


def test_batches_in_flight_at_a_kill_are_resent_identically_after_a_move(mosquitto: Any, inbox: Inbox,
                                                                       tmp_path: Path) -> None:
    """Published but never acknowledged (the broker froze), the agent killed, restarted as a
    box moved to another household with new firmware: the resends are the first sends' bytes."""
    agent = AgentProcess(mosquitto.url, tmp_path)
    agent.start(STB_AGENT__BATCH__MAX_EVENTS="20")
    inbox.wait_for(lambda i: i.status("box-9") == ["online"], 10)
    agent.send(power(0, 100))
    inbox.wait_for(lambda i: len(i.delivered()) >= 100)
    assert mosquitto.proc is not None
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)  # takes PUBLISHes into its socket, acknowledges none
    try:
        agent.send(power(100, 200))
        deadline = time.monotonic() + 20
        while unread_by_broker(mosquitto.port) < 800:  # a few batches of 20 (~12 bytes an event)
            assert time.monotonic() < deadline, "the agent did not publish while the broker was frozen"
            time.sleep(0.02)
        agent.signal(signal.SIGKILL)
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    inbox.wait_for(lambda i: len(i.delivered()) >= 140)  # the frozen PUBLISHes reach the inbox now
    agent.cmd += ["--household-id", "10", "--firmware", "4.3.0"]  # later flags win
    agent.start(STB_AGENT__BATCH__MAX_EVENTS="50")  # another batch size too
    agent.send(power(200, 210))
    inbox.wait_for(lambda i: {d.event[1] - NOW for d in i.delivered()} >= set(range(210)))
    assert agent.signal(signal.SIGTERM) == 0
    order = check_in_order_resends_identical(inbox, AgentMqttSettings().inflight)
    assert order == {"box-9": list(range(210))}
    payloads = [p for _, p in inbox.event_payloads()]
    assert len(payloads) > len(set(payloads)), "nothing was resent: the kill did not catch batches in flight"
    agent_topic = topic_for("north", "box-9")
    households = {decode_envelope(p, agent_topic).household_id: None for p in payloads}
    assert list(households) == [9, 10]  # resends kept 9; only batches cut after the restart say 10
