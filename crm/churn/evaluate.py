"""Out-of-time evaluation: train as of an earlier day, test on the days whose outcomes came later.

    result = evaluate(warehouse, day, settings, truth=None)   # dict, the --json document

Test feature days: day - horizon, then `stride_days` back (`test_days` of them); their outcomes
are known on `day`. The model is trained exactly as `churn train` would have been on the oldest
test day (its own feature days end `horizon` days before it), so nothing it sees happened after
the test days began. Scored on the pooled test rows against:

- rules computed as fairly, from the same feature rows: days since the last view (more = riskier)
  and the 7/21-day trend ratio (lower = riskier); each calibrated by Platt scaling on the model's
  own training rows, so their Brier scores compare;
- on simulator data (`truth`: firmware_sim's truth.npz), the truth's own forecast P(ending within
  the horizon) for each household and day — the ceiling.

Metrics: AUC, PR-AUC (average precision), lift in the top 10 % (the leavers' rate there / overall),
Brier score; per tenure band (0-3 months, 3-12 months, 1-3 years, 3 years+) AUC and counts.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crm.churn.features import FeatureFrame, day_number, day_of, feature_frame, first_event_day
from crm.churn.model import platt_fit, sigmoid
from crm.churn.train import feature_days, fit_frame
from crm.errors import NoData
from crm.settings import CrmSettings
from warehouse import Warehouse

TENURE_BANDS = (("0-3m", 0, 91), ("3-12m", 91, 365), ("1-3y", 365, 1095), ("3y+", 1095, 10**9))


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); nan without both classes."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y > 0].sum() - pos * (pos + 1) / 2) / (pos * neg))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    if not y.sum():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(y) + 1)
    return float((precision * hits).sum() / hits.sum())


def lift_at(y: np.ndarray, s: np.ndarray, fraction: float = 0.1) -> float:
    if not y.sum():
        return float("nan")
    k = max(1, round(fraction * len(y)))
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"auc": round(auc(y, p), 4), "pr_auc": round(average_precision(y, p), 4),
            "lift_top10": round(lift_at(y, p), 3), "brier": round(float(np.mean((p - y) ** 2)), 5)}


def _rule_scores(frame: FeatureFrame) -> dict[str, np.ndarray]:
    """Higher = riskier; log scales, so the Platt calibration is a fair one."""
    return {"days_since_view": np.log1p(frame.col("days_since_view")),
            "trend_7_21": -np.log(np.maximum(frame.col("trend_7_21"), 1e-3))}


def truth_ceiling(truth_path: Path, frame: FeatureFrame, horizon: int) -> np.ndarray:
    """The simulator's forecast for each (household, feature day) row."""
    from firmware_sim.truth import Truth  # only with --truth: the simulator's file format

    truth = Truth.load(truth_path)
    start = dt.datetime.fromtimestamp(truth.meta["start_ms"] / 1000, dt.UTC).date()
    rows = np.searchsorted(truth.household_id, frame.household_id)
    rows = np.minimum(rows, len(truth.household_id) - 1)
    known = truth.household_id[rows] == frame.household_id
    out = np.full(len(frame), np.nan)
    for f in np.unique(frame.day).tolist():
        risk = truth.churn_risk(f - day_number(start), horizon)
        sel = (frame.day == f) & known
        out[sel] = risk[rows[sel]]
    return out


def split(warehouse: Warehouse, day: dt.date, settings: CrmSettings, on_step: Callable[[str], None] | None = None
          ) -> tuple[FeatureFrame, FeatureFrame, list[int], list[int]]:
    """(train, test, train days, test days): the out-of-time split evaluate uses."""
    s = settings.churn
    first = first_event_day(warehouse, settings)
    if first is None:
        raise NoData("no events in the store")
    d = day_number(day)
    test_days = feature_days(d - s.horizon_days, first, s, s.test_days)
    train_days = feature_days(min(test_days) - s.horizon_days, first, s, s.train_days) if test_days else []
    if not test_days or len(train_days) < 2:
        raise NoData(f"not enough history to evaluate on {day}: events since {day_of(first)}; a test day needs "
                     f"{s.min_history_days} days of events before it, two training days {s.horizon_days}+ "
                     f"days earlier and its own outcome {s.horizon_days} days later")
    frame = feature_frame(warehouse, sorted(set(train_days + test_days)), settings, known_by=d, on_step=on_step)
    frame = frame.take(frame.label >= 0)
    train = frame.take(np.isin(frame.day, train_days))
    test = frame.take(np.isin(frame.day, test_days))
    return train, test, train_days, test_days


