"""Resends are byte-identical to the first send: after a reconnect, and after a restart with
another household, firmware, batch size and a later clock (a box moved to another home)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from proto.telemetry import decode_envelope
from stbcommon.localservers import free_port

NOW = 1_795_000_000_000


def settings(tmp: Path, household: int, firmware: str, max_events: int) -> AgentSettings:
    return AgentSettings(
        device=DeviceSettings(id="box-1", household_id=household, region="north", firmware=firmware),
        mqtt=AgentMqttSettings(url=f"mqtt://127.0.0.1:{free_port()}", inflight=8),
        batch=BatchPolicy(max_events=max_events, max_age_s=5.0),
        spool=SpoolSettings(dir=str(tmp / "spool"), fsync="batch"), shutdown_grace_s=0)


class NoPubAck:
    """A connection that takes PUBLISHes and never acknowledges them."""

    def __init__(self, want: int) -> None:
        self.payloads: list[bytes] = []
        self.want = want
        self.enough = asyncio.Event()

    async def publish_qos1(self, topic: str, payload: bytes, *, timeout: float) -> None:
        self.payloads.append(payload)
        if len(self.payloads) >= self.want:
            self.enough.set()
        await asyncio.Event().wait()


class _Dropped(Exception):
    pass


async def publish_until_dropped(agent: Agent, want: int) -> list[bytes]:
    """Run the agent's publishing over a connection that drops after `want` unacknowledged PUBLISHes."""
    client = NoPubAck(want)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(agent._publisher._pump(client, tg))  # type: ignore[arg-type]
            await client.enough.wait()
            raise _Dropped
    except* _Dropped:
        pass
    return client.payloads


def header(payload: bytes) -> tuple[Any, ...]:
    env = decode_envelope(payload, "stb/v1/north/box-1/events")
    return env.household_id, env.firmware, env.seq0, len(env.events), env.sent_ms


async def test_resent_batches_are_byte_identical_after_reconnect_and_restart(tmp_path: Path) -> None:
    clock = [NOW]
    first = Agent(settings(tmp_path, 7, "4.2.0", max_events=10), clock=lambda: clock[0])
    for i in range(30):
        assert first.record([5, NOW + i, 1])  # no loop yet: sealed and synced at once
    sent = await publish_until_dropped(first, 3)
    assert [header(p) for p in sent] == [(7, "4.2.0", s, 10, NOW) for s in (0, 10, 20)]

    clock[0] = NOW + 30_000  # reconnect in the same process, later
    assert await publish_until_dropped(first, 3) == sent

    # Restart: moved to household 8, new firmware, bigger batches, a later clock; never closed (a kill).
    restarted = Agent(settings(tmp_path, 8, "4.3.0", max_events=50), clock=lambda: NOW + 60_000)
    for i in range(30, 35):
        assert restarted.record([5, NOW + i, 1])
    restarted._seal()
    again = await publish_until_dropped(restarted, 4)
    assert again[:3] == sent  # the same bytes: same cut, same hh, fw and sent
    assert header(again[3]) == (8, "4.3.0", 30, 5, NOW + 60_000)  # new batches: the new settings
    restarted.spool.close()
