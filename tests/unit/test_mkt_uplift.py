"""Treated vs holdout: Newcombe's worked examples, coverage in simulation, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from marketing.uplift import newcombe, uplift, wilson

# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score, no
# continuity correction): (x1, n1, x2, n2) -> 95 % limits of x1/n1 - x2/n2, to 4 decimals.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "limits"), NEWCOMBE_TABLE_II)
def test_newcombe_worked_examples(counts: tuple[int, int, int, int], limits: tuple[float, float]) -> None:
    lo, hi = newcombe(*counts)
    assert (round(lo, 4), round(hi, 4)) == limits


def test_uplift_fields_of_the_first_example() -> None:
    u = uplift(treated_n=70, treated_converted=56, holdout_n=80, holdout_converted=48)
    assert (u.treated_rate, u.holdout_rate) == (0.8, 0.6)
    assert u.absolute == pytest.approx(0.2)
    assert u.relative == pytest.approx(0.2 / 0.6)
    assert u.incremental == pytest.approx(0.2 * 70)
    assert u.ci95 is not None and u.ci95 == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_wilson_is_never_degenerate_at_the_edges() -> None:
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson(20, 20)
    assert 0.8 < lo < 0.9 and hi == 1.0


def test_edge_counts() -> None:
    none = uplift(500, 0, 100, 0)                     # nobody converted anywhere
    assert none.absolute == 0.0 and none.relative is None and none.incremental == 0.0
    assert none.ci95 is not None and none.ci95[0] < 0 < none.ci95[1]
    every = uplift(500, 500, 100, 100)                # everybody converted everywhere
    assert every.absolute == 0.0 and every.relative == 0.0
    assert every.ci95 is not None and every.ci95[0] < 0 < every.ci95[1]
    only_treated = uplift(100, 100, 100, 0)           # n/n against 0/n
    assert only_treated.ci95 is not None and only_treated.ci95[0] > 0.9 and only_treated.ci95[1] == pytest.approx(1.0)
    assert only_treated.relative is None              # no baseline rate to divide by


def test_no_control_group_gives_no_effect() -> None:
    u = uplift(1_000, 80, 0, 0)
    assert u.treated_rate == 0.08 and u.holdout_rate == 0.0
    assert (u.absolute, u.relative, u.ci95, u.incremental) == (None, None, None, None)
    assert uplift(0, 0, 0, 0).absolute is None


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="treated"):
        uplift(10, 11, 10, 1)
    with pytest.raises(ValueError, match="holdout"):
        uplift(10, 1, 10, -1)


def test_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(20261203)
    p_treated, p_holdout, n_treated, n_holdout = 0.06, 0.04, 1_800, 200   # a 10 % holdout, low rates
    draws = 400
    xt = rng.binomial(n_treated, p_treated, draws)
    xh = rng.binomial(n_holdout, p_holdout, draws)
    covered = 0
    for a, b in zip(xt, xh, strict=True):
        ci = uplift(n_treated, int(a), n_holdout, int(b)).ci95
        assert ci is not None
        covered += ci[0] <= p_treated - p_holdout <= ci[1]
    assert 0.92 <= covered / draws <= 0.98
