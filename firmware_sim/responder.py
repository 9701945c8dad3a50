"""Boxes that answer: the fleet's households receive campaign messages on real agents and respond.

    python -m firmware_sim responder --mqtt URL --households N --days D --seed S --start DATE --state DIR

The world is the fleet's (`fleet.build_world`: same households, device ids and regions) and every box
runs a real `agent.core.Agent` with the fleet's settings (`fleet._agent_settings`: the client id is
the device id) and messages on, so the persistent sessions the fleet's agents left on the broker
deliver what marketing queued meanwhile. All agents share one event loop (uvloop), like the fleet.

Each message a box receives (the agent hands it over once per id) goes to the response model
(`responses.ResponseModel.decide`, drawn with `decision_rng(seed, household, message id)`: the same
answer on a rerun). k, the household's messages of the past 7 days before this one, is kept in
`STATE/responder.json` (saved every second and on exit), so it survives restarts; a message id a
household already got on another of its boxes is ignored. The agent then records kind 8 `msg_shown`
and, when the viewer answered, kind 9 `msg_response`, stamped now plus the model's simulated delays
(a few seconds), and publishes them like any event.

The ledger (JSON lines, `ledger.py`) gets accepted offers of a product (the action's `product`)
the household does not have, organic purchases of every day from the world's first day to today
(UTC), and retention saves (a retention offer shown to a persuadable household). It runs until
SIGTERM/SIGINT, or with `until_idle_s` until no message came for that long after at least one did;
then the agents publish what they recorded and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import resource
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core import Agent
from agent.settings import MessagesSettings
from firmware_sim.churn import PERSUADABLE
from firmware_sim.epg import DAY_MS
from firmware_sim.fleet import FleetPlan, _agent_settings, build_world
from firmware_sim.ledger import LedgerWriter, Purchase, read_ledger
from firmware_sim.responses import ACCEPTED, RESPONSES, MessageTopic, ResponseModel, Topic, decision_rng

WEEK_MS = 7 * DAY_MS
SAVE_EVERY_S = 1.0
DRAIN_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ResponderPlan:
    fleet: FleetPlan                 # the world: mqtt_url, households, days, seed, start, guide_size
    state_dir: Path
    ledger: Path
    until_idle_s: float | None = None


@dataclass
class Summary:
    boxes: int = 0
    messages: int = 0                # handed over by the agents (one per box and id)
    duplicates: int = 0              # a message id the household already got on another box
    shown: int = 0
    responses: Counter[int] = field(default_factory=Counter)
    ledger: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        answers = ", ".join(f"{name} {self.responses[c]}" for c, name in enumerate(RESPONSES))
        bought = ", ".join(f"{s} {self.ledger[s]}" for s in ("accepted", "organic", "retention"))
        return (f"responder: {self.boxes:,} boxes, {self.messages:,} messages ({self.duplicates} duplicates), "
                f"{self.shown:,} shown, responses: {answers}; ledger: {bought}")


class Memory:
    """Per household: the messages of the past week (time, id), who was saved, how far organic
    purchases were drawn. One JSON file, rewritten whole (write, rename) when changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.receipts: dict[int, list[tuple[int, str]]] = {}
        self.organic_through: dt.date | None = None
        self.dirty = False
        if path.exists():
            doc = json.loads(path.read_text(encoding="utf-8"))
            self.receipts = {int(h): [(int(t), str(i)) for t, i in r] for h, r in doc["receipts"].items()}
            through = doc.get("organic_through")
            self.organic_through = dt.date.fromisoformat(through) if through else None

    def seen(self, household_id: int, message_id: str) -> bool:
        return any(i == message_id for _, i in self.receipts.get(household_id, ()))

    def received(self, household_id: int, now_ms: int, message_id: str) -> int:
        """Record a message; returns k, the household's messages in the 7 days before it."""
        recent = [(t, i) for t, i in self.receipts.get(household_id, ()) if t > now_ms - WEEK_MS]
        self.receipts[household_id] = [*recent, (now_ms, message_id)]
        self.dirty = True
        return len(recent)

    def save(self, now_ms: int) -> None:
        receipts = {str(h): [[t, i] for t, i in r if t > now_ms - WEEK_MS] for h, r in self.receipts.items()}
        doc = {"receipts": {h: r for h, r in receipts.items() if r},
               "organic_through": self.organic_through.isoformat() if self.organic_through else None}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.path)
        self.dirty = False


