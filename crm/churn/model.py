"""The churn model: gradient boosting (LightGBM) with a calibration on later days, and contributions.

    model = ChurnModel.fit(train, calibration, seed=0)     # FeatureFrames with labels 0/1
    p = model.predict(frame)                                # calibrated P(leaving within the horizon)
    contrib = model.contributions(frame)                    # [n, features] log-odds contributions (TreeSHAP)

Why LightGBM (measured, docs/CRM.md): on the simulator it matched scikit-learn's
HistGradientBoostingClassifier in AUC (three runs, within noise either way) in about two thirds of
the fit CPU, and it gives exact per-household feature contributions (`pred_contrib`, TreeSHAP) —
the reasons in words come from them; HistGradientBoosting has none without another package.

Calibration: Platt scaling (a logistic fit of the boosted margin) on the newest training feature
day, which the booster does not see — a split by time, so the probabilities are calibrated for the
days after training. The booster's class weights are left at 1 (no rebalancing), so the margin is
already close to calibrated and two parameters suffice even with few leavers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from crm.churn.features import FEATURES, FeatureFrame
from crm.errors import CrmError

# Small trees, many rows: leavers are 1-2 % of rows. Chosen on a 3,000-household world (seed 5, docs/CRM.md):
# 7 leaves / 100 per leaf / 400 rounds at 0.03 beat 15 / 40 / 300 at 0.05 by 0.01-0.015 AUC at every stride;
# the benchmark's world (seed 21) was not used to choose.
PARAMS: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.03, "num_leaves": 7, "min_data_in_leaf": 100,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "num_threads": 1, "deterministic": True, "force_row_wise": True,
}
# One thread: on this project's shared 2-core machine two OpenMP threads made a 6,000-row fit
# 11 times slower (6.7 s against 0.6 s) whenever the other core was busy.
ROUNDS = 400
CATEGORICAL = ("package",)


class ModelError(CrmError):
    """A churn model that cannot be trained or used (too few leavers, other features, no model)."""


@dataclass
class ChurnModel:
    booster: Any                     # lightgbm.Booster
    platt: tuple[float, float]       # P = sigmoid(a * margin + b)
    features: tuple[str, ...]

    @classmethod
    def fit(cls, train: FeatureFrame, calibration: FeatureFrame, *, seed: int = 0,
            rounds: int = ROUNDS) -> ChurnModel:
        import lightgbm as lgb

        y = train.label.astype(np.float64)
        if y.sum() < 5 or (calibration.label == 1).sum() < 2:
            raise ModelError(f"too few leavers to learn from: {int(y.sum())} in training, "
                             f"{int((calibration.label == 1).sum())} on the calibration day (need 5 and 2)")
        data = lgb.Dataset(train.x, y, feature_name=list(FEATURES), categorical_feature=list(CATEGORICAL),
                           free_raw_data=True)
        booster = lgb.train({**PARAMS, "seed": seed}, data, num_boost_round=rounds)
        margin = np.asarray(booster.predict(calibration.x, raw_score=True), dtype=np.float64)
        return cls(booster, platt_fit(margin, calibration.label.astype(np.float64)), FEATURES)

    def margin(self, frame: FeatureFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(frame.x, raw_score=True), dtype=np.float64) if len(frame) else \
            np.zeros(0)

    def predict(self, frame: FeatureFrame) -> np.ndarray:
        a, b = self.platt
        return sigmoid(a * self.margin(frame) + b)

    def contributions(self, frame: FeatureFrame) -> np.ndarray:
        """[n, features]: each feature's share of the household's margin (the last column, the bias,
        dropped), scaled by the calibration slope so they add up on the calibrated log-odds."""
        if not len(frame):
            return np.zeros((0, len(self.features)))
        c = np.asarray(self.booster.predict(frame.x, pred_contrib=True), dtype=np.float64)
        return c[:, :-1] * self.platt[0]

    def importance(self) -> dict[str, float]:
        gain = self.booster.feature_importance(importance_type="gain")
        total = float(gain.sum()) or 1.0
        return {f: round(float(g) / total, 4) for f, g in zip(self.features, gain, strict=True)}

    # --- files ------------------------------------------------------------------------------

    def to_files(self) -> dict[str, str]:
        return {"booster.txt": self.booster.model_to_string(),
                "model.json": json.dumps({"platt": list(self.platt), "features": list(self.features)})}

    @classmethod
    def from_files(cls, booster_text: str, model_json: str) -> ChurnModel:
        import lightgbm as lgb

        meta = json.loads(model_json)
        if tuple(meta["features"]) != FEATURES:
            raise ModelError("the model was trained on other features than this version computes: train again")
        return cls(lgb.Booster(model_str=booster_text), (float(meta["platt"][0]), float(meta["platt"][1])),
                   tuple(meta["features"]))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40, 40))))


def platt_fit(score: np.ndarray, y: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """(a, b) of P = sigmoid(a * score + b): Newton's method with step halving on the log-loss, on the
    standardised score, with Platt's target smoothing (labels (n+ + 1) / (n+ + 2) and 1 / (n- + 2))
    so a separable day does not diverge."""
    pos, neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))
    mu, sd = float(np.mean(score)), float(np.std(score)) or 1.0
    z = (score - mu) / sd

    def loss(w: np.ndarray) -> float:
        m = w[0] * z + w[1]
        return float(np.sum(np.logaddexp(0, m) - t * m))

    w = np.array([1.0, float(np.log((pos + 1) / (neg + 1)))])
    current = loss(w)
    for _ in range(iterations):
        p = sigmoid(w[0] * z + w[1])
        r = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum((p - t) * z), np.sum(p - t)])
        h = np.array([[np.sum(r * z * z), np.sum(r * z)], [np.sum(r * z), np.sum(r)]]) + np.eye(2) * 1e-6
        step = np.linalg.solve(h, g)
        scale = 1.0
        while scale > 1e-6 and loss(w - scale * step) > current:
            scale /= 2
        w = w - scale * step
        new = loss(w)
        if current - new < 1e-10:
            break
        current = new
    return float(w[0] / sd), float(w[1] - w[0] * mu / sd)
