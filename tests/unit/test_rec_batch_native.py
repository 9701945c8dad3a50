"""The native batch stages (candidates, profiles, answers, the two-stage ranking) answer exactly as
the numpy stages and `Engine.recommend` do, and refuse indexes out of range."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import serve_model
from recommender import artifact, batch, batchnative, scorerank
from recommender.batch import Query, recommend_batch
from recommender.engine import Answer, Snapshot, best_airings
from recommender.model import ContentModel, UserTable
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import DAY_MS
from recommender.signal import Watched
from tests.unit.test_rec_batch import ENGINE
from tests.unit.test_rec_scorerank import Args

GUIDE = serve_model.Guide(start_ms=1_800_000_000_000 // DAY_MS * DAY_MS, days=2, channels=30)
HOUSEHOLDS = 400
OVERLAY_ONLY = HOUSEHOLDS + 77


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """A served-shape model with a fold-in overlay: household 5 in both tables (the overlay's
    vectors win), OVERLAY_ONLY in the overlay alone; households above HOUSEHOLDS are cold. Every
    household (cold ones too) has watched a third of the guide's programmes (exclude_watched bites)."""
    folder: Path = tmp_path_factory.mktemp("native") / "models"
    serve_model.publish(folder, serve_model.users(np.random.default_rng(2), HOUSEHOLDS), 150, GUIDE, seed=4)
    rng = np.random.default_rng(8)
    overlay = UserTable(np.asarray([5, OVERLAY_ONLY], np.uint64), rng.standard_normal((2, 64)).astype(np.float32),
                        np.asarray([4, 6 + 1, 6 + 5], np.int64), rng.standard_normal((3, 64)).astype(np.float32))
    snap = Snapshot.from_artifact(artifact.load(folder)).with_overlay(overlay)
    hh = np.arange(1, HOUSEHOLDS + 600, dtype=np.uint64)
    programmes = np.unique(snap.schedule.programme_id)
    pairs = (hh[:, None] + programmes[None, :]) % np.uint64(3) == 0
    who, what = np.nonzero(pairs)
    return dataclasses.replace(snap, watched=Watched.from_pairs(hh[who], programmes[what]))


def _edges(s: Schedule) -> list[int]:
    """Times at and around the schedule's first start and last stop (empty and partial windows)."""
    first, last = s.span
    return [first - DAY_MS, first - 60_000, first, first + 1, last - 60_000, last - 1, last, last + DAY_MS]


@st.composite
def query_lists(draw: st.DrawFn, sched: Schedule) -> list[Query]:
    out = []
    for _ in range(draw(st.integers(1, 6))):
        hh = draw(st.sampled_from([5, OVERLAY_ONLY, 3, HOUSEHOLDS + 500]) | st.integers(1, HOUSEHOLDS + 40))
        at = draw(st.sampled_from(_edges(sched)) | st.integers(*sched.span))
        channels = draw(st.sampled_from([[], [1], [2, 3, 5], list(range(1, 31)), [999], [7, 999], [3, 100_000]]))
        out.append(Query(hh, draw(st.sampled_from([0, 1, 3, 10, 100])), at, draw(st.sampled_from([1, 15, 180, 1440])),
                         channels, draw(st.booleans())))
    return out


def _key(a: Answer) -> list[tuple[int, int, int, int, int, str]]:
    return [(i.programme_id, i.content_id, i.channel_id, i.start_ms, i.stop_ms, i.reason) for i in a.items]


def _same(a: Answer | Exception, b: Answer | Exception) -> bool:
    assert isinstance(a, Answer) and isinstance(b, Answer)
    return _key(a) == _key(b) and bool(np.allclose([i.score for i in a.items], [i.score for i in b.items],
                                                   rtol=1e-5, atol=1e-6))


def test_the_extension_is_built() -> None:
    assert scorerank.AVAILABLE


@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(data=st.data())
def test_native_numpy_and_the_engine_answer_alike(snap: Snapshot, data: st.DataObject) -> None:
    qs = data.draw(query_lists(snap.schedule))
    now = GUIDE.start_ms
    native = recommend_batch(ENGINE, snap, qs, now)
    numpy = recommend_batch(ENGINE, snap, qs, now, native=False)
    for q, a, b in zip(qs, native, numpy, strict=True):
        alone = ENGINE.recommend(snap, q.household_id, q.k, q.at_ms, q.window_minutes, q.channel_ids,
                                 q.exclude_watched, now_ms=now)
        assert _same(a, b) and _same(a, alone), q
        single = recommend_batch(ENGINE, snap, [q], now)[0]  # whatever it is batched with: bit for bit
        assert isinstance(single, Answer) and isinstance(a, Answer) and single.items == a.items


