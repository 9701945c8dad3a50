"""The native score-and-rank kernel answers exactly as the numpy path and `best_airings` do."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import serve_model
from recommender import artifact, scorerank
from recommender.batch import Query, recommend_batch
from recommender.engine import Answer, Snapshot, best_airings
from recommender.model import ContentModel, UserTable
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import DAY_MS
from tests.unit.test_rec_batch import ENGINE

DAYPARTS = 3
# score_rank's arrays after the snapshot: cand, seg, bounds, dps, profiles, personal, ks
Args = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
KNOWN = np.asarray([2, 3, 5, 7], np.uint64)  # contents the model knows; 1, 4, 6 it does not; 0 = no content


def test_the_extension_is_built() -> None:
    assert scorerank.AVAILABLE, "recommender._scorerank did not compile: pip install -e . with gcc and Python headers"


def _halves(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Multiples of 0.5 in [-2, 2]: dot products are exact, so distinct contents tie often."""
    return rng.integers(-4, 5, shape).astype(np.float32) / 2


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Snapshot, Args]:
    """A schedule with repeated contents, programme ids that collide with content ids and tied
    start times; a popularity table with tied scores; a batch of personal and cold requests
    with windows from empty to the whole schedule and k from 1 to beyond the window. Sizes
    are drawn, values come from a drawn seed (fast: a few draws an example)."""
    n, f, n_req = draw(st.integers(0, 40)), draw(st.sampled_from([1, 3, 8, 13])), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = np.sort(rng.integers(0, 7, n)) * 60_000
    sched = Schedule(rng.integers(1, 4, n).astype(np.uint32), start, start + 3_600_000,
                     rng.integers(1, 10, n).astype(np.uint64), rng.integers(0, 8, n).astype(np.uint64), 3_600_000)
    model = ContentModel()
    model.dayparts, model.content_ids, model.item_factors = DAYPARTS, KNOWN, _halves(rng, (len(KNOWN), f))
    pop = Popularity(np.arange(1, 8, dtype=np.uint64), rng.choice([0.0, 0.25, 0.5], 7), np.asarray([1, 2], np.uint32),
                     rng.choice([0.0, 0.5], (2, DAYPARTS)))
    rows, known = model.item_rows(sched.content_id)
    snap = SimpleNamespace(schedule=sched, model=model, popularity=pop, airing_rows=rows, airing_known=known)
    windows = [np.flatnonzero(rng.random(n) < draw(st.sampled_from([0.0, 0.3, 1.0]))) for _ in range(n_req)]
    cand = np.concatenate([np.zeros(0, np.int64), *windows]).astype(np.int64)
    seg = np.repeat(np.arange(n_req), [len(w) for w in windows])
    ks = np.asarray([draw(st.integers(1, 12)) for _ in range(n_req)], np.int64)
    personal = np.asarray([draw(st.booleans()) for _ in range(n_req)], bool)
    args = (cand, seg, np.searchsorted(seg, np.arange(n_req + 1)), rng.integers(0, DAYPARTS, len(cand)).astype(np.int8),
            _halves(rng, (n_req * DAYPARTS, f)), personal, ks)
    return cast(Snapshot, snap), args


def assert_scores(score: np.ndarray, ref: np.ndarray, bounds: np.ndarray, picked: list[np.ndarray],
                  rtol: float, atol: float) -> None:
    """The kernel's scores equal numpy's where it computed them (NaN: popularity it never needed),
    and it computed every answered one."""
    done = ~np.isnan(score) | np.isnan(ref)
    assert np.allclose(score[done], ref[done], rtol=rtol, atol=atol, equal_nan=True)
    assert all(done[bounds[i] + p].all() for i, p in enumerate(picked))


@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(worlds())
def test_the_kernel_ranks_as_numpy_and_best_airings(world: tuple[Snapshot, Args]) -> None:
    snap, args = world
    cand, _, bounds, _, _, personal, ks = args
    score, known, picked = scorerank.score_rank(snap, *args, native=True)
    ref_score, ref_known, ref_picked = scorerank.score_rank(snap, *args, native=False)
    assert np.array_equal(known, ref_known)
    assert_scores(score, ref_score, bounds, picked, rtol=1e-6, atol=0)
    assert len(picked) == len(ref_picked) == len(ks)
    for i, (got, ref) in enumerate(zip(picked, ref_picked, strict=True)):
        s = slice(bounds[i], bounds[i + 1])
        alone = best_airings(snap.schedule, cand[s], ref_score[s], ref_known[s] if personal[i] else None, int(ks[i]))
        assert got.tolist() == ref.tolist() == alone.tolist()


