"""Recommend for many requests at once: every stage one pass over the whole batch.

    answers = recommend_batch(engine, snap, [Query(...), ...])   # Answer or the request's error

Serving a request costs ~60 small numpy calls (window lookup, entitlement and watched
filters, dayparts, profile, scoring, ranking, reasons); at ~1,000 candidate airings each is
dispatch-bound, so B requests done together cost little more than one. Candidates of all
requests are concatenated (grouped by request); scores are row dot products of content
factors and the request's daypart profile, which depend on nothing else in the batch, so a
request gets the same answer whatever it is batched with (`Engine.recommend` answers the same).

Every stage runs in C when the extension is built (`scorerank.AVAILABLE`): candidates,
profiles and answers in `recommender.batchnative`, scoring and ranking (the best airing per
content, top k, as `best_airings`) in `recommender.scorerank`, popularity only where it can
change an answer; a batch of one then costs about a quarter of `Engine.recommend`. Without
it the numpy stages below answer the same (`native=False` forces them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender import batchnative, scorerank
from recommender.engine import (
    COLD_START,
    PERSONAL,
    POPULAR,
    WATCHED_BEFORE,
    Answer,
    Engine,
    Item,
    Snapshot,
)
from recommender.errors import InvalidArgument
from recommender.model import UserTable
from recommender.schedule import member


@dataclass(frozen=True)
class Query:
    household_id: int
    k: int = 0
    at_ms: int = 0
    window_minutes: int = 0
    channel_ids: Sequence[int] = ()
    exclude_watched: bool = False


@dataclass
class _Checked:
    """The valid requests of a batch, as arrays (one entry per request)."""

    slot: list[int]            # position in the caller's list
    household: np.ndarray      # uint64
    k: np.ndarray              # int64
    t0: np.ndarray             # int64
    t1: np.ndarray
    channels: list[np.ndarray | None]
    exclude: list[bool]


def _check(engine: Engine, queries: Sequence[Query], now_ms: int,
           out: list[Answer | Exception | None]) -> _Checked:
    slot, hh, ks, t0s, t1s, chans, excl = [], [], [], [], [], [], []
    for i, q in enumerate(queries):
        try:
            if q.household_id <= 0:
                raise InvalidArgument("household_id", "required (a positive household id)")
            k, t0 = engine._k(q.k), engine._at(q.at_ms, now_ms)
            t1 = t0 + engine._window_ms(q.window_minutes)
            channels = engine._channels(q.channel_ids)
        except InvalidArgument as exc:
            out[i] = exc
            continue
        slot.append(i)
        hh.append(q.household_id)
        ks.append(k)
        t0s.append(t0)
        t1s.append(t1)
        chans.append(channels)
        excl.append(q.exclude_watched)
    return _Checked(slot, np.asarray(hh, np.uint64), np.asarray(ks, np.int64), np.asarray(t0s, np.int64),
                    np.asarray(t1s, np.int64), chans, excl)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated aranges [lo_i, hi_i) and the segment number of each element."""
    lens = np.maximum(hi - lo, 0)
    seg = np.repeat(np.arange(len(lo)), lens)
    starts = np.cumsum(lens) - lens
    return np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(lo - starts, lens), seg


