"""The serve benchmark's load generator: one call per client process (spawned pool).

Each process holds `inflight` Recommend calls outstanding over up to CONNECTIONS connections
(closed loop: a call is sent as soon as one returns) until `t_end`; calls that complete inside [t_start, t_end)
are measured (the time before t_start is warm-up). Times are CLOCK_MONOTONIC, shared by
every process on the machine. The client is grpc.aio on uvloop, `inflight` coroutines.

Requests are built in advance from a seed: a known household, k 10, window 180 min, a time
inside the guide (half in prime time 19-23 h, half at any hour), 20 % with an entitlement
list of 60 channels, 10 % with exclude_watched.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import uvloop

from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from recommender.settings import DAY_MS, HOUR_MS

POOL = 4096
CONNECTIONS = 4   # per client process (at most one per in-flight call)


@dataclass(frozen=True)
class Load:
    address: str
    inflight: int
    seed: int
    households: int
    guide_start_ms: int
    guide_days: int
    channels: int       # in the guide
    t_start: float
    t_end: float


def requests(load: Load) -> list[pb.RecommendRequest]:
    rng = np.random.default_rng(load.seed)
    day = rng.integers(0, load.guide_days - 1, POOL)  # the last day keeps a 3-hour window inside the guide
    prime = rng.random(POOL) < 0.5
    hour_ms = np.where(prime, rng.integers(19 * HOUR_MS, 23 * HOUR_MS, POOL), rng.integers(0, 24 * HOUR_MS, POOL))
    at = load.guide_start_ms + day * DAY_MS + hour_ms
    hh = rng.integers(1, load.households + 1, POOL)
    out = []
    for i in range(POOL):
        channels = (np.sort(rng.choice(load.channels, 60, replace=False) + 1).tolist()
                    if rng.random() < 0.2 else [])
        out.append(pb.RecommendRequest(household_id=int(hh[i]), k=10, at_unix_ms=int(at[i]), window_minutes=180,
                                       channel_ids=channels, exclude_watched=bool(rng.random() < 0.1)))
    return out


class Tally:
    """Latencies of the calls completed in the measured window, errors and empty answers."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.latencies: list[float] = []
        self.errors = 0
        self.empty = 0

    def record(self, sent: float, done: float, ok: bool, items: int) -> None:
        if not self.load.t_start <= done < self.load.t_end:
            return
        self.latencies.append(done - sent)
        self.errors += not ok
        self.empty += ok and items == 0


def measure(load: Load) -> dict[str, Any]:
    """Run one process's share of a level; its figures for the measured window."""
    reqs = requests(load)
    tally = Tally(load)
    cpu: dict[str, float] = {}
    uvloop.run(_aio(load, reqs, tally, cpu))
    return {"latencies": np.asarray(tally.latencies, dtype=np.float64), "errors": tally.errors,
            "empty": tally.empty, "cpu_s": cpu.get("end", 0.0) - cpu.get("start", 0.0)}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _aio(load: Load, reqs: list[pb.RecommendRequest], tally: Tally, cpu: dict[str, float]) -> None:
    # Several connections, each with a local subchannel pool (its own, never shared): the kernel
    # spreads *connections* over `serve --processes N` (SO_REUSEPORT), so one per client process
    # could land every call of a run on one serving process.
    channels = [grpc.aio.insecure_channel(load.address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, min(load.inflight, CONNECTIONS)))]
    stubs = [pb_grpc.RecommenderStub(channel) for channel in channels]
    try:
        async def caller(offset: int) -> None:
            stub = stubs[offset % len(stubs)]
            i = offset
            while (sent := time.monotonic()) < load.t_end:
                try:
                    resp = await stub.Recommend(reqs[i % POOL], timeout=30)
                    tally.record(sent, time.monotonic(), True, len(resp.items))
                except grpc.aio.AioRpcError:
                    tally.record(sent, time.monotonic(), False, 0)
                i += load.inflight

        async def marks() -> None:
            """CPU time of this process at t_start and t_end."""
            for mark, at in (("start", load.t_start), ("end", load.t_end)):
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                cpu[mark] = _cpu_s()

        await asyncio.gather(marks(), *(caller(j) for j in range(load.inflight)))
    finally:
        for channel in channels:
            await channel.close()

