"""Thompson sampling of variants: no data, evidence, the floor, exact proportions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from marketing.allocation import assign_variants, seed_for, thompson_shares


def test_no_data_gives_equal_shares() -> None:
    shares = thompson_shares({"a": 0, "b": 0, "c": 0}, {}, seed=1)
    assert shares == {"a": pytest.approx(1 / 3), "b": pytest.approx(1 / 3), "c": pytest.approx(1 / 3)}
    assert list(shares) == ["a", "b", "c"]
    assert thompson_shares({}, {}, seed=1) == {}


def test_identical_evidence_gives_identical_shares() -> None:
    shares = thompson_shares({"a": 200, "b": 200, "c": 200}, {"a": 20, "b": 20, "c": 5}, seed=3)
    assert shares["a"] == shares["b"] > shares["c"]


def test_best_variant_takes_the_wave_as_evidence_grows() -> None:
    little = thompson_shares({"a": 20, "b": 20}, {"a": 2, "b": 1}, floor=0.05, seed=7)
    much = thompson_shares({"a": 1000, "b": 1000}, {"a": 100, "b": 50}, floor=0.05, seed=7)
    assert 0.5 < little["a"] < much["a"]
    assert much["a"] >= 0.9
    assert much["b"] == pytest.approx(0.05)           # the loser keeps exactly the floor
    assert sum(much.values()) == pytest.approx(1.0)


def test_floor_holds_for_every_variant_and_shares_sum_to_one() -> None:
    sent = {"a": 5000, "b": 5000, "c": 5000, "d": 5000}
    converted = {"a": 900, "b": 400, "c": 300, "d": 100}
    for floor in (0.0, 0.05, 0.1, 0.25):
        shares = thompson_shares(sent, converted, floor=floor, seed=11)
        assert min(shares.values()) >= floor - 1e-12
        assert sum(shares.values()) == pytest.approx(1.0)
    assert thompson_shares(sent, converted, floor=0.0, seed=11)["d"] == 0.0
    # a floor that cannot hold for every variant (0.3 x 4 > 1) is not applied
    assert thompson_shares(sent, converted, floor=0.3, seed=11)["d"] == 0.0


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="converted"):
        thompson_shares({"a": 10}, {"a": 11}, seed=0)
    with pytest.raises(ValueError, match="floor"):
        thompson_shares({"a": 10}, {"a": 1}, floor=1.0, seed=0)


def test_shares_are_deterministic_given_the_seed() -> None:
    sent, converted = {"a": 100, "b": 120}, {"a": 9, "b": 10}
    assert thompson_shares(sent, converted, seed=5) == thompson_shares(sent, converted, seed=5)
    assert thompson_shares(sent, converted, seed=5) != thompson_shares(sent, converted, seed=6)


def test_assign_variants_exact_proportions_shuffled_and_deterministic() -> None:
    picks = assign_variants([0.5, 0.3, 0.2], 10_001, seed=42)
    counts = np.bincount(picks, minlength=3)
    assert counts.sum() == 10_001 and counts.tolist() == [5001, 3000, 2000]   # largest remainder: a gets the odd one
    assert np.array_equal(picks, assign_variants([0.5, 0.3, 0.2], 10_001, seed=42))
    assert not np.array_equal(picks, assign_variants([0.5, 0.3, 0.2], 10_001, seed=43))
    assert not np.array_equal(picks, np.sort(picks))                          # shuffled, not in blocks
    assert assign_variants({"a": 2 / 3, "b": 1 / 3}, 3, seed=0).tolist().count(1) == 1
    assert assign_variants([1.0], 0, seed=0).shape == (0,)
    with pytest.raises(ValueError, match="shares"):
        assign_variants([0.0, 0.0], 5, seed=0)


def test_seed_for_is_stable_and_distinct() -> None:
    assert seed_for("euro-final", 1) == seed_for("euro-final", 1)
    assert len({seed_for("euro-final", 1), seed_for("euro-final", 2), seed_for("euro-semi", 1)}) == 3
    assert 0 <= seed_for("euro-final", 1) < 2**63
    assert seed_for("euro-final", 1) == 6857358506023352800    # pinned: stable across processes


def test_by_wave_with_no_sends_is_equal_and_sums_to_one() -> None:
    from marketing.allocation import thompson_shares_by_wave

    assert thompson_shares_by_wave([], ["a", "b", "c"], seed=1) == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    shares = thompson_shares_by_wave([{"a": (100, 10), "b": (100, 2)}], ["a", "b", "c"], seed=1)
    assert sum(shares.values()) == pytest.approx(1.0) and min(shares.values()) >= 0.05 - 1e-12


def test_by_wave_compares_variants_within_each_wave_not_pooled() -> None:
    """Simpson's paradox: `a` wins both waves, but most of its sends went to the weak later wave, so
    pooled counts (a 68/1400 = 4.9 %, b 41/600 = 6.8 %) would pick `b`."""
    from marketing.allocation import thompson_shares, thompson_shares_by_wave

    strata = [{"a": (500, 50), "b": (500, 40)}, {"a": (900, 18), "b": (100, 1)}]
    by_wave = thompson_shares_by_wave(strata, ["a", "b"], floor=0.05, seed=3)
    pooled = thompson_shares({"a": 1400, "b": 600}, {"a": 68, "b": 41}, floor=0.05, seed=3)
    assert by_wave["a"] > 0.8 and pooled["b"] > 0.8


def test_by_wave_refuses_impossible_counts() -> None:
    from marketing.allocation import thompson_shares_by_wave

    with pytest.raises(ValueError):
        thompson_shares_by_wave([{"a": (10, 11)}], ["a"], seed=1)
