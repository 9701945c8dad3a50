"""Churn model pieces without a store: metrics, calibration, time split, reasons, artifacts."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from crm.churn.artifact import CURRENT, load_current, publish
from crm.churn.evaluate import auc, average_precision, lift_at
from crm.churn.features import EXTRA, FEATURES, FeatureFrame
from crm.churn.model import ChurnModel, ModelError, platt_fit, sigmoid
from crm.churn.reasons import reasons
from crm.churn.train import feature_days
from crm.settings import ChurnSettings


def frame(x: np.ndarray, label: np.ndarray, day: int = 100, extra: dict[str, np.ndarray] | None = None) -> FeatureFrame:
    n = len(x)
    ex = {k: np.zeros(n) for k in EXTRA} | (extra or {})
    return FeatureFrame(np.arange(1, n + 1, dtype=np.uint64), np.full(n, day), x, ex, label.astype(np.int8),
                        np.zeros(n, dtype=np.int64))


def planted(n: int, seed: int, day: int) -> FeatureFrame:
    """Leavers have a low trend and many days since the last view; everything else is noise."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, len(FEATURES)))
    risk = -2.0 * x[:, FEATURES.index("trend_7_21")] + 1.0 * x[:, FEATURES.index("days_since_view")] - 3.5
    y = (r.random(n) < sigmoid(risk)).astype(np.int8)
    x[:, FEATURES.index("package")] = r.integers(0, 5, n)
    return frame(x, y, day)


def test_auc_ap_lift_match_brute_force() -> None:
    r = np.random.default_rng(1)
    y = (r.random(300) < 0.2).astype(float)
    s = np.round(r.normal(size=300) + y, 1)          # ties on purpose
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a, b in itertools.product(s[y > 0], s[y == 0])]
    assert auc(y, s) == pytest.approx(np.mean(pairs))
    assert np.isnan(auc(np.zeros(5), np.arange(5.0)))
    perfect = np.arange(10.0)
    assert average_precision((perfect >= 8).astype(float), perfect) == pytest.approx(1.0)
    assert lift_at((perfect >= 9).astype(float), perfect, 0.1) == pytest.approx(10.0)


def test_platt_is_calibrated_and_does_not_diverge() -> None:
    r = np.random.default_rng(2)
    z = r.normal(size=5000)
    y = (r.random(5000) < sigmoid(1.5 * z - 3)).astype(float)
    a, b = platt_fit(z, y)
    assert a == pytest.approx(1.5, abs=0.25) and b == pytest.approx(-3, abs=0.3)
    a, b = platt_fit(z * 1000 + 5000, y)      # badly scaled scores: still a sane fit
    assert np.isfinite([a, b]).all() and sigmoid(a * (z * 1000 + 5000) + b).mean() == pytest.approx(y.mean(), 0.05)
    a, b = platt_fit(np.r_[np.zeros(50), np.ones(5)], np.r_[np.zeros(50), np.ones(5)])   # separable
    assert np.isfinite([a, b]).all() and abs(a) < 100


def test_model_learns_planted_risk_and_is_calibrated_later() -> None:
    train, cal, test = planted(6000, 1, 100), planted(2000, 2, 107), planted(4000, 3, 140)
    model = ChurnModel.fit(train, cal, rounds=150)     # fewer rounds: the planted signal is plain
    p = model.predict(test)
    y = (test.label == 1).astype(float)
    assert auc(y, p) > 0.8
    assert p.mean() == pytest.approx(y.mean(), rel=0.2)
    contrib = model.contributions(test)
    assert contrib.shape == (len(test), len(FEATURES))
    top = np.argsort(-np.abs(contrib).mean(axis=0))[:2]
    assert {FEATURES[i] for i in top} == {"trend_7_21", "days_since_view"}
    with pytest.raises(ModelError, match="too few leavers"):
        ChurnModel.fit(frame(train.x[:50], np.zeros(50)), cal)
    files = model.to_files()
    again = ChurnModel.from_files(files["booster.txt"], files["model.json"])
    assert np.allclose(again.predict(test), p)


