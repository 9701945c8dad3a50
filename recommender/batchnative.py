"""The batch stages around score-and-rank in C (`recommender/_stages.c`), for `recommend_batch`.

    cand, bounds, dps = candidates(engine, snap, t0, t1, channels, exclude, households)
    prof, personal = profiles(snap, households)
    airings, scores, codes = answers(snap, out, counts, ks, bounds, cand, known, score, personal, households)

Each answers exactly what its numpy counterpart in recommender/batch.py does (`candidates` plus
`Dayparts.of_ms`, `profiles`, `_reasons` with the answered items gathered), in one call for the
whole batch instead of ~10-20 small numpy calls each. The snapshot's arrays are put in the
kernels' dtypes once per snapshot. Only used when `scorerank.AVAILABLE`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender.engine import COLD_START, PERSONAL, POPULAR, WATCHED_BEFORE, Engine, Snapshot
from recommender.model import UserTable
from recommender.scorerank import _native

REASONS = (PERSONAL, WATCHED_BEFORE, POPULAR, COLD_START)  # by the kernel's reason code
_NO_CHANNELS = np.zeros(0, np.uint32)


def _table(t: UserTable | None, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if t is None:
        return np.zeros(0, np.uint64), np.zeros((0, f), np.float32), np.zeros(0, np.int64), np.zeros((0, f), np.float32)
    c = np.ascontiguousarray
    return (c(t.household_ids, np.uint64), c(t.factors, np.float32), c(t.dp_keys, np.int64),
            c(t.dp_factors, np.float32))


@dataclass(frozen=True)
class _Arrays:
    """A snapshot's arrays as the kernels take them (contiguous, of their dtypes)."""

    snap: Snapshot
    watched: tuple[np.ndarray, np.ndarray, np.ndarray]
    schedule: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]   # start, stop, channel, programme
    content_id: np.ndarray
    overlay: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    users: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    seen: tuple[np.ndarray, np.ndarray, np.ndarray]                  # indptr, indices, history content ids
    seen_rows: int

    @classmethod
    def of(cls, snap: Snapshot) -> _Arrays:
        c, s, w, f = np.ascontiguousarray, snap.schedule, snap.watched, snap.model.item_factors.shape[1]
        return cls(snap, (c(w.household_ids, np.uint64), c(w.indptr, np.int64), c(w.programme_ids, np.uint64)),
                   (c(s.start_ms, np.int64), c(s.stop_ms, np.int64), c(s.channel_id, np.uint32),
                    c(s.programme_id, np.uint64)), c(s.content_id, np.uint64), _table(snap.overlay, f),
                   _table(snap.model.users, f),
                   (_index(snap.seen.indptr), _index(snap.seen.indices), c(snap.history.content_ids, np.uint64)),
                   snap.seen.shape[0])


def _index(x: np.ndarray) -> np.ndarray:
    """int32 or int64 as they are (the kernel reads both: no copy of a large CSR), else int64."""
    return np.ascontiguousarray(x, x.dtype if x.dtype in (np.dtype(np.int32), np.dtype(np.int64)) else np.int64)


_last: _Arrays | None = None  # the snapshot in use (a new one replaces it)


def _arrays(snap: Snapshot) -> _Arrays:
    global _last
    last = _last
    if last is None or last.snap is not snap:
        last = _last = _Arrays.of(snap)
    return last


@functools.lru_cache(maxsize=8)
def _hours(table: tuple[int, ...]) -> np.ndarray:
    return np.asarray(table, np.int8)


def candidates(engine: Engine, snap: Snapshot, t0: np.ndarray, t1: np.ndarray,
               channels: Sequence[np.ndarray | None], exclude: np.ndarray,
               households: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(airing indexes, bounds, daypart of each): request r's are [bounds[r], bounds[r + 1]),
    ascending; `channels[r]` sorted uint32 or None; `exclude` bool per request."""
    a = _arrays(snap)
    listed = [ch for ch in channels if ch is not None]
    chans = np.concatenate(listed).astype(np.uint32, copy=False) if listed else _NO_CHANNELS
    off = np.zeros(len(channels) + 1, np.int64)
    if listed:
        np.cumsum([0 if ch is None else len(ch) for ch in channels], out=off[1:])
    bounds = np.empty(len(channels) + 1, np.int64)
    cand, dps = _native.candidates(t0, t1, off, chans, exclude, households, *a.watched, *a.schedule,
                                   _hours(engine.dayparts.hour_table), bounds, snap.schedule.max_length_ms,
                                   max(engine.s.min_remaining_s * 1000, 1), engine.dayparts.offset_ms)
    return np.frombuffer(cand, np.int64), bounds, np.frombuffer(dps, np.int8)


def profiles(snap: Snapshot, households: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((B * dayparts, f) scoring vectors, personal (B,)): `batch.profiles`."""
    a, model = _arrays(snap), snap.model
    d, f = model.dayparts, model.item_factors.shape[1]
    out = np.empty((len(households) * d, f), np.float32)
    personal = np.empty(len(households), np.bool_)
    _native.profiles(households, *a.overlay, *a.users, out, personal, f, d, float(model.blend))
    return out, personal


def answers(snap: Snapshot, out: np.ndarray, counts: np.ndarray, ks: np.ndarray, bounds: np.ndarray,
            cand: np.ndarray, known: np.ndarray, score: np.ndarray, personal: np.ndarray,
            households: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(airings, scores, reason codes) of every answered item, request after request
    (`scorerank.native_rank`'s out/counts), reasons by `REASONS`."""
    a = _arrays(snap)
    n = int(counts.sum())
    airings, scores, codes = np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.uint8)
    _native.answers(out, counts, ks, bounds, cand, known, score, personal, households, a.users[0], *a.seen,
                    a.content_id, airings, scores, codes, a.seen_rows)
    return airings, scores, codes