@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(data=st.data())
def test_candidates_and_profiles_are_the_numpy_ones(snap: Snapshot, data: st.DataObject) -> None:
    qs = data.draw(query_lists(snap.schedule))
    c = batch._check(ENGINE, qs, GUIDE.start_ms, [None] * len(qs))
    cand, bounds, dps = batchnative.candidates(ENGINE, snap, c.t0, c.t1, c.channels, np.asarray(c.exclude, bool),
                                               c.household)
    ref, seg = batch.candidates(ENGINE, snap, c)
    assert cand.tolist() == ref.tolist()
    assert bounds.tolist() == np.searchsorted(seg, np.arange(len(qs) + 1)).tolist()
    assert dps.tolist() == ENGINE.dayparts.of_ms(np.maximum(snap.schedule.start_ms[ref], c.t0[seg])).tolist()
    prof, personal = batchnative.profiles(snap, c.household)
    ref_prof, ref_personal = batch.profiles(snap, c.household)
    assert personal.tolist() == ref_personal.tolist()
    assert prof.tobytes() == ref_prof.tobytes()  # bit for bit: float32 as numpy rounds it


def test_without_the_extension_the_numpy_stages_answer(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    qs = [Query(hh, 10, GUIDE.start_ms + DAY_MS // 3, 180, [1, 2, 3] if hh % 2 else (), hh % 3 == 0)
          for hh in (5, OVERLAY_ONLY, 3, 4, HOUSEHOLDS + 500, 6)]
    native = recommend_batch(ENGINE, snap, qs, GUIDE.start_ms)
    monkeypatch.setattr(scorerank, "AVAILABLE", False)  # as when `recommender._scorerank` failed to import
    monkeypatch.setattr(batchnative, "_native", None)   # (nothing native may be called)
    assert all(_same(a, b) for a, b in zip(native, recommend_batch(ENGINE, snap, qs, GUIDE.start_ms), strict=True))


def _unsorted(snap: Snapshot) -> Snapshot:
    """The same watched programmes and history, rows stored in reverse: the kernels may not
    assume sorted rows (they search sorted ones, sort or scan the others)."""
    w, seen = snap.watched, snap.seen.tocsr()
    rev = np.concatenate([w.programme_ids[a:b][::-1] for a, b in zip(w.indptr[:-1], w.indptr[1:], strict=True)])
    indices = np.concatenate([seen.indices[a:b][::-1] for a, b in zip(seen.indptr[:-1], seen.indptr[1:],
                                                                       strict=True)])
    data = np.concatenate([seen.data[a:b][::-1] for a, b in zip(seen.indptr[:-1], seen.indptr[1:], strict=True)])
    unsorted = sp.csr_matrix((data, indices, seen.indptr), shape=seen.shape)
    unsorted.has_sorted_indices = False
    return dataclasses.replace(snap, watched=Watched(w.household_ids, w.indptr, rev.astype(np.uint64)), seen=unsorted)


def test_unsorted_rows_give_the_same_answers(snap: Snapshot) -> None:
    other = _unsorted(snap)
    rng = np.random.default_rng(5)
    qs = [Query(int(hh), 10, GUIDE.start_ms + int(at), 1440, (), True)
          for hh, at in zip(rng.integers(1, HOUSEHOLDS, 40), rng.integers(0, DAY_MS, 40), strict=True)]
    got = recommend_batch(ENGINE, other, qs, GUIDE.start_ms)
    ref = recommend_batch(ENGINE, snap, qs, GUIDE.start_ms, native=False)
    assert all(_same(a, b) for a, b in zip(got, ref, strict=True))
    assert any("personal:watched_before" in (i.reason for i in a.items) for a in got if isinstance(a, Answer))


@st.composite
def crowded(draw: st.DrawFn) -> tuple[Snapshot, Args]:
    """Long windows of a few contents (many airings each, tied scores, NaN-scored contents): the
    streamed best-of-group needs several passes, and NaNs come last."""
    n, f, n_req = draw(st.integers(50, 400)), 4, draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = np.sort(rng.integers(0, 30, n)) * 60_000
    content = rng.integers(0, draw(st.sampled_from([3, 12, 40])), n).astype(np.uint64)
    sched = Schedule(rng.integers(1, 3, n).astype(np.uint32), start, start + 3_600_000,
                     rng.integers(1, 1000, n).astype(np.uint64), content, 3_600_000)
    model = ContentModel()
    model.dayparts, model.content_ids = 3, np.arange(1, 30, dtype=np.uint64)
    factors = (rng.integers(-2, 3, (29, f)) / 2).astype(np.float32)
    factors[rng.random(29) < draw(st.sampled_from([0.0, 0.2]))] = np.nan
    model.item_factors = factors
    rows, known = model.item_rows(sched.content_id)
    pop = Popularity(np.arange(1, 40, dtype=np.uint64), rng.choice([0.0, 0.5], 39), np.asarray([1, 2], np.uint32),
                     np.zeros((2, 3)))
    snap = cast(Snapshot, SimpleNamespace(schedule=sched, model=model, popularity=pop, airing_rows=rows,
                                          airing_known=known))
    windows = [np.arange(n) if rng.random() < 0.5 else np.flatnonzero(rng.random(n) < 0.7) for _ in range(n_req)]
    cand = np.concatenate(windows).astype(np.int64)
    seg = np.repeat(np.arange(n_req), [len(w) for w in windows])
    ks = np.asarray([draw(st.sampled_from([1, 2, 5, 20])) for _ in range(n_req)], np.int64)
    personal = np.asarray([draw(st.booleans()) for _ in range(n_req)], bool)
    return snap, (cand, seg, np.searchsorted(seg, np.arange(n_req + 1)), rng.integers(0, 3, len(cand)).astype(np.int8),
                  (rng.integers(-2, 3, (n_req * 3, f)) / 2).astype(np.float32), personal, ks)


@settings(derandomize=True, database=None, max_examples=80, deadline=None)
@given(crowded())
def test_the_streamed_ranking_is_exact_with_repeats_ties_and_nans(
        world: tuple[Snapshot, Args]) -> None:
    snap, args = world
    cand, _, bounds, _, _, personal, ks = args
    _, _, picked = scorerank.score_rank(snap, *args, native=True)
    ref_score, ref_known, ref_picked = scorerank.score_rank(snap, *args, native=False)
    for i, (got, ref) in enumerate(zip(picked, ref_picked, strict=True)):
        s = slice(bounds[i], bounds[i + 1])
        alone = best_airings(snap.schedule, cand[s], ref_score[s], ref_known[s] if personal[i] else None, int(ks[i]))
        assert got.tolist() == alone.tolist() == ref.tolist()


def test_stage_kernels_refuse_indexes_out_of_range(snap: Snapshot) -> None:
    a = batchnative._arrays(snap)
    one, hh = np.ones(1, np.int64), np.asarray([7], np.uint64)
    ok_chan = (np.zeros(2, np.int64), np.zeros(0, np.uint32))
    hours = np.zeros(24, np.int8)

    def cands(chan_off: np.ndarray, chans: np.ndarray, indptr: np.ndarray, hours: np.ndarray = hours) -> None:
        w = (np.asarray([7], np.uint64), indptr, np.asarray([1, 2], np.uint64))
        batchnative._native.candidates(one * GUIDE.start_ms, one * GUIDE.start_ms + 1, chan_off, chans,
                                       np.ones(1, bool), hh, *w, *a.schedule, hours, np.zeros(2, np.int64), 0, 1, 0)

    cands(*ok_chan, np.asarray([0, 2], np.int64))
    bad_cands: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (np.asarray([0, 5], np.int64), np.zeros(2, np.uint32), np.asarray([0, 2], np.int64)),  # offsets past chans
        (np.asarray([1, 0], np.int64), np.zeros(2, np.uint32), np.asarray([0, 2], np.int64)),  # decreasing
        (*ok_chan, np.asarray([0, 3], np.int64)), (*ok_chan, np.asarray([2, 1], np.int64))]    # watched row
    for bad in bad_cands:
        with pytest.raises(ValueError, match="out of range"):
            cands(*bad)
    with pytest.raises(ValueError):
        cands(*ok_chan, np.asarray([0, 2], np.int64), np.full(24, -1, np.int8))

    f = snap.model.item_factors.shape[1]
    out, personal = np.zeros((6, f), np.float32), np.zeros(1, bool)
    table = (np.asarray([7], np.uint64), np.zeros((0, f), np.float32), np.zeros(0, np.int64),
             np.zeros((0, f), np.float32))
    with pytest.raises(ValueError, match="out of range"):  # an id without its factor row
        batchnative._native.profiles(hh, *table, *a.users, out, personal, f, 6, 0.5)
    table = (np.asarray([7], np.uint64), np.zeros((1, f), np.float32), np.asarray([7 * 0 + 2], np.int64),
             np.zeros((0, f), np.float32))
    with pytest.raises(ValueError, match="out of range"):  # a daypart key without its factor row
        batchnative._native.profiles(hh, *table, *a.users, out, personal, f, 6, 0.5)

    def answers(out: int, count: int, cand: int, indptr: np.ndarray) -> None:
        items = np.zeros(count, np.int64)
        batchnative._native.answers(one * out, one * count, one, np.asarray([0, 1], np.int64), one * cand,
                                    np.ones(1, bool), np.zeros(1), np.ones(1, bool), np.asarray([1], np.uint64),
                                    np.asarray([1], np.uint64), indptr, np.zeros(1, np.int32), a.seen[2],
                                    a.content_id, items, np.zeros(count), np.zeros(count, np.uint8), 1)

    answers(0, 1, 0, np.asarray([0, 1], np.int32))
    bad_answers: list[tuple[int, int, int, np.ndarray]] = [
        (1, 1, 0, np.asarray([0, 1], np.int32)), (0, 2, 0, np.asarray([0, 1], np.int32)),  # position, count
        (0, 1, len(snap.schedule), np.asarray([0, 1], np.int32)), (0, 1, 0, np.asarray([0, 2], np.int32))]
    for args in bad_answers:
        with pytest.raises(ValueError):
            answers(*args)