def test_a_long_window_is_selected_in_rounds_and_stays_exact() -> None:
    """Thousands of airings of a few contents: the first rounds find fewer than k keys."""
    rng = np.random.default_rng(4)
    n, f = 5000, 16
    start = np.sort(rng.integers(0, 500, n)) * 60_000
    content = rng.choice(np.asarray([0, *range(1, 30)], np.uint64), n, p=[0.05] + [0.95 / 29] * 29)
    sched = Schedule(rng.integers(1, 3, n).astype(np.uint32), start, start + 3_600_000,
                     rng.integers(1, 60, n).astype(np.uint64), content, 3_600_000)
    model = ContentModel()
    model.dayparts, model.content_ids = DAYPARTS, np.arange(1, 25, dtype=np.uint64)
    model.item_factors = rng.standard_normal((24, f)).astype(np.float32)
    rows, known = model.item_rows(sched.content_id)
    pop = Popularity(np.arange(1, 30, dtype=np.uint64), rng.random(29), np.asarray([1, 2], np.uint32),
                     rng.random((2, DAYPARTS)))
    snap = cast(Snapshot, SimpleNamespace(schedule=sched, model=model, popularity=pop, airing_rows=rows,
                                          airing_known=known))
    cand = np.concatenate([np.arange(n), np.arange(0, n, 3)]).astype(np.int64)
    seg = np.repeat([0, 1], [n, len(range(0, n, 3))])
    args = (cand, seg, np.asarray([0, n, len(cand)]), rng.integers(0, DAYPARTS, len(cand)).astype(np.int8),
            rng.standard_normal((2 * DAYPARTS, f)).astype(np.float32), np.asarray([True, True]),
            np.asarray([40, 2], np.int64))
    score, _, picked = scorerank.score_rank(snap, *args, native=True)
    ref_score, _, ref_picked = scorerank.score_rank(snap, *args, native=False)
    assert [len(p) for p in picked] == [40, 2]  # all 29 + programme keys of the unknown ones: 40 found
    assert all(a.tolist() == b.tolist() for a, b in zip(picked, ref_picked, strict=True))
    assert_scores(score, ref_score, args[2], picked, rtol=1e-6, atol=1e-6)


