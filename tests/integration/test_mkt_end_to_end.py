"""The closed loop with every part real: ClickHouse, mosquitto, the collector, the boxes' agents.

A campaign for the football fans is sent by the engine through the real publisher; each fan's box
(an `agent.core.Agent` with messages on) receives its message, shows it and answers — through the
agent's own event helpers, published like any event; the collector stores the answers; the next
cycle turns them into contact states and the report counts the conversions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from collector.process import CollectorProcess
from marketing import store as registry
from marketing.daemon import _publish
from marketing.downlink import encode, topic
from marketing.engine import Engine
from marketing.mqtt_settings import MarketingMqttSettings
from marketing.publisher import ACCEPTED, Outgoing, publish
from marketing.report import build_report
from marketing.settings import MarketingSettings
from stbcommon.localservers import Mosquitto
from tests.integration.crm_support import close_and_drop, open_migrated
from tests.integration.mkt_support import FANS, NO_BOX, campaign_file, fill_marketing, states

pytestmark = pytest.mark.integration
BOXES = [h for h in FANS if h != NO_BOX]
ANSWER = {0: 2, 1: 3, 2: 4}   # by household % 3 among the boxes that answer: accepted, refused, unsubscribe


def box(url: str, folder: Path, household: int) -> Agent:
    device = f"stb-{household}-0"
    return Agent(AgentSettings(
        device=DeviceSettings(id=device, household_id=household, region="north", firmware="t"),
        mqtt=AgentMqttSettings(url=url, reconnect_min_s=0.05, reconnect_max_s=0.3),
        batch=BatchPolicy(max_age_s=0.1), spool=SpoolSettings(dir=str(folder / device), fsync="off"),
        shutdown_grace_s=0))


def answers_for(household: int) -> int | None:
    """Every other box answers (by household // 3 % 2); the rest only show the message."""
    return ANSWER[(household // 3) % 3] if (household // 3) % 2 == 0 else None


async def until_subscribed(settings: MarketingMqttSettings, topics: list[str], timeout: float = 20.0) -> None:
    """An agent subscribes just after it connects: probe each box (ids `probe.*`, which the boxes here
    ignore) until the broker answers 0x00, i.e. a subscription matched."""
    waiting, n = list(topics), 0
    async with asyncio.timeout(timeout):
        while waiting:
            n += 1
            probes = [Outgoing(t, encode(f"probe.{n}", "probe", "p", "t", "", {"type": "info"},
                                         int(time.time() * 1000) + 60_000), 30) for t in waiting]
            result = await publish(settings, probes)
            waiting = [t for t, code in zip(waiting, result.reason_codes, strict=True) if code != ACCEPTED]
            await asyncio.sleep(0.05)


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_messages_reach_real_boxes_and_their_answers_come_back_as_states(
        mosquitto: Mosquitto, clickhouse_url: str, tmp_path: Path) -> None:
    store = open_migrated(clickhouse_url)
    collector = CollectorProcess(mosquitto.url, clickhouse_url, tmp_path, group="e2e")
    agents: dict[int, Agent] = {}
    got: dict[int, list[dict[str, Any]]] = {}
    try:
        fill_marketing(store, seen_ms=int(time.time() * 1000) - 3_600_000)
        registry.create(store, campaign_file("e2e", holdout=0.0, variants=("a",)))
        collector.start()
        for household in BOXES:
            agent = box(mosquitto.url, tmp_path, household)

            def on_message(doc: dict[str, Any], agent: Agent = agent, household: int = household) -> None:
                if doc["id"].startswith("probe."):
                    return
                got.setdefault(household, []).append(doc)
                agent.msg_shown(doc["id"], doc["campaign"], doc["variant"])
                code = answers_for(household)
                if code is not None:
                    agent.msg_response(doc["id"], doc["campaign"], doc["variant"], code)

            agent.on_message(on_message)
            agents[household] = await agent.__aenter__()
        settings = replace(MarketingSettings(), mqtt=MarketingMqttSettings(url=mosquitto.url))
        await until_subscribed(settings.mqtt, [topic("north", f"stb-{h}-0") for h in BOXES])
        engine = Engine(settings, store, lambda messages: _publish(settings, messages))
        now = dt.datetime.now(dt.UTC)
        first = await asyncio.to_thread(engine.cycle, now)
        assert first.statuses == {"sent": len(BOXES), "skipped": 1}    # NO_BOX has no box
        await wait_until(lambda: len(got) == len(BOXES), 30, "every box's message")
        assert all(len(docs) == 1 for docs in got.values())
        doc = got[BOXES[0]][0]
        assert (doc["campaign"], doc["variant"], doc["title"], doc["action"]) == (
            "e2e", "a", "a: ", {"type": "offer", "product": "sports"})
        answering = [h for h in BOXES if answers_for(h) is not None]
        db = store.database
        await wait_until(lambda: store.query_rows(
            f"SELECT countIf(kind = 'msg_shown'), countIf(kind = 'msg_response') FROM {db}.events "
            "WHERE campaign = 'e2e'")[0] == (len(BOXES), len(answering)), 60, "answers stored by the collector")
        await asyncio.to_thread(engine.cycle, now + dt.timedelta(minutes=1))
        book = states(store, "e2e")
        expected = {h: {2: "converted", 3: "refused", 4: "unsubscribed"}[c] if (c := answers_for(h)) is not None
                    else "contacted" for h in BOXES}
        assert {h: book[h][1] for h in BOXES} == expected
        report = build_report(store, registry.get(store, "e2e"))
        assert report["treated"]["converted"] == sum(1 for s in expected.values() if s == "converted") > 0
        assert report["funnel"]["contacted"] == sum(1 for s in expected.values() if s == "contacted")
    finally:
        await asyncio.gather(*(a.aclose() for a in agents.values()))
        collector.close()
        close_and_drop(store, clickhouse_url)