def test_feature_days_are_split_by_time() -> None:
    s = ChurnSettings()
    days = feature_days(200 - s.horizon_days, first_event=100, s=s, count=s.train_days)
    assert days == sorted(days) and days[-1] == 170 and np.all(np.diff(days) == s.stride_days)
    assert min(days) >= 100 + s.min_history_days - 1
    assert feature_days(120, first_event=100, s=s, count=5) == []


def test_reasons_in_words_most_important_first() -> None:
    n = 2
    x = np.zeros((n, len(FEATURES)))
    col = {f: i for i, f in enumerate(FEATURES)}
    x[:, col["minutes_day_7d"]], x[:, col["minutes_day_21d"]] = [38, 100], [100, 100]
    x[:, col["days_since_view"]] = [9, 0]
    x[:, col["tenure_days"]] = [200, 2000]
    x[:, col["short_share_7d"]] = [0.5, 0.1]
    extra = {"short_share_21d": np.array([0.3, 0.1]), "sessions_7d": np.array([3.0, 7.0]),
             "sessions_21d": np.array([21.0, 21.0])}
    f = frame(x, np.zeros(n), extra=extra)
    contrib = np.zeros((n, len(FEATURES)))
    contrib[0, col["trend_7_21"]] = 1.2                 # viewing
    contrib[0, col["days_since_view"]] = 0.8            # silence
    contrib[0, col["short_share_rise"]] = 0.3           # fragments
    contrib[0, col["tenure_days"]] = 0.1
    contrib[1, col["tenure_days"]] = -0.5               # nothing raised household 2's risk
    got = reasons(f, contrib, limit=3)
    assert got[0] == ["viewing down 62 % on the previous three weeks", "no viewing for 9 days",
                      "50 % of views under a minute (was 30 %)"]
    assert got[1] == []
    assert reasons(f, contrib, limit=1)[0] == ["viewing down 62 % on the previous three weeks"]


def test_reasons_word_short_sessions_and_unfinished_programmes() -> None:
    x = np.zeros((2, len(FEATURES)))
    col = {f: i for i, f in enumerate(FEATURES)}
    x[:, col["short_sessions_14d"]], x[:, col["short_sessions_prev_28d"]] = [6, 1], [0, np.nan]
    x[:, col["full_share_14d"]], x[:, col["full_share_usual"]] = [0.31, 0.5], [0.52, 0.5]
    x[:, col["power_cycles_7d"]] = [2.0, 1.5]
    contrib = np.zeros((2, len(FEATURES)))
    contrib[:, col["short_sessions_day_7d"]] = [0.9, 0.9]      # cycles
    contrib[:, col["full_drop_usual"]] = [0.4, 0.4]            # fragments
    got = reasons(frame(x, np.zeros(2)), contrib, limit=2)
    assert got[0] == ["switched the box on for only a few minutes 6 times in two weeks (was 0)",
                      "watched 31 % of programmes to the end (was 52 %)"]
    # one short session is no pattern, and an unchanged share is not worded as a fall
    assert got[1] == ["box switched on 1.5 times a viewing day (was 0.0)", "0 % of views under a minute"]


def test_artifacts_are_published_atomically_and_pruned(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="run `python -m crm churn train` first"):
        load_current(tmp_path)
    model = ChurnModel.fit(planted(3000, 1, 100), planted(1000, 2, 107), rounds=50)
    names = []
    for i in range(4):
        name = f"2026010{i}T000000000Z-abcd"
        publish(tmp_path, name, {**model.to_files(), "meta.json": "{}"}, keep=2)
        names.append(name)
        assert (tmp_path / CURRENT).read_text().strip() == name
    assert sorted(os.listdir(tmp_path / "versions")) == names[-2:]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    assert load_current(tmp_path).version == names[-1]
    with pytest.raises(TypeError):      # a file that fails while written: the version must not appear
        publish(tmp_path, "broken", {"booster.txt": "x", "meta.json": 5}, keep=2)   # type: ignore[dict-item]
    assert load_current(tmp_path).version == names[-1] and not (tmp_path / "versions" / "broken").exists()
