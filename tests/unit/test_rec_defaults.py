"""Defaults that hold on sparse, long-spread viewing (issue 15): a household whose viewing is
all old must not fall to the cold-start answer, and popularity must not collapse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from recommender.dayparts import Dayparts
from recommender.model import ContentModel
from recommender.popularity import Popularity
from recommender.settings import DAY_MS, AlsSettings, DaypartSettings, IndexSettings, SignalSettings
from recommender.signal import Viewing, build_viewing

DAYPARTS = Dayparts.from_settings(DaypartSettings())
ALS = AlsSettings(factors=8, regularization=0.05, alpha=10.0, iterations=15, threads=1)
GROUPS, PER_GROUP, HOUSEHOLDS = 5, 8, 250
END_MS = 1_800_000_000_000


@dataclass(frozen=True)
class SparseWorld:
    """Households with one taste group each, a handful of views spread over two years; most
    were last active months before the data end (a public dataset's shape, not a TV panel's)."""

    household: np.ndarray
    content: np.ndarray
    ts_ms: np.ndarray
    share: np.ndarray
    group_of: np.ndarray   # per household (index = id - 1)
    last_ms: np.ndarray    # per household: its latest view

    def viewing(self, s: SignalSettings) -> Viewing:
        """What `signal.viewing_sql` aggregates (decayed share per household x content x daypart)."""
        t0 = END_MS - int(s.history_days * DAY_MS)
        ok = (self.ts_ms >= t0) & (self.ts_ms < END_MS)
        decay = 2.0 ** ((self.ts_ms[ok] - END_MS) / (s.half_life_days * DAY_MS))
        dp = DAYPARTS.of_ms(self.ts_ms[ok]).astype(np.int64)
        keys, inv = np.unique(np.stack([self.household[ok].astype(np.int64), self.content[ok].astype(np.int64), dp]),
                              axis=1, return_inverse=True)
        inv = inv.ravel()
        cols = {"household_id": keys[0].astype(np.uint64), "content_id": keys[1].astype(np.uint64),
                "daypart": keys[2], "raw": np.bincount(inv, weights=self.share[ok] * decay, minlength=keys.shape[1]),
                "zaps": np.zeros(keys.shape[1])}
        return build_viewing(cols, DAYPARTS.count, END_MS)


def sparse_world(seed: int = 5) -> SparseWorld:
    rng = np.random.default_rng(seed)
    hh, ct, ts, sh, groups, last = [], [], [], [], [], []
    for h in range(1, HOUSEHOLDS + 1):
        g = int(rng.integers(GROUPS))
        recent = h % 10 == 0  # a tenth still active in the last weeks: the data end is now
        end = END_MS - int((rng.uniform(1, 20) if recent else rng.uniform(70, 330)) * DAY_MS)
        n = int(rng.integers(3, 9))
        favourites = g * PER_GROUP + 1 + rng.choice(PER_GROUP, 3, replace=False)
        times = end - (rng.uniform(0, 120, n) * DAY_MS).astype(np.int64)
        times[0] = end
        hh += [h] * n
        ct += rng.choice(favourites, n).tolist()
        ts += times.tolist()
        sh += rng.uniform(0.5, 1.0, n).tolist()
        groups.append(g)
        last.append(end)
    return SparseWorld(np.asarray(hh, np.uint64), np.asarray(ct, np.uint64), np.asarray(ts, np.int64),
                       np.asarray(sh), np.asarray(groups), np.asarray(last, np.int64))


def dormant_top5_in_group(world: SparseWorld, s: SignalSettings) -> tuple[float, float]:
    """(share of households last active > 56 days ago that the model knows, share of those
    whose top 5 contents are all of their own group)."""
    model = ContentModel(ALS, DaypartSettings(), IndexSettings()).fit(world.viewing(s), s)
    contents = np.arange(1, GROUPS * PER_GROUP + 1, dtype=np.uint64)
    dormant = np.flatnonzero(world.last_ms < END_MS - 56 * DAY_MS) + 1
    known = hits = 0
    for h in dormant.tolist():
        scores = model.recommend(h, contents, np.full(len(contents), 4))
        if scores is None:
            continue
        known += 1
        top = contents[np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:5]]
        hits += bool(np.all((top - 1) // PER_GROUP == world.group_of[h - 1]))
    return known / len(dormant), hits / max(known, 1)


@pytest.fixture(scope="module")
def world() -> SparseWorld:
    return sparse_world()


def test_old_defaults_send_long_spread_households_to_cold_start(world: SparseWorld) -> None:
    known, _ = dormant_top5_in_group(world, SignalSettings(history_days=56.0, min_strength=0.0))
    assert known == 0.0   # all of them: the popular-now answer although their history is in the store


def test_new_defaults_recommend_from_old_history(world: SparseWorld) -> None:
    known, in_group = dormant_top5_in_group(world, SignalSettings())
    assert known == 1.0 and in_group >= 0.9


def test_a_wide_window_alone_is_not_enough(world: SparseWorld) -> None:
    """Decayed to ~0, old viewing weighs less than an unobserved cell: the lift is what makes
    the wide window work."""
    _, without_lift = dormant_top5_in_group(world, SignalSettings(min_strength=0.0))
    _, with_lift = dormant_top5_in_group(world, SignalSettings())
    assert with_lift >= without_lift + 0.15   # measured: 0.94 against 0.72


def test_popularity_keeps_ranking_when_recent_viewing_is_thin(world: SparseWorld) -> None:
    recent = world.ts_ms >= END_MS - 7 * DAY_MS  # what popular-now sees: a handful of views
    cols = {"content_id": world.content[recent], "channel_id": np.ones(int(recent.sum()), np.uint32),
            "daypart": DAYPARTS.of_ms(world.ts_ms[recent]).astype(np.int64), "audience": world.share[recent]}
    v = world.viewing(SignalSettings())
    pop = Popularity.from_columns(cols, DAYPARTS).with_history(v.content_ids, np.asarray(v.raw.sum(axis=0)).ravel())
    contents = np.arange(1, GROUPS * PER_GROUP + 1, dtype=np.uint64)
    scores = pop.scores(contents, np.ones(len(contents), np.uint32), np.full(len(contents), 4))
    assert len(np.unique(pop.content_ids)) < len(contents) // 2          # thin recently ...
    assert len(np.unique(scores)) == len(contents)                       # ... yet every content ranked
    recent_ids = set(np.unique(world.content[recent]).tolist())
    order = contents[np.argsort(-scores)]
    assert set(order[:len(recent_ids)].tolist()) == recent_ids           # recent audience still first
