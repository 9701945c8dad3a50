"""A simulated fleet: households' boxes, each a real agent, publishing to a real broker.

The households are split across worker processes (household row i goes to process
i % processes); each process runs all its boxes' agents on one event loop. Simulated time
runs as fast as the agents can publish: a box's events for a day are handed to its agent
in the order the box would record them. A box's events depend only on (seed, household,
box, day), and every agent starts with a fresh spool, so two runs with the same seed
publish the same events with the same sequence numbers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing as mp
import queue
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core import Agent
from agent.settings import AgentMqttSettings, AgentSettings, BatchPolicy, DeviceSettings, SpoolSettings
from firmware_sim.behaviour import PopularNowSource, Simulator
from firmware_sim.epg import Epg
from firmware_sim.households import Households


@dataclass(frozen=True)
class FleetPlan:
    mqtt_url: str
    households: int
    days: int
    seed: int
    start: dt.date
    processes: int = 1
    spool_root: str = ""               # default: a temporary folder
    guide_size: str = "medium"
    recommendations: bool = True       # rec_impression / rec_click events from a popular-now source
    firmware: str = "sim-1.0"
    batch_max_age_s: float = 0.5


def build_world(plan: FleetPlan) -> tuple[Epg, Households]:
    """The guide covers the simulated days and the day after (for "tomorrow" queries)."""
    epg = Epg.generate(plan.start, plan.days + 1, plan.seed, plan.guide_size)
    return epg, Households.generate(epg, plan.households, plan.seed)


def _agent_settings(plan: FleetPlan, spool_root: Path, household_id: int, device_id: str,
                    region: str) -> AgentSettings:
    return AgentSettings(
        device=DeviceSettings(id=device_id, household_id=household_id, region=region, firmware=plan.firmware),
        mqtt=AgentMqttSettings(url=plan.mqtt_url, reconnect_min_s=0.2, reconnect_max_s=5.0, keepalive_s=120),
        batch=BatchPolicy(max_events=500, max_age_s=plan.batch_max_age_s),
        spool=SpoolSettings(dir=str(spool_root / device_id), max_bytes=64 * 1024 * 1024, fsync=False),
        shutdown_grace_s=0)


async def _run_share(plan: FleetPlan, share: int, spool_root: Path, progress: Any) -> dict[str, int]:
    epg, households = build_world(plan)
    rec_source = PopularNowSource(epg) if plan.recommendations else None
    sim = Simulator(epg, households, seed=plan.seed, rec_source=rec_source)
    rows = np.arange(share, len(households), plan.processes)
    agents: dict[str, Agent] = {}
    recorded = 0
    try:
        for day in range(plan.days):
            for box in sim.iter_days([day], rows):
                agent = agents.get(box.device_id)
                if agent is None:
                    agent = Agent(_agent_settings(plan, spool_root, box.household_id, box.device_id, box.region))
                    await agent.__aenter__()
                    agents[box.device_id] = agent
                for event in box.events:
                    agent.record(event)
                recorded += len(box.events)
                if recorded % 2000 < len(box.events):
                    await asyncio.sleep(0)  # let the agents publish while we simulate
            progress.put(("day", share, day, recorded))
        while not all(a.spool_empty for a in agents.values()):
            await asyncio.gather(*(a.drain(5.0) for a in agents.values() if not a.spool_empty))
            progress.put(("drain", share, sum(not a.spool_empty for a in agents.values()), recorded))
    finally:
        await asyncio.gather(*(a.aclose(0) for a in agents.values()))
    stats = [a.stats for a in agents.values()]
    return {"devices": len(agents), "events": recorded, "published": sum(s.events_published for s in stats),
            "batches": sum(s.batches_published for s in stats), "rejected": sum(s.rejected for s in stats),
            "dropped": sum(a.spool.dropped_events for a in agents.values())}


def _share_main(plan: FleetPlan, share: int, spool_root: str, progress: Any, results: Any) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a connection and a spool file per box
    import uvloop

    results.put((share, uvloop.run(_run_share(plan, share, Path(spool_root), progress))))


def run_fleet(plan: FleetPlan, *, on_progress: Any = None) -> dict[str, int]:
    """Run the whole fleet to the end: every event simulated, published and acknowledged."""
    with tempfile.TemporaryDirectory(prefix="stb-fleet-") as tmp:
        spool_root = plan.spool_root or tmp
        ctx = mp.get_context("spawn")
        progress, results = ctx.Queue(), ctx.Queue()
        procs = [ctx.Process(target=_share_main, args=(plan, i, spool_root, progress, results),
                             name=f"fleet-{i}") for i in range(plan.processes)]
        for p in procs:
            p.start()
        done: dict[int, dict[str, int]] = {}
        while len(done) < plan.processes:
            try:
                share, stats = results.get(timeout=0.2)
                done[share] = stats
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    for p in procs:
                        p.kill()
                    failed = dead[0]
                    raise RuntimeError(f"fleet process {failed.name} failed with exit code {failed.exitcode}") from None
            while True:
                try:
                    update = progress.get_nowait()
                except queue.Empty:
                    break
                if on_progress:
                    on_progress(update)
        for p in procs:
            p.join(30)
    total = {k: sum(s[k] for s in done.values()) for k in next(iter(done.values()))}
    return total


def today_utc() -> dt.date:
    return dt.datetime.fromtimestamp(time.time(), dt.UTC).date()
