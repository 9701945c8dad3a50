"""Measurements behind the recommender's design choices: `python -m recommender.bench [--quick]`.

1. window: scoring an EPG window's contents with numpy (gather + dot + top-k) against a FAISS
   flat index restricted by an ID selector;
2. index: exact inner product (IndexFlatIP) against HNSW32 by catalogue size (build time,
   query time, recall@20);
3. engine: `Engine.recommend` end to end (window lookup, scoring per daypart, best airing per
   content) on a synthetic model of 200k households x 20k contents and a 100-channel guide.

One thread everywhere (OPENBLAS_NUM_THREADS=1, faiss OpenMP at 1), as in serving.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable

import faiss
import numpy as np
import scipy.sparse as sp

from recommender.dayparts import Dayparts
from recommender.engine import Engine, Snapshot
from recommender.index import ItemIndex
from recommender.model import ContentModel, UserTable
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import DaypartSettings, IndexSettings, ServeSettings
from recommender.signal import Viewing, Watched

F = 64


def _per_call_ms(fn: Callable[..., object], args: tuple[object, ...], reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn(*args)
    return (time.perf_counter() - t) / reps * 1e3


def _numpy_top(items: np.ndarray, sub: np.ndarray, user: np.ndarray) -> np.ndarray:
    return np.argpartition(-(items[sub] @ user), 20)[:20]


def _faiss_top(index: faiss.Index, user: np.ndarray, params: faiss.SearchParameters) -> object:
    return index.search(user[None, :], 20, params=params)


def _searches(index: ItemIndex, queries: np.ndarray) -> None:
    for q in queries:
        index.search(q, 20)


def bench_window(rng: np.random.Generator) -> None:
    print("window scoring (ms per query, top 20)")
    for n_items in (20_000, 200_000):
        items = rng.standard_normal((n_items, F)).astype(np.float32)
        user = rng.standard_normal(F).astype(np.float32)
        flat = faiss.IndexFlatIP(F)
        flat.add(items)
        for m in (100, 1_000, 10_000):
            sub = np.sort(rng.choice(n_items, m, replace=False)).astype(np.int64)
            numpy_ms = _per_call_ms(_numpy_top, (items, sub, user), 2000)
            params = faiss.SearchParameters()
            params.sel = selector = faiss.IDSelectorBatch(sub)  # keep the selector alive
            faiss_ms = _per_call_ms(_faiss_top, (flat, user, params), 200)
            del selector
            print(f"  catalogue {n_items:>7}  window {m:>6}: numpy {numpy_ms:.4f}  faiss flat+selector {faiss_ms:.3f}")


def bench_index(rng: np.random.Generator, sizes: tuple[int, ...]) -> None:
    print("catalogue index: flat vs HNSW32 (efConstruction 80, efSearch 128), clustered unit vectors")
    for n in sizes:
        centres = rng.standard_normal((max(n // 200, 5), F)).astype(np.float32)
        vectors = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.standard_normal((n, F)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        queries = vectors[rng.integers(0, n, 200)]
        t = time.perf_counter()
        flat = ItemIndex.build(vectors, IndexSettings(hnsw_min_items=n + 1))
        flat_build = time.perf_counter() - t
        t = time.perf_counter()
        hnsw = ItemIndex.build(vectors, IndexSettings(hnsw_min_items=1))
        hnsw_build = time.perf_counter() - t
        flat_ms = _per_call_ms(_searches, (flat, queries[:50]), 1) / 50
        hnsw_ms = _per_call_ms(_searches, (hnsw, queries[:50]), 1) / 50
        _, exact = flat.search(queries, 20)
        _, approx = hnsw.search(queries, 20)
        recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(exact, approx, strict=True)])
        print(f"  {n:>7} items: flat build {flat_build * 1e3:7.1f} ms query {flat_ms:.3f} ms | "
              f"hnsw build {hnsw_build:6.2f} s query {hnsw_ms:.3f} ms recall@20 {recall:.3f}")


def synthetic_snapshot(rng: np.random.Generator, households: int, contents: int, channels: int) -> Snapshot:
    d = DaypartSettings()
    model = ContentModel(daypart=d)
    model.content_ids = np.arange(1, contents + 1, dtype=np.uint64)
    model.item_factors = (rng.standard_normal((contents, F)) * 0.1).astype(np.float32)
    hh = np.arange(1, households + 1, dtype=np.uint64)
    dp_keys = np.sort(rng.choice(households * 6, households * 2, replace=False)).astype(np.int64)
    model.users = UserTable(hh, (rng.standard_normal((households, F)) * 0.1).astype(np.float32), dp_keys,
                            (rng.standard_normal((len(dp_keys), F)) * 0.1).astype(np.float32))
    model.index = ItemIndex.build(model.item_factors, IndexSettings())
    t0 = 1_800_000_000_000
    slots = 48 * 3
    start = np.tile(t0 + np.arange(slots, dtype=np.int64) * 1_800_000, channels)
    chan = np.repeat(np.arange(1, channels + 1, dtype=np.uint32), slots)
    content = rng.integers(1, contents + 1, len(start)).astype(np.uint64)
    sched = Schedule.from_columns({"channel_id": chan, "start_ms": start, "stop_ms": start + 1_800_000,
                                   "programme_id": content * 1000 + 1, "content_id": content})
    pop = Popularity(model.content_ids, rng.random(contents), np.arange(1, channels + 1, dtype=np.uint32),
                     rng.random((channels, 6)))
    empty = sp.csr_matrix((households * 6, contents), dtype=np.float32)
    history = Viewing(hh, model.content_ids, 6, empty, sp.csr_matrix((households, contents), dtype=np.float32), 0)
    watched = Watched(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.uint64))
    return Snapshot("bench", {}, model, pop, watched, history, history.household_raw(), sched)


def bench_engine(rng: np.random.Generator, households: int) -> None:
    snap = synthetic_snapshot(rng, households, 20_000, 100)
    engine = Engine(ServeSettings(), Dayparts.from_settings(DaypartSettings()))
    at = 1_800_000_000_000 + 19 * 3_600_000
    ids = rng.integers(1, households + 1, 2000)
    for window in (60, 180, 720):
        times = []
        for hh in ids.tolist():
            t = time.perf_counter()
            engine.recommend(snap, hh, k=10, at_ms=at, window_minutes=window)
            times.append(time.perf_counter() - t)
        ms = np.asarray(times) * 1e3
        n = len(snap.schedule.window(at, at + window * 60_000))
        print(f"  Engine.recommend, {households} households x 20000 contents, window {window} min "
              f"({n} airings): p50 {np.percentile(ms, 50):.3f} ms  p99 {np.percentile(ms, 99):.3f} ms")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m recommender.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds)")
    args = p.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    bench_window(rng)
    bench_index(rng, (2_000, 10_000) if args.quick else (2_000, 10_000, 50_000, 200_000))
    print("engine")
    bench_engine(rng, 20_000 if args.quick else 200_000)


if __name__ == "__main__":
    main()