def candidates(engine: Engine, snap: Snapshot, c: _Checked) -> tuple[np.ndarray, np.ndarray]:
    """(airing indexes, request of each): `Schedule.window` plus the entitlement and watched
    filters for every request at once; grouped by request, ascending within each."""
    sched = snap.schedule
    lo = np.searchsorted(sched.start_ms, c.t0 - sched.max_length_ms, side="left")
    hi = np.searchsorted(sched.start_ms, c.t1, side="left")
    idx, seg = _ranges(lo, hi)
    t0 = c.t0[seg]
    ok = (sched.start_ms[idx] >= t0) | (sched.stop_ms[idx] - t0 >= max(engine.s.min_remaining_s * 1000, 1))
    listed = [i for i, ch in enumerate(c.channels) if ch is not None]
    if listed:  # (request, channel) pairs as one sorted uint64 key
        has = np.zeros(len(c.channels), bool)
        has[listed] = True
        allowed = np.concatenate([(np.uint64(i) << np.uint64(32)) | c.channels[i].astype(np.uint64)  # type: ignore[union-attr]
                                  for i in listed])
        sub = np.flatnonzero(has[seg])
        keys = (seg[sub].astype(np.uint64) << np.uint64(32)) | sched.channel_id[idx[sub]].astype(np.uint64)
        ok[sub] &= member(keys, allowed)
    excluding = [i for i, e in enumerate(c.exclude) if e]
    if excluding:  # rare (a flag of the request): one isin per such request
        bounds = np.searchsorted(seg, np.arange(len(c.exclude) + 1))
        for i in excluding:
            seen = snap.watched.of(int(c.household[i]))
            if len(seen):
                a, b = bounds[i], bounds[i + 1]
                ok[a:b] &= ~np.isin(sched.programme_id[idx[a:b]], seen)
    return idx[ok], seg[ok]


