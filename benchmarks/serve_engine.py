"""The serve benchmark's engine-only figure: CPU per Recommend of `recommend_batch` in-process.

The same model artifact and request mix as the gRPC runs, scored without gRPC: a call alone
through `Engine.recommend` ("1 alone") and through `recommend_batch` ("1"), and batches of
8 / 32 / 64 through `recommend_batch`, so the engine's share of a served call can be set beside
the null handler's per-call CPU (the gRPC stack's cost) measured in the same run. CPU time of
this thread, not wall time: the figure does not count other processes on the shared cores, only
cache pressure from them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from benchmarks import serve_client
from recommender import artifact
from recommender.batch import Query, recommend_batch
from recommender.dayparts import Dayparts
from recommender.engine import Engine, Snapshot
from recommender.settings import DAY_MS, DaypartSettings, ServeSettings

BATCHES = (1, 8, 32, 64)
ALONE = "1 alone"  # the key of `Engine.recommend`'s figure


def engine_cpu_ms(model_dir: Path, base: serve_client.Load, calls: int = 4096) -> dict[str, float]:
    """{"1 alone" or a batch size: engine CPU ms per call} over `calls` requests of the benchmark's mix."""
    snap = Snapshot.from_artifact(artifact.load(model_dir))
    engine = Engine(ServeSettings(), Dayparts.from_settings(DaypartSettings()))
    reqs = serve_client.requests(replace(base, inflight=1))
    queries = [Query(r.household_id, r.k, r.at_unix_ms, r.window_minutes, list(r.channel_ids), r.exclude_watched)
               for r in reqs]
    now = base.guide_start_ms + DAY_MS
    out: dict[str, float] = {}
    for key, size in ((ALONE, 1), *((str(b), b) for b in BATCHES)):
        batches = [queries[i:i + size] for i in range(0, min(calls, len(queries)) - size + 1, size)]
        _score(engine, snap, batches[:8], now, key == ALONE)  # warm the caches and the code paths
        t = time.thread_time()
        _score(engine, snap, batches, now, key == ALONE)
        out[key] = round((time.thread_time() - t) / (len(batches) * size) * 1e3, 4)
    return out


def _score(engine: Engine, snap: Snapshot, batches: list[list[Query]], now: int, alone: bool) -> None:
    for batch in batches:
        if alone:
            q = batch[0]
            engine.recommend(snap, q.household_id, q.k, q.at_ms, q.window_minutes, q.channel_ids, q.exclude_watched,
                             now_ms=now)
        else:
            recommend_batch(engine, snap, batch, now)
