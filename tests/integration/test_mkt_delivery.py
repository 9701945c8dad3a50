"""Campaign messages from the marketing publisher to real agents through a real mosquitto.

Boxes are `agent.core.Agent`s with messages on (persistent sessions), each with its own state
folder; `on_message` records what the box hands to the firmware. Checked: every box gets its own
message once with the exact map; a box that is off gets it on reconnect, but not one whose MQTT
expiry passed meanwhile (the broker drops it: the box never sees it); a resend of the same id is
dropped by the box; PUBACK codes are counted for 20k messages nobody subscribes to; a broker
restart mid-batch is survived (resent with DUP, every message acknowledged); and behind
deploy/mosquitto/secure.conf a publisher whose certificate may not write downlink topics gets
0x87 for every message, while `marketing` is let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from marketing.downlink import encode, encode_many, message_ids, topic
from marketing.mqtt_settings import MarketingMqttSettings
from marketing.publisher import ACCEPTED, NO_SUBSCRIBERS, Outgoing, publish
from stbcommon import pki
from stbcommon.localservers import Mosquitto
from tests.integration.secure_broker import SecureMosquitto

pytestmark = pytest.mark.integration
REGION = "north"
ACTION = {"type": "tune", "channel_id": 101, "programme_id": "ep-1", "start": 1_797_620_400_000}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Box:
    """A real agent for one device; `got` is every map its on_message callback received."""

    def __init__(self, url: str, folder: Path, device: str) -> None:
        self.device = device
        self.topic = topic(REGION, device)
        self.settings = AgentSettings(
            device=DeviceSettings(id=device, household_id=int(device.rsplit("-", 1)[1]), region=REGION, firmware="t"),
            mqtt=AgentMqttSettings(url=url, reconnect_min_s=0.05, reconnect_max_s=0.3),
            batch=BatchPolicy(max_age_s=0.1), spool=SpoolSettings(dir=str(folder / device), fsync="off"),
            shutdown_grace_s=0)
        (folder / device).mkdir(parents=True, exist_ok=True)
        self.got: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.agent: Agent | None = None

    def _receive(self, doc: dict[str, Any]) -> None:
        self.got.append(doc)
        self.arrived.set()

    async def start(self) -> Agent:
        self.agent = Agent(self.settings)
        self.agent.on_message(self._receive)
        return await self.agent.__aenter__()

    async def stop(self) -> None:
        assert self.agent is not None
        await self.agent.aclose()

    def ids(self) -> list[str]:
        return [m["id"] for m in self.got if not m["id"].startswith("probe.")]

    async def wait_for(self, message_id: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while message_id not in self.ids():
                self.arrived.clear()
                await self.arrived.wait()


def payload(message_id: str, *, expires_ms: int | None = None, title: str = "Tonight: the final") -> bytes:
    return encode(message_id, "euro-final", "a", title, "Press OK to watch", ACTION,
                  expires_ms or now_ms() + 3_600_000)


async def until_subscribed(settings: MarketingMqttSettings, boxes: list[Box], timeout: float = 10.0) -> None:
    """An agent subscribes just after it connects: probe each box (ids `probe.*`, ignored by the
    checks) until the broker answers 0x00, i.e. a subscription matched."""
    waiting, n = list(boxes), 0
    async with asyncio.timeout(timeout):
        while waiting:
            n += 1
            result = await publish(settings, [Outgoing(b.topic, payload(f"probe.{n}.{b.device}"), 30)
                                              for b in waiting])
            waiting = [b for b, code in zip(waiting, result.reason_codes, strict=True) if code != ACCEPTED]
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(boxes: list[Box]) -> AsyncIterator[list[Box]]:
    started: list[Box] = []
    try:
        for box in boxes:
            await box.start()
            started.append(box)
        yield boxes
    finally:
        for box in started:
            await box.stop()


async def test_each_box_gets_its_message_once_with_the_exact_map(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MarketingMqttSettings(url=mosquitto.url)
    boxes = [Box(mosquitto.url, tmp_path, f"stb-{h}") for h in (11, 12, 13)]
    async with running(boxes):
        await until_subscribed(settings, boxes)
        ids = message_ids("euro-final", np.array([11, 12, 13], dtype=np.uint64), np.ones(3, dtype=np.int64))
        expires = now_ms() + 3_600_000
        payloads = encode_many(ids.tolist(), "euro-final", "a", "Tonight: the final", "Press OK", ACTION, expires)
        result = await publish(settings, [Outgoing(b.topic, p, 3600) for b, p in zip(boxes, payloads, strict=True)])
        assert result.reason_codes == [ACCEPTED] * 3 and result.accepted == 3
        for box, mid in zip(boxes, ids.tolist(), strict=True):
            await box.wait_for(mid)
            [doc] = [m for m in box.got if m["id"] == mid]
            assert doc == {"v": 1, "id": mid, "campaign": "euro-final", "variant": "a", "title": "Tonight: the final",
                           "body": "Press OK", "action": ACTION, "expires": expires}

        # The engine repeats a send after a crash: same ids (message_ids is deterministic), then a new one.
        again = message_ids("euro-final", np.array([11, 12, 13], dtype=np.uint64), np.ones(3, dtype=np.int64))
        resend = [Outgoing(b.topic, p, 3600) for b, p in zip(boxes, payloads, strict=True)]
        after = [Outgoing(b.topic, payload(f"next-{b.device}"), 3600) for b in boxes]
        assert (await publish(settings, resend + after)).reason_codes == [ACCEPTED] * 6
        for box, mid in zip(boxes, again.tolist(), strict=True):
            await box.wait_for(f"next-{box.device}")     # in order behind the resend, on the same topic
            assert box.ids() == [mid, f"next-{box.device}"]
            assert box.agent is not None and box.agent.inbox is not None and box.agent.inbox.duplicates == 1


async def test_an_offline_box_gets_its_message_on_reconnect_but_not_an_expired_one(mosquitto: Mosquitto,
                                                                                   tmp_path: Path) -> None:
    settings = MarketingMqttSettings(url=mosquitto.url)
    box = Box(mosquitto.url, tmp_path, "stb-21")
    async with running([box]):
        await until_subscribed(settings, [box])      # its persistent session now holds the subscription
    # The box is off. Its session still matches the topic: 0x00, queued by the broker.
    short = Outgoing(box.topic, payload("short-lived", expires_ms=now_ms() + 3_600_000), 1)
    live = Outgoing(box.topic, payload("live"), 3600)
    result = await publish(settings, [short, live])
    assert result.reason_codes == [ACCEPTED, ACCEPTED]
    await asyncio.sleep(2.2)                          # past the 1 s MQTT expiry of "short-lived"
    async with running([box]):
        await box.wait_for("live")
        await until_subscribed(settings, [box])       # a probe after it: anything queued came before
    assert box.ids() == ["live"]
    # The broker dropped it (its payload's own `expires` was an hour away: the box never saw it).
    assert box.agent is not None and box.agent.inbox is not None
    assert box.agent.inbox.expired == 0 and box.agent.inbox.invalid == 0


async def test_20k_messages_nobody_subscribes_to_are_all_acknowledged(mosquitto: Mosquitto) -> None:
    messages = [Outgoing(topic(REGION, f"stb-{i}"), payload(f"m{i}"), 600) for i in range(20_000)]
    progress: list[int] = []
    result = await publish(MarketingMqttSettings(url=mosquitto.url), messages,
                           progress=lambda done, _total: progress.append(done))
    assert result.reason_codes.count(NO_SUBSCRIBERS) == 20_000 == result.no_subscribers
    assert (result.accepted, result.refused, result.connections, result.resent) == (0, 0, 1, 0)
    assert progress[-1] == 20_000 and progress == sorted(progress)


async def test_a_broker_restart_mid_batch_loses_nothing(mosquitto: Mosquitto) -> None:
    messages = [Outgoing(topic(REGION, f"stb-{i}"), payload(f"m{i}"), 600) for i in range(150_000)]
    halfway = asyncio.Event()
    settings = MarketingMqttSettings(url=mosquitto.url, reconnect_min_s=0.05, reconnect_max_s=0.3)

    def progress(done: int, _total: int) -> None:
        if done >= 10_000:
            halfway.set()

    task = asyncio.create_task(publish(settings, messages, progress=progress))
    await halfway.wait()
    mosquitto.kill()
    assert not task.done()
    await asyncio.to_thread(mosquitto.start)
    result = await task
    assert result.no_subscribers == 150_000
    assert result.connections >= 2 and result.resent > 0


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue(d, "server", "broker")
    for name in ("collector", "marketing"):
        pki.issue(d, "service", name)
    return d


@pytest.fixture
def secure_broker(tmp_path: Path, pki_dir: Path) -> Iterator[SecureMosquitto]:
    broker = SecureMosquitto(tmp_path / "mosquitto", pki_dir)
    broker.start()
    yield broker
    broker.kill()


async def test_an_identity_that_may_not_write_gets_a_refusal_per_message(secure_broker: SecureMosquitto,
                                                                        pki_dir: Path) -> None:
    def as_(name: str) -> MarketingMqttSettings:
        return MarketingMqttSettings(url=secure_broker.url, client_id=f"{name}-publisher",
                                     ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / f"{name}.crt"),
                                     key_file=str(pki_dir / f"{name}.key"))

    messages = [Outgoing(topic(REGION, f"stb-{i}"), payload(f"m{i}"), 600) for i in range(500)]
    refused = await publish(as_("collector"), messages)           # may read events, not write messages
    assert refused.reason_codes == [0x87] * 500 and refused.refused == 500 and refused.accepted == 0
    allowed = await publish(as_("marketing"), messages)
    assert allowed.reason_codes == [NO_SUBSCRIBERS] * 500 and allowed.refused == 0