def test_bad_indexes_raise_instead_of_reading_out_of_bounds() -> None:
    sched = Schedule(np.ones(2, np.uint32), np.asarray([0, 1], np.int64), np.asarray([5, 5], np.int64),
                     np.asarray([1, 2], np.uint64), np.asarray([1, 2], np.uint64), 5)
    rows, factors, prof = np.asarray([0, 7], np.int64), np.ones((2, 4), np.float32), np.ones((DAYPARTS, 4), np.float32)

    def call(cand: list[int], bounds: list[int], dps: list[int], rows: np.ndarray, stage: int = 1,
             out: int = 0) -> None:
        c = np.asarray(cand, np.int64)
        scorerank._native.score_rank(c, np.asarray(bounds, np.int64), np.asarray(dps, np.int8), np.ones(2, bool),
                                     np.ones(len(c), bool), np.ones(1, bool), np.zeros(len(c)), np.ones(1, bool),
                                     np.ones(1, np.int64), rows, factors, prof, sched.content_id, sched.programme_id,
                                     sched.start_ms, np.full(1, out, np.int64), np.ones(1, np.int64), 4, DAYPARTS,
                                     stage)

    call([0], [0, 1], [2], rows)
    call([0], [0, 1], [2], rows, stage=2)
    for bad in (([5], [0, 1], [0], rows), ([1], [0, 1], [0], rows), ([0], [0, 1], [3], rows), ([0], [0, 2], [0], rows),
                ([0], [0, 1], [0], rows[:1])):
        with pytest.raises(ValueError):
            call(*bad)
    with pytest.raises(ValueError, match="stage 1's answer"):  # stage 2 reads stage 1's positions back
        call([0], [0, 1], [0], rows, stage=2, out=1)
    with pytest.raises(ValueError):
        call([0], [0, 1], [0], rows, stage=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    folder: Path = tmp_path_factory.mktemp("scorerank") / "models"
    guide = serve_model.Guide(start_ms=1_800_000_000_000 // DAY_MS * DAY_MS, days=2, channels=30)
    serve_model.publish(folder, serve_model.users(np.random.default_rng(2), 500), 200, guide, seed=4)
    snap = Snapshot.from_artifact(artifact.load(folder))
    rng = np.random.default_rng(8)
    overlay = UserTable(np.asarray([5, 577], np.uint64), rng.standard_normal((2, 64)).astype(np.float32),
                        np.asarray([4, 6 + 1], np.int64), rng.standard_normal((2, 64)).astype(np.float32))
    return snap.with_overlay(overlay)


def test_recommend_batch_answers_the_same_with_either_path(small: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Known, overlay-only, overlay-first and cold households; channel lists, exclusion, k up to 100."""
    start = small.schedule.span[0]
    rng = np.random.default_rng(1)
    qs = [Query(int(hh), int(k), start + int(at), int(w), ch, bool(ex)) for hh, k, at, w, ch, ex in zip(
        [5, 577, 3, 900, *rng.integers(1, 560, 60).tolist()], [10, 10, 100, 3, *rng.choice([0, 1, 10, 100], 60)],
        rng.integers(0, DAY_MS, 64), rng.choice([15, 180, 1440], 64),
        [[], [1, 2, 3], *([] if rng.random() < 0.7 else rng.choice(30, 5).tolist() for _ in range(62))],
        rng.random(64) < 0.2, strict=True)]
    native = recommend_batch(ENGINE, small, qs, start)
    reference = recommend_batch(ENGINE, small, qs, start, native=False)
    reasons = {i.reason for a in native if isinstance(a, Answer) for i in a.items}
    assert {"cold_start:popular", "popular", "personal", "personal:watched_before"} <= reasons
    for a, b in zip(native, reference, strict=True):
        assert isinstance(a, Answer) and isinstance(b, Answer)
        assert [i[:5] + i[6:] for i in a.items] == [i[:5] + i[6:] for i in b.items]
        assert np.allclose([i.score for i in a.items], [i.score for i in b.items], rtol=1e-6, atol=1e-7)


def test_without_the_extension_numpy_answers_and_it_is_logged_once(caplog: pytest.LogCaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n, f = 50, 4
    start = np.sort(rng.integers(0, 100, n)) * 60_000
    sched = Schedule(np.ones(n, np.uint32), start, start + 600_000, np.arange(1, n + 1, dtype=np.uint64),
                     rng.integers(0, 8, n).astype(np.uint64), 600_000)
    model = ContentModel()
    model.dayparts, model.content_ids, model.item_factors = DAYPARTS, KNOWN, rng.random((4, f)).astype(np.float32)
    rows, known = model.item_rows(sched.content_id)
    snap = cast(Snapshot, SimpleNamespace(schedule=sched, model=model, popularity=Popularity.empty(DAYPARTS),
                                          airing_rows=rows, airing_known=known))
    args = (np.arange(n, dtype=np.int64), np.zeros(n, np.int64), np.asarray([0, n]), np.zeros(n, np.int8),
            rng.random((DAYPARTS, f)).astype(np.float32), np.asarray([True]), np.asarray([5], np.int64))
    expected = scorerank.score_rank(snap, *args)[2]
    try:
        with monkeypatch.context() as m:
            m.setitem(sys.modules, "recommender._scorerank", None)  # the import fails: not built
            fallback = importlib.reload(scorerank)
            assert not fallback.AVAILABLE
            with caplog.at_level(logging.WARNING, logger="recommender.scorerank"):
                got = [fallback.score_rank(snap, *args)[2] for _ in range(3)]
    finally:
        importlib.reload(scorerank)
    assert all(g[0].tolist() == expected[0].tolist() for g in got)
    assert [r.getMessage()[:40] for r in caplog.records] == ["recommender._scorerank is not built (imp"]
    assert scorerank.AVAILABLE