class Responder:
    """The fleet's boxes, listening. `run()` until `stop` is set (or idle); returns the summary."""

    def __init__(self, plan: ResponderPlan) -> None:
        self.plan = plan
        self.epg, self.households = build_world(plan.fleet)
        self.model = ResponseModel(self.epg, self.households)
        plan.state_dir.mkdir(parents=True, exist_ok=True)
        self.memory = Memory(plan.state_dir / "responder.json")
        self.summary = Summary()
        past = read_ledger(plan.ledger)
        self._bought = {(p.household_id, p.product) for p in past}
        self._ledger = LedgerWriter(plan.ledger)
        self.stop = asyncio.Event()
        self._last_message: float | None = None

    async def run(self) -> Summary:
        agents: list[Agent] = []
        try:
            async with contextlib.AsyncExitStack() as stack:
                for row in range(len(self.households)):
                    for device_id in self.households.device_ids(row):
                        agent = Agent(self._settings(row, device_id))
                        agent.on_message(functools.partial(self._on_message, row, agent))
                        agents.append(await stack.enter_async_context(_Closing(agent)))
                self.summary.boxes = len(agents)
                await self._wait_connected(agents)
                self._organic()
                while not self._done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), SAVE_EVERY_S)
                    self._organic()
                    if self.memory.dirty:
                        self.memory.save(_now_ms())
                await asyncio.gather(*(a.drain(DRAIN_TIMEOUT_S) for a in agents))
        finally:
            self.memory.save(_now_ms())
            self._ledger.close()
        return self.summary

    def _settings(self, row: int, device_id: str) -> Any:
        hh = int(self.households.household_id[row])
        base = _agent_settings(self.plan.fleet, self.plan.state_dir / "boxes", hh, device_id,
                               self.households.region_name(row))
        return dataclasses.replace(base, messages=MessagesSettings(enabled=True))

    async def _wait_connected(self, agents: list[Agent]) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not all(a.connected for a in agents) and time.monotonic() < deadline and not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.1)
        print(f"responder: {sum(a.connected for a in agents):,} of {len(agents):,} boxes connected, listening",
              flush=True)

    def _done(self) -> bool:
        if self.stop.is_set():
            return True
        idle = self.plan.until_idle_s
        return idle is not None and self._last_message is not None and time.monotonic() - self._last_message >= idle

    def _on_message(self, row: int, agent: Agent, doc: dict[str, Any]) -> None:
        self.summary.messages += 1
        self._last_message = time.monotonic()
        hh = int(self.households.household_id[row])
        mid, campaign, variant = str(doc["id"]), str(doc["campaign"]), str(doc["variant"])
        if self.memory.seen(hh, mid):
            self.summary.duplicates += 1
            return
        now = agent.now_ms()
        k = self.memory.received(hh, now, mid)
        answer = self.model.decide(row, doc, now, k, decision_rng(self.plan.fleet.seed, hh, mid))
        if answer.shown_at_ms is None:
            return
        self.summary.shown += 1
        agent.msg_shown(mid, campaign, variant, ts_ms=answer.shown_at_ms)
        topic = MessageTopic.of(doc, self.epg)
        if topic.topic is Topic.RETENTION and self.model.churn.retention[row] == PERSUADABLE:
            self._write(Purchase(hh, topic.product, _day(answer.shown_at_ms), "retention"))
        if answer.response is None or answer.responded_at_ms is None:
            return
        self.summary.responses[answer.response] += 1
        agent.msg_response(mid, campaign, variant, answer.response, ts_ms=answer.responded_at_ms)
        if (answer.response == ACCEPTED and topic.product and topic.topic is not Topic.RETENTION
                and not self.model.owns(np.array([row]), topic.product)[0]):
            self._write(Purchase(hh, topic.product, _day(answer.responded_at_ms), "accepted"))

    def _organic(self) -> None:
        """Organic purchases of every day up to today not drawn yet (from the world's first day)."""
        today = _day(_now_ms())
        through = self.memory.organic_through
        day = through + dt.timedelta(days=1) if through else self.plan.fleet.start
        rows = np.arange(len(self.households))
        while day <= today:
            self._write(*(Purchase(int(self.households.household_id[r]), product, day, "organic")
                          for r, product in self.model.organic(rows, day)))
            self.memory.organic_through = day
            self.memory.dirty = True
            day += dt.timedelta(days=1)

    def _write(self, *entries: Purchase) -> None:
        """Append what is new: a product bought once per household; a household saved once."""
        new = [e for e in entries if (e.household_id, e.product) not in self._bought]
        self._bought.update((e.household_id, e.product) for e in new)
        self._ledger.write(new)
        self.summary.ledger.update(e.source for e in new)


class _Closing:
    """An entered agent that, on exit, closes without a grace period (the responder drains first)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def __aenter__(self) -> Agent:
        return await self.agent.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self.agent.aclose(0)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _day(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


async def _main(plan: ResponderPlan) -> Summary:
    responder = Responder(plan)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, responder.stop.set)
    return await responder.run()


def run_responder(plan: ResponderPlan) -> Summary:
    """Run on uvloop in this process (one connection, spool and state file per box: the open-files
    limit is raised to its hard maximum, as the fleet does)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    return uvloop.run(_main(plan))
