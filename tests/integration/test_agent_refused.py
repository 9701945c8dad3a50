"""A publish the broker refuses (PUBACK 135, not authorized) is not a delivery: the batch stays
spooled, the refusal is counted and logged, and it goes out once the broker allows it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.core import Agent
from stbcommon.localservers import Mosquitto
from tests.integration.test_agent_delivery import NOW, Inbox, agent_settings

pytestmark = pytest.mark.integration


async def test_refused_publishes_stay_spooled_until_allowed(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read #\ntopic write stb/v1/+/someone-else/#\n")  # box-1 may not write
    broker = Mosquitto(tmp_path / "broker", extra_config=f"acl_file {acl}\n")
    with broker:
        inbox = Inbox(broker.port)
        try:
            async with Agent(agent_settings(broker.url, tmp_path / "spool", max_events=10)) as agent:
                for i in range(30):
                    assert agent.record([5, NOW + i, 1])
                assert not await agent.drain(2.0)  # refused: never delivered
                assert agent.stats.publish_refused >= 1 and agent.stats.events_published == 0
                assert agent.spool.pending_events == 30

                acl.write_text("topic read #\ntopic write stb/v1/#\n")  # the operator mends the ACL
                broker.reload()
                assert await agent.drain(20)
            got = await asyncio.to_thread(inbox.wait_for_unique, 30)
            assert sorted({d.seq for d in got if d.device == "box-1"}) == list(range(30))
        finally:
            inbox.close()
