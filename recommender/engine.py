"""Answers Recommend / SimilarProgrammes / Popular from one immutable Snapshot.

A Snapshot bundles one model version with the schedule in use and the fold-in overlay;
background tasks replace the whole Snapshot (one reference swap), a request reads it once.
Everything here is vectorised over the window's airings: one `searchsorted` window lookup,
one (contents x dayparts) matrix product, then a sort of the ~8k best-scored airings only to
keep the best airing per content (the whole window when that cannot be proved the same).
Per-request work was measured to dominate serving (benchmarks/serve.py): content rows of
the airings are resolved once per Snapshot, popularity and reasons only where needed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from recommender.artifact import Artifact
from recommender.dayparts import Dayparts
from recommender.errors import InvalidArgument
from recommender.model import ContentModel, UserTable
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import ServeSettings
from recommender.signal import Viewing, Watched

MIN_PLAUSIBLE_MS = 946_684_800_000    # 2000-01-01: smaller values are seconds, not milliseconds
MAX_AHEAD_MS = 400 * 86_400_000
MAX_CHANNELS = 10_000

PERSONAL = "personal"
WATCHED_BEFORE = "personal:watched_before"
POPULAR = "popular"
COLD_START = "cold_start:popular"
SIMILAR = "similar"


@dataclass(frozen=True)
class Snapshot:
    version: str
    meta: dict[str, Any]
    model: ContentModel
    popularity: Popularity
    watched: Watched
    history: Viewing
    seen: sp.csr_matrix          # households x contents of `history`: raw watched sums
    schedule: Schedule
    overlay: UserTable | None = None
    # Per airing of `schedule`: its content's row in the model's factors and whether the model
    # knows the content; resolved once per snapshot, not by a search per request.
    airing_rows: np.ndarray = field(init=False, repr=False, compare=False)
    airing_known: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows, known = self.model.item_rows(self.schedule.content_id)
        object.__setattr__(self, "airing_rows", rows)
        object.__setattr__(self, "airing_known", known)

    @classmethod
    def from_artifact(cls, a: Artifact, schedule: Schedule | None = None) -> Snapshot:
        return cls(a.version, a.meta, a.model, a.popularity, a.watched, a.history,
                   a.seen if a.seen is not None else a.history.household_raw(),
                   schedule if schedule is not None else a.schedule)

    def with_schedule(self, schedule: Schedule) -> Snapshot:
        return dataclasses.replace(self, schedule=schedule)

    def with_overlay(self, overlay: UserTable | None) -> Snapshot:
        return dataclasses.replace(self, overlay=overlay)


class Item(NamedTuple):  # a tuple: built 10x per request, a frozen dataclass cost 3 us each
    programme_id: int
    content_id: int
    channel_id: int
    start_ms: int
    stop_ms: int
    score: float
    reason: str


@dataclass(frozen=True)
class Answer:
    items: list[Item]
    model_version: str
    request_id: str


def _request_id() -> str:
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex (which costs ~5x more)


class Engine:
    def __init__(self, serve: ServeSettings, dayparts: Dayparts) -> None:
        self.s = serve
        self.dayparts = dayparts

    # --- argument checks ------------------------------------------------------------------

    def _k(self, k: int) -> int:
        if k == 0:
            return self.s.default_k
        if not 1 <= k <= self.s.max_k:
            raise InvalidArgument("k", f"must be 1..{self.s.max_k} (0 = {self.s.default_k}), got {k}")
        return k

    def _at(self, at_ms: int, now_ms: int) -> int:
        if at_ms == 0:
            return now_ms
        if at_ms < MIN_PLAUSIBLE_MS:
            raise InvalidArgument("at_unix_ms", f"{at_ms} is not a unix time in milliseconds "
                                                f"(0 = now)")
        if at_ms > now_ms + MAX_AHEAD_MS:
            raise InvalidArgument("at_unix_ms", f"{at_ms} is more than 400 days ahead")
        return at_ms

    def _window_ms(self, minutes: int) -> int:
        if minutes == 0:
            minutes = self.s.default_window_minutes
        if not 1 <= minutes <= self.s.max_window_minutes:
            raise InvalidArgument("window_minutes", f"must be 1..{self.s.max_window_minutes}, got {minutes}")
        return minutes * 60_000

    @staticmethod
    def _channels(channel_ids: Sequence[int]) -> np.ndarray | None:
        if not len(channel_ids):
            return None
        if len(channel_ids) > MAX_CHANNELS:
            raise InvalidArgument("channel_ids", f"at most {MAX_CHANNELS} channels")
        return np.unique(np.asarray(channel_ids, dtype=np.uint32))

    # --- the three questions --------------------------------------------------------------

    def recommend(self, snap: Snapshot, household_id: int, k: int = 0, at_ms: int = 0,
                  window_minutes: int = 0, channel_ids: Sequence[int] = (), exclude_watched: bool = False,
                  now_ms: int | None = None) -> Answer:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        if household_id <= 0:
            raise InvalidArgument("household_id", "required (a positive household id)")
        k, t0 = self._k(k), self._at(at_ms, now_ms)
        t1 = t0 + self._window_ms(window_minutes)
        channels = self._channels(channel_ids)
        sched = snap.schedule
        cand = sched.window(t0, t1, channels, self.s.min_remaining_s * 1000)
        if exclude_watched and len(cand):
            seen = snap.watched.of(household_id)
            if len(seen):
                cand = cand[~np.isin(sched.programme_id[cand], seen)]
        dps = self.dayparts.of_ms(np.maximum(sched.start_ms[cand], t0))
        contents = sched.content_id[cand]
        scores = self._scores(snap, household_id, cand, dps)
        if scores is None:
            return self._ranked(snap, cand, snap.popularity.scores(contents, sched.channel_id[cand], dps),
                                None, k, _same(COLD_START))
        known = ~np.isnan(scores)
        primary = scores.astype(np.float64)
        unknown = np.flatnonzero(~known)
        if len(unknown):  # popularity only where the model cannot score (elementwise: same values)
            primary[unknown] = snap.popularity.scores(contents[unknown], sched.channel_id[cand[unknown]],
                                                      dps[unknown])
        return self._ranked(snap, cand, primary, known, k,
                            lambda best: self._reasons(snap, household_id, contents[best], known[best]))

    def popular(self, snap: Snapshot, at_ms: int = 0, window_minutes: int = 0,
                channel_ids: Sequence[int] = (), k: int = 0, now_ms: int | None = None) -> Answer:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        k, t0 = self._k(k), self._at(at_ms, now_ms)
        t1 = t0 + self._window_ms(window_minutes)
        sched = snap.schedule
        cand = sched.window(t0, t1, self._channels(channel_ids), self.s.min_remaining_s * 1000)
        dps = self.dayparts.of_ms(np.maximum(sched.start_ms[cand], t0))
        scores = snap.popularity.scores(sched.content_id[cand], sched.channel_id[cand], dps)
        return self._ranked(snap, cand, scores, None, k, _same(POPULAR))

    def similar(self, snap: Snapshot, content_id: int, k: int = 0, at_ms: int = 0,
                channel_ids: Sequence[int] = (), now_ms: int | None = None) -> Answer:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        if content_id <= 0:
            raise InvalidArgument("content_id", "required (a positive content id)")
        k, t0 = self._k(k), self._at(at_ms, now_ms)
        ids, sims = snap.model.similar_items(content_id, k)
        sched = snap.schedule
        nxt = sched.next_airings(ids, t0, self._channels(channel_ids), self.s.min_remaining_s * 1000)
        items = []
        for cid, sim, a in zip(ids.tolist(), sims.tolist(), nxt.tolist(), strict=True):
            if a >= 0:
                items.append(Item(int(sched.programme_id[a]), cid, int(sched.channel_id[a]),
                                  int(sched.start_ms[a]), int(sched.stop_ms[a]), float(sim), SIMILAR))
            else:
                items.append(Item(0, cid, 0, 0, 0, float(sim), SIMILAR))
        return Answer(items, snap.version, _request_id())

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _scores(snap: Snapshot, household_id: int, cand: np.ndarray, dps: np.ndarray) -> np.ndarray | None:
        """`ContentModel.recommend` for the airings `cand`, with the snapshot's content rows."""
        profile = snap.model.profile(household_id, snap.overlay)
        if profile is None:
            return None
        return snap.model.score_rows(profile, snap.airing_rows[cand], snap.airing_known[cand], dps)

    def _reasons(self, snap: Snapshot, household_id: int, contents: np.ndarray, known: np.ndarray) -> list[str]:
        """Reasons of the answered airings only (k of them, not the whole window)."""
        reasons = [PERSONAL if kn else POPULAR for kn in known.tolist()]
        row = snap.model.users.row(household_id)
        if row >= 0 and row < snap.seen.shape[0]:
            lo, hi = snap.seen.indptr[row], snap.seen.indptr[row + 1]
            seen_ids = set(snap.history.content_ids[snap.seen.indices[lo:hi]].tolist())
            for i, (content, kn) in enumerate(zip(contents.tolist(), known.tolist(), strict=True)):
                if kn and content in seen_ids:
                    reasons[i] = WATCHED_BEFORE
        return reasons

    def _ranked(self, snap: Snapshot, cand: np.ndarray, scores: np.ndarray, known: np.ndarray | None,
                k: int, reasons: Callable[[np.ndarray], list[str]]) -> Answer:
        sched = snap.schedule
        best = best_airings(sched, cand, scores, known, k)
        a = cand[best]
        items = [Item(*fields) for fields in zip(
            sched.programme_id[a].tolist(), sched.content_id[a].tolist(), sched.channel_id[a].tolist(),
            sched.start_ms[a].tolist(), sched.stop_ms[a].tolist(), np.asarray(scores, dtype=np.float64)[best].tolist(),
            reasons(best), strict=True)]
        return Answer(items, snap.version, _request_id())