def evaluate(warehouse: Warehouse, day: dt.date, settings: CrmSettings, *, truth: Path | None = None,
             on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    started = time.monotonic()
    s = settings.churn
    train, test, train_days, test_days = split(warehouse, day, settings, on_step)
    model = fit_frame(train)
    if on_step:
        on_step("fitted")
    y, ytr = (test.label == 1).astype(np.float64), (train.label == 1).astype(np.float64)
    scores: dict[str, np.ndarray] = {"model": model.predict(test)}
    rules_train, rules_test = _rule_scores(train), _rule_scores(test)
    for name in rules_test:
        a, b = platt_fit(rules_train[name], ytr)
        scores[f"rule:{name}"] = sigmoid(a * rules_test[name] + b)
    if truth is not None:
        ceiling = truth_ceiling(truth, test, s.horizon_days)
        if np.isnan(ceiling).any():
            raise NoData(f"{int(np.isnan(ceiling).sum())} test households are not in the truth file {truth}")
        scores["truth_ceiling"] = ceiling
    tenure = test.col("tenure_days")
    result: dict[str, Any] = {
        "day": day.isoformat(), "horizon_days": s.horizon_days,
        "train_days": [day_of(f).isoformat() for f in train_days],
        "test_days": [day_of(f).isoformat() for f in test_days],
        "train": {"rows": len(train), "leavers": int(ytr.sum())},
        "test": {"rows": len(test), "leavers": int(y.sum()), "rate": round(float(y.mean()), 5)},
        "scores": {name: metrics(y, p) for name, p in scores.items()},
        "tenure_bands": [{"band": band, "rows": int(sel.sum()), "leavers": int(y[sel].sum()),
                          **{f"auc_{name}": round(auc(y[sel], p[sel]), 4) for name, p in scores.items()}}
                         for band, lo, hi in TENURE_BANDS for sel in [(tenure >= lo) & (tenure < hi)]],
        "importance": model.importance(), "seconds": round(time.monotonic() - started, 1),
    }
    rules = [v["auc"] for k, v in result["scores"].items() if k.startswith("rule:")]
    m = result["scores"]["model"]
    result["targets"] = {"model_minus_best_rule_auc": round(m["auc"] - max(rules), 4),
                         "lift_top10": m["lift_top10"]}
    if "truth_ceiling" in result["scores"]:
        result["targets"]["model_over_ceiling_auc"] = round(m["auc"] / result["scores"]["truth_ceiling"]["auc"], 4)
    return result


def table(result: dict[str, Any]) -> list[str]:
    """The evaluation as printed lines."""
    t = result["test"]
    out = [f"churn evaluation for {result['day']}: trained on {len(result['train_days'])} feature days "
           f"({result['train']['rows']:,} rows, {result['train']['leavers']} leavers), tested on "
           f"{', '.join(result['test_days'])} ({t['rows']:,} rows, {t['leavers']} leavers, {100 * t['rate']:.2f} %)",
           f"{'scorer':<24} {'AUC':>7} {'PR-AUC':>7} {'lift@10%':>9} {'Brier':>8}"]
    for name, m in result["scores"].items():
        out.append(f"{name:<24} {m['auc']:>7.4f} {m['pr_auc']:>7.4f} {m['lift_top10']:>9.2f} {m['brier']:>8.5f}")
    names = list(result["scores"])
    out.append(f"{'tenure band':<12} {'rows':>7} {'leavers':>8} " + " ".join(f"{n[:16]:>16}" for n in names))
    for b in result["tenure_bands"]:
        out.append(f"{b['band']:<12} {b['rows']:>7,} {b['leavers']:>8} " +
                   " ".join(f"{b['auc_' + n]:>16.4f}" for n in names))
    out.append("targets: " + ", ".join(f"{k} {v}" for k, v in result["targets"].items()))
    return out
