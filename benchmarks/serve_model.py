"""A synthetic but complete model artifact for the serve benchmark, published like `train` does.

Random factors stand in for ALS (serving cost does not depend on their values): household
vectors, 1-3 daypart sub-profiles each, the content factors and their FAISS index (flat below
20,000 contents, HNSW above, as trained). The guide is realistic in shape: every channel has a
line-up of recurring series (Zipf-popular contents, 2 % of them new to the model) airing
back to back in 30-60 minute slots for `days` days from `guide_start_ms`; every household has
viewing history and watched programmes (reasons, exclude_watched), popularity covers the
catalogue. The files are written by `recommender.artifact.publish`, so the real server loads
them exactly as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recommender import artifact
from recommender.index import ItemIndex
from recommender.model import ContentModel, UserTable, _normalised
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import DAY_MS, IndexSettings
from recommender.signal import Viewing, Watched

FACTORS = 64
DAYPARTS = 6
SLOT_MINUTES = (30, 45, 60)
LINEUP = 30            # distinct series per channel
HISTORY_PER_HOUSEHOLD = 4


@dataclass(frozen=True)
class Guide:
    """What a load generator needs to ask plausible questions."""

    start_ms: int
    days: int
    channels: int


def users(rng: np.random.Generator, households: int) -> UserTable:
    ids = np.arange(1, households + 1, dtype=np.uint64)
    per = rng.integers(1, 4, households)  # 1-3 dayparts with enough viewing for a sub-profile
    rows = np.repeat(np.arange(households, dtype=np.int64), per)
    dps = rng.integers(0, DAYPARTS, len(rows))
    keys = np.unique(rows * DAYPARTS + dps)
    return UserTable(ids, _factors(rng, households), keys, _factors(rng, len(keys)))


def _factors(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal((n, FACTORS), dtype=np.float32) * np.float32(0.1)).astype(np.float32)


def _zipf(rng: np.random.Generator, n: int) -> np.ndarray:
    w = 1.0 / (np.arange(n) + 10.0) ** 0.8
    return np.asarray(rng.permutation(w / w.sum()))


def schedule(rng: np.random.Generator, contents: int, guide: Guide, weights: np.ndarray) -> Schedule:
    slots = guide.days * 24 * 60 // min(SLOT_MINUTES) + 1
    dur = rng.choice(np.asarray(SLOT_MINUTES, dtype=np.int64) * 60_000, (guide.channels, slots))
    stop = guide.start_ms + np.cumsum(dur, axis=1)
    start = stop - dur
    lineup = rng.choice(contents, (guide.channels, LINEUP), p=weights) + 1
    new = rng.random(lineup.shape) < 0.02  # series the model has never seen
    lineup = np.where(new, contents + 1 + rng.integers(0, 1000, lineup.shape), lineup)
    content = np.take_along_axis(lineup, rng.integers(0, LINEUP, (guide.channels, slots)), axis=1)
    chan = np.repeat(np.arange(1, guide.channels + 1, dtype=np.uint32)[:, None], slots, axis=1)
    keep = start < guide.start_ms + guide.days * DAY_MS
    n = int(keep.sum())
    return Schedule.from_columns({"channel_id": chan[keep], "start_ms": start[keep], "stop_ms": stop[keep],
                                  "programme_id": np.arange(1, n + 1, dtype=np.uint64) + 10**7,
                                  "content_id": content[keep].astype(np.uint64)}, source="synthetic")


def history(rng: np.random.Generator, households: int, contents: int, weights: np.ndarray,
            ref_ms: int) -> Viewing:
    n = households * HISTORY_PER_HOUSEHOLD
    hh = np.repeat(np.arange(households, dtype=np.int64), HISTORY_PER_HOUSEHOLD)
    rows = hh * DAYPARTS + rng.integers(0, DAYPARTS, n)
    cols = rng.choice(contents, n, p=weights)
    raw = sp.csr_matrix((rng.random(n, dtype=np.float32) * 3, (rows, cols)),
                        shape=(households * DAYPARTS, contents))
    raw.sum_duplicates()
    zaps = sp.csr_matrix((households, contents), dtype=np.float32)
    return Viewing(np.arange(1, households + 1, dtype=np.uint64), np.arange(1, contents + 1, dtype=np.uint64),
                   DAYPARTS, raw, zaps, ref_ms)


def watched(rng: np.random.Generator, households: int, sched: Schedule) -> Watched:
    n = households * HISTORY_PER_HOUSEHOLD
    hh = np.repeat(np.arange(1, households + 1, dtype=np.uint64), HISTORY_PER_HOUSEHOLD)
    return Watched.from_pairs(hh, sched.programme_id[rng.integers(0, len(sched), n)])


def popularity(rng: np.random.Generator, contents: int, channels: int, weights: np.ndarray) -> Popularity:
    audience = np.where(rng.random(contents) < 0.7, weights, 0.0)  # 30 % not watched lately
    table = rng.random((channels, DAYPARTS))
    return Popularity(np.arange(1, contents + 1, dtype=np.uint64), audience / audience.sum(),
                      np.arange(1, channels + 1, dtype=np.uint32), table / table.sum())


def publish(model_dir: Path, table: UserTable, contents: int, guide: Guide, seed: int) -> str:
    """Write one version (households of `table`, `contents` contents) into model_dir; its name."""
    rng = np.random.default_rng(seed)
    model = ContentModel()
    model.content_ids = np.arange(1, contents + 1, dtype=np.uint64)
    model.item_factors = _factors(rng, contents)
    model.users = table
    model.index = ItemIndex.build(_normalised(model.item_factors), IndexSettings())
    weights = _zipf(rng, contents)
    sched = schedule(rng, contents, guide, weights)
    households = table.size
    data_end = guide.start_ms + DAY_MS
    meta = {"data_window_ms": [data_end - 56 * DAY_MS, data_end], "synthetic": True,
            "counts": {"households": households, "contents": contents, "airings": len(sched),
                       "daypart_profiles": len(table.dp_keys)},
            "index": {"kind": model.index.kind, "items": model.index.size}}
    version = artifact.new_version()
    art = artifact.Artifact(version, meta, model, popularity(rng, contents, guide.channels, weights), sched,
                            watched(rng, households, sched), history(rng, households, contents, weights, data_end))
    artifact.publish(model_dir, version, art.write, keep_versions=1)
    return version