def profiles(snap: Snapshot, households: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((B * dayparts, f) scoring vectors, known mask (B,)): `UserTable.profile` for every
    household of the batch, the fold-in overlay before the model's own table."""
    model = snap.model
    d, f = model.dayparts, model.item_factors.shape[1]
    out = np.zeros((len(households), d, f), np.float32)
    has = np.zeros(len(households), bool)
    for table in (snap.overlay, model.users):
        todo = np.flatnonzero(~has)
        if table is None or not len(todo) or not table.size:
            continue
        rows, found = _rows(table, households[todo])
        sel, rows = todo[found], rows[found]
        base = table.factors[rows]
        out[sel] = base[:, None, :]
        if model.blend > 0 and len(table.dp_keys):
            keys = (rows[:, None] * d + np.arange(d)[None, :]).ravel()
            pos = np.minimum(np.searchsorted(table.dp_keys, keys), len(table.dp_keys) - 1)
            hit = np.flatnonzero(table.dp_keys[pos] == keys)
            who, part = hit // d, hit % d
            out[sel[who], part] = (1 - model.blend) * base[who] + model.blend * table.dp_factors[pos[hit]]
        has[sel] = True
    return out.reshape(len(households) * d, f), has


def _rows(table: UserTable, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.minimum(np.searchsorted(table.household_ids, ids), table.size - 1)
    return pos.astype(np.int64), table.household_ids[pos] == ids


def _reasons(snap: Snapshot, households: np.ndarray, picked: list[np.ndarray], cand: np.ndarray,
             known: np.ndarray, personal: np.ndarray, bounds: np.ndarray) -> list[list[str]]:
    """Reasons of the answered airings (`Engine._reasons`), the watched-before lookup for the
    whole batch at once."""
    sched, users, seen = snap.schedule, snap.model.users, snap.seen
    hist_ids = snap.history.content_ids
    n, ncols = len(picked), max(len(hist_ids), 1)
    counts = [len(p) for p in picked]
    flat = np.concatenate([bounds[i] + p for i, p in enumerate(picked)]) if n else np.zeros(0, np.int64)
    seg = np.repeat(np.arange(n), counts)
    watched = np.zeros(len(flat), bool)
    if users.size and len(hist_ids):
        rows, found = _rows(users, households)
        found &= rows < seen.shape[0]
        look = np.flatnonzero(found[seg] & known[flat])
        if len(look):
            r = np.where(found, rows, 0)
            lo = np.where(found, seen.indptr[r], 0)
            hi = np.where(found, seen.indptr[np.minimum(r + 1, seen.shape[0])], 0)
            entries, owner = _ranges(lo, hi)  # each request's seen row, concatenated
            seen_keys = np.unique(owner.astype(np.int64) * ncols + seen.indices[entries])
            content = sched.content_id[cand[flat[look]]]
            col = np.minimum(np.searchsorted(hist_ids, content), len(hist_ids) - 1)
            watched[look] = (hist_ids[col] == content) & member(seg[look] * ncols + col, seen_keys)
    out: list[list[str]] = []
    ends = np.cumsum(counts)
    for i in range(n):
        a, b = int(ends[i]) - counts[i], int(ends[i])
        if not personal[i]:
            out.append([COLD_START] * (b - a))
        else:
            out.append([WATCHED_BEFORE if w else PERSONAL if kn else POPULAR
                        for w, kn in zip(watched[a:b].tolist(), known[flat[a:b]].tolist(), strict=True)])
    return out


def recommend_batch(engine: Engine, snap: Snapshot, queries: Sequence[Query], now_ms: int | None = None,
                    native: bool | None = None) -> list[Answer | Exception]:
    """`Engine.recommend` for every query: an Answer, or the InvalidArgument of that query.
    `native`: the C stages (default: when built) or numpy."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    out: list[Answer | Exception | None] = [None] * len(queries)
    c = _check(engine, queries, now, out)
    if c.slot:
        airings, scores, reasons, counts = (_native(engine, snap, c) if (scorerank.AVAILABLE if native is None
                                                                         else native) else _numpy(engine, snap, c))
        sched = snap.schedule
        items = list(map(Item, sched.programme_id[airings].tolist(), sched.content_id[airings].tolist(),
                         sched.channel_id[airings].tolist(), sched.start_ms[airings].tolist(),
                         sched.stop_ms[airings].tolist(), scores.tolist(), reasons))
        ids = os.urandom(16 * len(c.slot)).hex()  # request ids: one system call for the batch
        end = 0
        for i, (slot, n) in enumerate(zip(c.slot, counts, strict=True)):
            out[slot] = Answer(items[end:end + n], snap.version, ids[32 * i:32 * i + 32])
            end += n
    return [o if o is not None else RuntimeError("unanswered") for o in out]


def recommend_one(engine: Engine, snap: Snapshot, q: Query, now_ms: int | None = None) -> Answer:
    """One call, answered as it would be in any batch: the C stages when built (a batch of one
    costs a quarter of `Engine.recommend`), else `Engine.recommend` (cheaper than the numpy
    stages for one call). Raises the call's InvalidArgument."""
    if not scorerank.AVAILABLE:
        return engine.recommend(snap, q.household_id, q.k, q.at_ms, q.window_minutes, q.channel_ids,
                                q.exclude_watched, now_ms=now_ms)
    (answer,) = recommend_batch(engine, snap, [q], now_ms)
    if isinstance(answer, Exception):
        raise answer
    return answer


def _native(engine: Engine, snap: Snapshot, c: _Checked) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """(answered airings, their scores and reasons, answers per request): every stage in C."""
    excl = np.asarray(c.exclude, np.bool_)
    cand, bounds, dps = batchnative.candidates(engine, snap, c.t0, c.t1, c.channels, excl, c.household)
    prof, personal = batchnative.profiles(snap, c.household)
    score, known, picks, counts = scorerank.native_rank(snap, cand, bounds, dps, prof, personal, c.k)
    airings, scores, codes = batchnative.answers(snap, picks, counts, c.k, bounds, cand, known, score, personal,
                                                 c.household)
    return airings, scores, list(map(batchnative.REASONS.__getitem__, codes.tolist())), counts.tolist()


def _numpy(engine: Engine, snap: Snapshot, c: _Checked) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """`_native` with numpy stages (the extension is not built)."""
    cand, seg = candidates(engine, snap, c)
    dps = engine.dayparts.of_ms(np.maximum(snap.schedule.start_ms[cand], c.t0[seg]))
    prof, personal = profiles(snap, c.household)
    bounds = np.searchsorted(seg, np.arange(len(c.slot) + 1))
    score, known, picked = scorerank.score_rank(snap, cand, seg, bounds, dps, prof, personal, c.k, native=False)
    reasons = _reasons(snap, c.household, picked, cand, known, personal, bounds)
    flat = np.concatenate([bounds[i] + p for i, p in enumerate(picked)])
    return cand[flat], score[flat], [r for rs in reasons for r in rs], [len(p) for p in picked]
