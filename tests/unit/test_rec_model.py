"""ContentModel, ItemIndex and the confidence transform on the planted world (no store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.dayparts import Dayparts
from recommender.errors import UnknownContent
from recommender.index import ItemIndex
from recommender.model import ContentModel
from recommender.settings import AlsSettings, DaypartSettings, IndexSettings, SignalSettings
from recommender.signal import Viewing, Watched, build_viewing, fold_dayparts
from tests.unit.test_rec_planted import DAY_MS, FILLER, HOUR_MS, KIDS, PlantedWorld, planted_world, reference_viewing

# a 20-content catalogue: few factors and strong regularisation, or ALS reproduces every row exactly
ALS = AlsSettings(factors=8, regularization=5.0, alpha=2.0, iterations=10, threads=1)
DAYPARTS = Dayparts.from_settings(DaypartSettings())


@pytest.fixture(scope="module")
def world() -> PlantedWorld:
    return planted_world(households=96, days=14, seed=5)


@pytest.fixture(scope="module")
def viewing(world: PlantedWorld) -> Viewing:
    cols = reference_viewing(world, world.start_ms, world.end_ms, SignalSettings(), DAYPARTS)
    return build_viewing(cols, DAYPARTS.count, world.end_ms)


@pytest.fixture(scope="module")
def model(viewing: Viewing) -> ContentModel:
    return ContentModel(ALS, DaypartSettings(), IndexSettings()).fit(viewing, SignalSettings())


def test_planted_favourite_series_ranks_first_in_prime_time(world: PlantedWorld, model: ContentModel) -> None:
    contents = model.content_ids
    prime = np.full(len(contents), DAYPARTS.names.index("prime"))
    hits = 0
    for hh in world.households.tolist():
        scores = model.recommend(hh, contents, prime)
        assert scores is not None
        hits += int(contents[np.argmax(scores)]) == world.favourite[hh]
    assert hits / len(world.households) >= 0.9


def test_daypart_profile_puts_kids_first_in_the_afternoon(world: PlantedWorld, model: ContentModel) -> None:
    families = [hh for hh in world.households.tolist() if hh in world.kids]
    wins = 0
    afternoon = DAYPARTS.names.index("afternoon")
    for hh in families:
        pair = np.array([world.kids[hh], world.favourite[hh]], dtype=np.uint64)
        scores = model.recommend(hh, pair, np.array([afternoon, afternoon]))
        assert scores is not None
        wins += scores[0] > scores[1]
    assert wins / len(families) >= 0.9


def test_unknown_household_and_content(model: ContentModel) -> None:
    assert model.recommend(999_999, model.content_ids, np.zeros(len(model.content_ids), int)) is None
    some_hh = int(model.users.household_ids[0])
    scores = model.recommend(some_hh, np.array([1000, 77_777], np.uint64), np.array([4, 4]))
    assert scores is not None and np.isfinite(scores[0]) and np.isnan(scores[1])


def test_similar_items(model: ContentModel) -> None:
    ids, sims = model.similar_items(KIDS, 5)
    assert len(ids) == 5 and KIDS not in ids.tolist()
    assert np.all(np.diff(sims) <= 1e-6) and sims.max() <= 1.0 + 1e-5
    unit = model.item_factors / np.linalg.norm(model.item_factors, axis=1, keepdims=True)
    cosine = unit @ unit[np.searchsorted(model.content_ids, KIDS)]
    brute = model.content_ids[np.argsort(-cosine)][1:6]  # exact ranking without the query itself
    assert ids.tolist() == brute.tolist()
    with pytest.raises(UnknownContent):
        model.similar_items(424242, 5)


def test_save_load_roundtrip(model: ContentModel, tmp_path: Path) -> None:
    model.save(tmp_path)
    loaded = ContentModel.load(tmp_path)
    assert np.array_equal(loaded.content_ids, model.content_ids)
    assert np.array_equal(loaded.users.dp_keys, model.users.dp_keys)
    hh = int(model.users.household_ids[3])
    dps = np.arange(len(model.content_ids)) % DAYPARTS.count
    a, b = model.recommend(hh, model.content_ids, dps), loaded.recommend(hh, model.content_ids, dps)
    assert a is not None and b is not None
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert loaded.similar_items(KIDS, 3)[0].tolist() == model.similar_items(KIDS, 3)[0].tolist()


def test_fold_in_recovers_a_household_vector(world: PlantedWorld, viewing: Viewing, model: ContentModel) -> None:
    overlay = model.fold_in(viewing, SignalSettings())
    assert overlay.size == viewing.households
    contents = model.content_ids
    prime = np.full(len(contents), DAYPARTS.names.index("prime"))
    hh = int(world.households[7])
    scores = model.recommend(hh, contents, prime, overlay)
    assert scores is not None and int(contents[np.argmax(scores)]) == world.favourite[hh]


def test_index_kind_by_size() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 8)).astype(np.float32)
    flat = ItemIndex.build(vectors, IndexSettings(hnsw_min_items=1000))
    hnsw = ItemIndex.build(vectors, IndexSettings(hnsw_min_items=100))
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    q = vectors[:20]
    _, exact = flat.search(q, 10)
    _, approx = hnsw.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx, strict=True)])
    assert recall >= 0.95


def test_confidences_zap_negatives_and_log_scale() -> None:
    # 1 household, 3 contents: watched 2 shares of content 0, only zapped content 1, both for 2
    cols: dict[str, np.ndarray] = {
        "household_id": np.array([1, 1, 1], np.uint64), "content_id": np.array([10, 11, 12], np.uint64),
        "daypart": np.array([4, 4, 1], np.uint8), "raw": np.array([2.0, 0.0, 0.5]), "zaps": np.array([0.0, 3.0, 1.0])}
    v = build_viewing(cols, 6, 0)
    lin, _ = v.confidences(SignalSettings(log_scale=False))
    assert lin.toarray().tolist() == [[2.0, 0.0, 0.5]]
    log_, per_dp = v.confidences(SignalSettings(log_scale=True))
    np.testing.assert_allclose(log_.toarray()[0], [np.log1p(2.0), 0.0, np.log1p(0.5)], rtol=1e-6)
    assert per_dp.shape == (6, 3) and per_dp[4, 0] > 0 and per_dp[1, 2] > 0
    neg, _ = v.confidences(SignalSettings(log_scale=False, zap_negatives=True, zap_negative_weight=0.3))
    np.testing.assert_allclose(neg.toarray()[0], [2.0, -0.3, 0.5], rtol=1e-6)  # watched content 12 stays positive


def test_fold_dayparts_and_watched() -> None:
    raw = sp.csr_matrix(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert fold_dayparts(raw, 2).toarray().tolist() == [[3, 5, 7], [15, 17, 19]]
    w = Watched.from_pairs(np.array([5, 3, 5], np.uint64), np.array([9, 7, 8], np.uint64))
    assert w.of(5).tolist() == [8, 9] and w.of(3).tolist() == [7] and w.of(4).tolist() == []


def test_dayparts_in_numpy() -> None:
    t = 1_767_225_600_000  # midnight UTC
    names = [DAYPARTS.names[int(DAYPARTS.of_ms(t + h * HOUR_MS))] for h in (0, 2, 6, 12, 17, 20, 23)]
    assert names == ["late", "night", "morning", "daytime", "afternoon", "prime", "late"]
    shifted = Dayparts.from_settings(DaypartSettings(utc_offset_minutes=60))
    assert shifted.names[int(shifted.of_ms(t + 18 * HOUR_MS))] == "prime"  # 19:00 local
    assert int(DAYPARTS.of_ms(t - DAY_MS + 20 * HOUR_MS)) == DAYPARTS.names.index("prime")
    assert FILLER > KIDS