def _same(reason: str) -> Callable[[np.ndarray], list[str]]:
    return lambda best: [reason] * len(best)


def best_airings(sched: Schedule, cand: np.ndarray, scores: np.ndarray, known: np.ndarray | None,
                 k: int) -> np.ndarray:
    """Positions in `cand` of the best airing of each content, top k: contents the model knows
    by score, then the others by their (popularity) score; ties go to the earlier airing."""
    if not len(cand):
        return np.zeros(0, dtype=np.int64)
    content = sched.content_id[cand]
    key = np.where(content != 0, content, sched.programme_id[cand])  # unknown programmes stand alone
    group = np.zeros(len(cand), np.int8) if known is None else (~known).astype(np.int8)
    neg = -np.asarray(scores, dtype=np.float64)
    top = _top_first(key, sched.start_ms[cand], neg, group, k)
    if top is not None:
        return top
    return _first_of_keys(np.lexsort((sched.start_ms[cand], neg, group)), key, k)


def _top_first(key: np.ndarray, start: np.ndarray, neg: np.ndarray, group: np.ndarray, k: int) -> np.ndarray | None:
    """`best_airings` on the m = 8k best-scored airings of the first group only, when that is
    provably the same answer: k keys found there, the k-th strictly better than every airing
    left out (those all sort after it). None otherwise (the caller sorts the whole window)."""
    first = np.flatnonzero(group == 0)
    m = 8 * k
    if len(first) <= m:
        return None
    part = np.sort(first[np.argpartition(neg[first], m)[:m]])  # ascending: the same final tie-break
    bound = neg[part].max()  # every airing left out has neg >= bound
    picked = _first_of_keys(part[np.lexsort((start[part], neg[part]))], key, k)
    if len(picked) < k or neg[picked[-1]] >= bound:
        return None
    return picked


def _first_of_keys(order: np.ndarray, key: np.ndarray, k: int) -> np.ndarray:
    """The first position of each key along `order`, for the first k keys."""
    picked: list[int] = []
    taken: set[int] = set()
    step = max(4 * k, 64)
    for lo in range(0, len(order), step):
        chunk = order[lo:lo + step]
        for pos, key_ in zip(chunk.tolist(), key[chunk].tolist(), strict=True):
            if key_ not in taken:
                taken.add(key_)
                picked.append(pos)
                if len(picked) == k:
                    return np.asarray(picked, dtype=np.int64)
    return np.asarray(picked, dtype=np.int64)
