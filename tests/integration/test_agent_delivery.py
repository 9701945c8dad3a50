"""The agent against a real mosquitto: outages, ordering, `sent` stamping, status, many agents."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from agent.thread import AgentThread
from proto.telemetry import decode_envelope

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)
NOW = 1_795_000_000_000


@dataclass(frozen=True)
class Delivered:
    device: str
    seq: int
    event: list[Any]
    sent: int


class Inbox:
    """A persistent-session subscriber to stb/v1/# that reconnects by itself, so it misses
    nothing across broker restarts (the fixture's mosquitto persists sessions on stop)."""

    def __init__(self, port: int, client_id: str = "inbox") -> None:
        self._lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("stb/v1/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.reconnect_delay_set(0.05, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def event_payloads(self) -> list[tuple[str, bytes]]:
        """Every events message (topic, payload) in arrival order, duplicates included."""
        with self._lock:
            return [(t, p) for t, p, _ in self.messages if t.endswith("/events")]

    def delivered(self) -> list[Delivered]:
        """Every event in arrival order (duplicates included), checked by the collector's decoder."""
        out = []
        for topic, payload in self.event_payloads():
            env = decode_envelope(payload, topic)
            out.extend(Delivered(env.device_id, env.seq0 + i, e, env.sent_ms) for i, e in enumerate(env.events))
        return out

    def status(self, device: str) -> list[str]:
        with self._lock:
            return [p.decode() for t, p, _ in self.messages if t.endswith(f"/{device}/status")]

    def wait_for(self, predicate: Callable[[Inbox], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, "timed out waiting for deliveries"
            time.sleep(0.05)

    def wait_for_unique(self, count: int, timeout: float = 20.0) -> list[Delivered]:
        self.wait_for(lambda inbox: len({(d.device, d.seq) for d in inbox.delivered()}) >= count, timeout)
        return self.delivered()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check_exactly_once_in_order(got: list[Delivered]) -> dict[str, list[int]]:
    """No fault injected: per device every seq exactly once, in order, contiguous from the first."""
    seen: set[tuple[str, int]] = set()
    order: dict[str, list[int]] = {}
    for d in got:
        assert (d.device, d.seq) not in seen, f"{d.device} seq {d.seq} delivered twice"
        seen.add((d.device, d.seq))
        order.setdefault(d.device, []).append(d.seq)
    return _in_order(order)


def check_in_order_resends_identical(inbox: Inbox, max_resent: int) -> dict[str, list[int]]:
    """A fault with batches in flight (broker outage, kill): resends are legitimate, but each is
    the same bytes as the first send (every seq travels in one payload only), at most
    `max_resent` payloads arrive again (the in-flight window per fault), and first arrivals
    are in order and contiguous. Returns the first arrivals' seqs per device."""
    carrier: dict[tuple[str, int], bytes] = {}
    copies: dict[bytes, int] = {}
    order: dict[str, list[int]] = {}
    for topic, payload in inbox.event_payloads():
        copies[payload] = copies.get(payload, 0) + 1
        if copies[payload] > 1:
            continue
        env = decode_envelope(payload, topic)
        for i in range(len(env.events)):
            key = (env.device_id, env.seq0 + i)
            assert key not in carrier, f"{key}: resent in other bytes (a different cut or header)"
            carrier[key] = payload
            order.setdefault(env.device_id, []).append(env.seq0 + i)
    resent = sum(n - 1 for n in copies.values())
    assert resent <= max_resent, f"{resent} payloads resent, more than the in-flight window ({max_resent})"
    return _in_order(order)


def _in_order(order: dict[str, list[int]]) -> dict[str, list[int]]:
    for device, seqs in order.items():
        assert seqs == sorted(seqs), f"{device}: out of order"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{device}: a gap"
    return order


def agent_settings(url: str, spool: Path, device: str = "box-1", *, fsync: str = "off",
                   max_bytes: int = 8 * 1024 * 1024, **batch: Any) -> AgentSettings:
    return AgentSettings(
        device=DeviceSettings(id=device, household_id=7, region="north", firmware="t"),
        mqtt=AgentMqttSettings(url=url, reconnect_min_s=0.05, reconnect_max_s=0.3),
        batch=BatchPolicy(**{"max_age_s": 0.1, **batch}),
        spool=SpoolSettings(dir=str(spool), fsync=fsync, max_bytes=max_bytes), shutdown_grace_s=0)


@pytest.fixture
def inbox(mosquitto: Any) -> Any:
    box = Inbox(mosquitto.port)
    yield box
    box.close()


async def test_broker_outage_every_event_once_in_order_with_publish_time(mosquitto: Any, inbox: Inbox,
                                                                          tmp_path: Path) -> None:
    clock = [NOW]
    cfg = agent_settings(mosquitto.url, tmp_path / "spool", fsync="batch", max_events=50)
    async with Agent(cfg, clock=lambda: clock[0]) as agent:
        for i in range(300):
            assert agent.record([5, NOW + i, 1])
        assert await agent.drain(10)
        await asyncio.to_thread(mosquitto.stop)
        clock[0] = NOW + 60_000  # batches are sealed during the outage, at this time
        for i in range(300, 1300):
            assert agent.record([5, NOW + i, 1])
        await asyncio.sleep(0.5)
        assert not agent.connected and agent.spool.pending_events == 1000
        clock[0] = NOW + 120_000  # ... and published after it, at this one
        await asyncio.to_thread(mosquitto.start)
        assert await agent.drain(20)
        assert agent.stats.events_published == 1300
    got = await asyncio.to_thread(inbox.wait_for_unique, 1300)
    # The broker went down: it may send the inbox again what the inbox had not acknowledged.
    order = check_in_order_resends_identical(inbox, cfg.mqtt.inflight)
    assert order == {"box-1": list(range(1300))}
    assert all(d.event[1] - NOW == d.seq for d in got)  # each seq carries its own event
    assert {d.sent for d in got if d.seq >= 300} == {NOW + 120_000}  # stamped when published, not sealed


async def test_backlog_goes_out_at_once_after_an_outage(mosquitto: Any, inbox: Inbox, tmp_path: Path) -> None:
    await asyncio.to_thread(mosquitto.stop)
    cfg = agent_settings(mosquitto.url, tmp_path / "spool", max_events=100, max_age_s=60)  # no age flushes
    async with Agent(cfg) as agent:
        for i in range(2000):
            assert agent.record([5, NOW + i, 1])
        await asyncio.to_thread(mosquitto.start)
        deadline = time.monotonic() + 10
        while not agent.spool_empty and time.monotonic() < deadline:  # noqa: ASYNC110 (polling the agent)
            await asyncio.sleep(0.05)
        assert agent.spool_empty  # without drain(): the spooled backlog is not held back by batching
    assert len(check_exactly_once_in_order(await asyncio.to_thread(inbox.wait_for_unique, 2000))["box-1"]) == 2000


async def test_status_online_and_offline_are_retained(mosquitto: Any, inbox: Inbox, tmp_path: Path) -> None:
    async with Agent(agent_settings(mosquitto.url, tmp_path / "spool")) as agent:
        for _ in range(100):
            if agent.connected:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(inbox.wait_for, lambda i: i.status("box-1") == ["online"], 5)
    await asyncio.to_thread(inbox.wait_for, lambda i: i.status("box-1") == ["online", "offline"], 5)
    late = Inbox(mosquitto.port, client_id="late")  # a newcomer sees the retained state
    try:
        await asyncio.to_thread(late.wait_for, lambda i: i.status("box-1") == ["offline"], 5)
    finally:
        late.close()


async def test_two_hundred_agents_on_one_loop(mosquitto: Any, inbox: Inbox, tmp_path: Path) -> None:
    n, per_agent = 200, 25
    agents = [Agent(agent_settings(mosquitto.url, tmp_path / f"spool-{k}", f"box-{k}", max_events=10))
              for k in range(n)]
    started = time.monotonic()
    for a in agents:
        await a.__aenter__()
    try:
        for i in range(per_agent):
            for a in agents:
                assert a.record([5, NOW + i, 1])
            await asyncio.sleep(0.01)
        done = await asyncio.gather(*(a.drain(30) for a in agents))
        assert all(done)
    finally:
        await asyncio.gather(*(a.aclose(0) for a in agents))
    elapsed = time.monotonic() - started
    got = await asyncio.to_thread(inbox.wait_for_unique, n * per_agent)
    order = check_exactly_once_in_order(got)
    assert order == {f"box-{k}": list(range(per_agent)) for k in range(n)}
    assert elapsed < 30


def test_agent_thread_delivers(mosquitto: Any, inbox: Inbox, tmp_path: Path) -> None:
    agent = AgentThread(agent_settings(mosquitto.url, tmp_path / "spool"), clock=lambda: NOW)
    results = []
    workers = [threading.Thread(target=lambda: results.extend(agent.power(1) for _ in range(100)))
               for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert agent.close(timeout=10)
    assert results == [True] * 300
    got = inbox.wait_for_unique(300)
    assert check_exactly_once_in_order(got) == {"box-1": list(range(300))}
