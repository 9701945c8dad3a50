"""The agent against a real mosquitto: outages, crashes, a full spool, the local socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from proto.telemetry import make_event

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOW = int(time.time() * 1000)


class Inbox:
    """A persistent-session subscriber: the broker keeps what arrives while it is away."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.payloads: list[dict] = []
        self._connect_and_run(0.3)

    def _connect_and_run(self, seconds: float) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="inbox", protocol=mqtt.MQTTv5)
        client.on_message = lambda _c, _u, msg: self.payloads.append(msgpack.unpackb(msg.payload)) \
            if msg.topic.endswith("/events") else None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        client.subscribe("stb/v1/+/+/events", qos=1)
        client.loop_start()
        time.sleep(seconds)
        client.disconnect()
        client.loop_stop()

    def collect(self, seconds: float = 1.5) -> list[tuple[str, int, list]]:
        self._connect_and_run(seconds)
        return [(p["dev"], p["seq0"] + i, e) for p in self.payloads for i, e in enumerate(p["ev"])]


def settings(url: str, spool: Path, device: str = "box-1", **batch: object) -> AgentSettings:
    return AgentSettings(
        device=DeviceSettings(id=device, household_id=7, region="north", firmware="t"),
        mqtt=AgentMqttSettings(url=url, reconnect_min_s=0.1, reconnect_max_s=0.5),
        batch=BatchPolicy(**{"max_age_s": 0.2, **batch}),  # type: ignore[arg-type]
        spool=SpoolSettings(dir=str(spool), fsync=False), shutdown_grace_s=0)


async def test_broker_down_then_up_every_event_once_in_order(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(mosquitto.port)
    async with Agent(settings(mosquitto.url, tmp_path / "spool", max_events=50)) as agent:
        for i in range(300):
            agent.record(make_event("power", NOW + i, 1))
        assert await agent.drain(10)
        mosquitto.stop()
        for i in range(300, 1300):  # recorded while the broker is away: spooled
            agent.record(make_event("power", NOW + i, 1))
        await asyncio.sleep(1.0)
        assert not agent.spool_empty
        mosquitto.start()
        assert await agent.drain(20)
    got = inbox.collect()
    seqs = [seq for _, seq, _ in got]
    assert sorted(set(seqs)) == list(range(1300))  # everything arrived
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)  # in order
    assert [e[1] - NOW for _, s, e in got] == [s for _, s, _ in got]  # each seq carries its own event


def test_agent_killed_and_restarted_loses_nothing_accepted(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(mosquitto.port)
    sock_path = tmp_path / "events.sock"
    cmd = [sys.executable, "-m", "agent", "--mqtt", mosquitto.url, "--device-id", "box-9", "--household-id", "9",
           "--region", "north", "--spool", str(tmp_path / "spool"), "--socket", str(sock_path), "--log-format", "text"]
    env = {**os.environ, "STB_AGENT__SPOOL__FSYNC": "true", "STB_AGENT__BATCH__MAX_AGE_S": "0.2"}

    log = tmp_path / "agent.log"

    def start() -> subprocess.Popen[bytes]:
        sock_path.unlink(missing_ok=True)  # a killed agent leaves its socket file behind
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not sock_path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        return proc

    def send(lo: int, hi: int) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for i in range(lo, hi):
                s.sendto(msgpack.packb(make_event("power", NOW + i, 1)), str(sock_path))

    proc = start()
    send(0, 500)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)  # mid-stream: some batches unpublished, some un-acknowledged
    proc.wait(10)
    proc = start()
    send(500, 800)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    got = inbox.collect()
    ts = {e[1] - NOW for _, _, e in got}
    assert ts == set(range(800))  # every accepted event arrived (duplicates allowed)
    by_seq: dict[int, int] = {}
    for _, seq, e in got:
        assert by_seq.setdefault(seq, e[1]) == e[1]  # a duplicate is the same event, never a reused seq


async def test_full_spool_drops_the_oldest_and_counts(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(mosquitto.port)
    mosquitto.stop()
    cfg = settings(mosquitto.url, tmp_path / "spool")
    cfg = AgentSettings(**{**cfg.__dict__, "spool": SpoolSettings(dir=str(tmp_path / "spool"), max_bytes=64 * 1024,
                                                                   fsync=False)})
    async with Agent(cfg) as agent:
        for i in range(10_000):
            agent.record(make_event("power", NOW + i, 1))
        dropped = agent.spool.dropped_events
        assert dropped > 0
        mosquitto.start()
        assert await agent.drain(20)
    got = sorted({e[1] - NOW for _, _, e in inbox.collect()})
    assert got == list(range(dropped, 10_000))  # the newest survive, the oldest `dropped` are gone


async def test_truncated_spool_is_recovered_and_delivered(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(mosquitto.port)
    mosquitto.stop()
    spool_dir = tmp_path / "spool"
    async with Agent(settings(mosquitto.url, spool_dir)) as agent:
        for i in range(100):
            agent.record(make_event("power", NOW + i, 1))
    segment = next(spool_dir.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[:-7])  # a power cut in the middle of the last record
    mosquitto.start()
    async with Agent(settings(mosquitto.url, spool_dir)) as agent:
        assert agent.spool.recovered_torn_bytes > 0
        agent.record(make_event("power", NOW + 1000, 1))
        assert await agent.drain(10)
    got = sorted({e[1] - NOW for _, _, e in inbox.collect()})
    assert got == [*range(99), 1000]


async def test_local_socket_counts_malformed_input(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from agent.ingest_socket import IngestSocket

    inbox = Inbox(mosquitto.port)
    path = tmp_path / "ingest.sock"
    async with Agent(settings(mosquitto.url, tmp_path / "spool")) as agent, \
            IngestSocket(agent, unix_path=str(path)) as ingest:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(json.dumps([1, NOW, 101, 5, 60, 2]).encode(), str(path))  # JSON form
            s.sendto(msgpack.packb([2, NOW, 101, 102, 1]), str(path))          # msgpack form
            for bad in (b"\xc1\xc1", b"[1, 2", json.dumps({"kind": 1}).encode(), msgpack.packb([99, NOW])):
                s.sendto(bad, str(path))
        await asyncio.sleep(0.3)
        assert ingest.received == 2 and ingest.malformed_count == 4
        assert await agent.drain(10)
    assert sorted(e[0] for _, _, e in inbox.collect()) == [1, 2]


async def test_backlog_goes_out_at_once_after_an_outage(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mosquitto.stop()
    cfg = settings(mosquitto.url, tmp_path / "spool")
    cfg = AgentSettings(**{**cfg.__dict__, "batch": BatchPolicy(max_events=100, max_age_s=60)})  # no age flushes
    async with Agent(cfg) as agent:
        for i in range(2000):
            agent.record(make_event("power", NOW + i, 1))
        mosquitto.start()
        deadline = time.monotonic() + 10
        while not agent.spool_empty and time.monotonic() < deadline:  # noqa: ASYNC110 (polling the agent)
            await asyncio.sleep(0.05)
        assert agent.spool_empty  # without drain(): the spooled backlog is not held back by batching
