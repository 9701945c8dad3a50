"""Training on past feature days, split by time: what was known on the training day, nothing later.

For training day D (default: the last complete day), the feature days are D - horizon, then every
`stride_days` back (at most `train_days`, none earlier than `min_history_days` after the first
event): each one's outcome is known by D. The newest calibrates (Platt), the older ones train the
booster. `evaluate` moves the same split `horizon` days further back and tests on the days between.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.churn.artifact import new_version, publish
from crm.churn.features import FeatureFrame, day_number, day_of, feature_frame, first_event_day
from crm.churn.model import ChurnModel
from crm.errors import NoData
from crm.settings import ChurnSettings, CrmSettings
from warehouse import Warehouse


@dataclass
class Trained:
    model: ChurnModel
    meta: dict[str, Any]


def feature_days(newest: int, first_event: int, s: ChurnSettings, count: int) -> list[int]:
    """Up to `count` feature days, `stride_days` apart, ending with `newest`, oldest first, each with
    `min_history_days` of events before it."""
    days = [newest - k * s.stride_days for k in range(count)]
    return sorted(f for f in days if f >= first_event + s.min_history_days - 1)


def training_days(warehouse: Warehouse, day: int, settings: CrmSettings) -> list[int]:
    first = first_event_day(warehouse, settings)
    if first is None:
        raise NoData("no events in the store")
    s = settings.churn
    days = feature_days(day - s.horizon_days, first, s, s.train_days)
    if len(days) < 2:
        raise NoData(f"not enough history to train for {day_of(day)}: the feature days need "
                     f"{s.min_history_days} days of events before them and {s.horizon_days} days after "
                     f"(events since {day_of(first)}; at least {s.min_history_days + s.horizon_days + s.stride_days} "
                     f"days)")
    return days


def fit_frame(frame: FeatureFrame, *, seed: int = 0) -> ChurnModel:
    """Booster on every feature day but the newest, calibration on the newest."""
    cal_day = int(frame.day.max())
    return ChurnModel.fit(frame.take(frame.day < cal_day), frame.take(frame.day == cal_day), seed=seed)


def train(warehouse: Warehouse, day: dt.date, settings: CrmSettings,
          on_step: Callable[[str], None] | None = None) -> Trained:
    started = time.monotonic()
    d = day_number(day)
    days = training_days(warehouse, d, settings)
    frame = feature_frame(warehouse, days, settings, known_by=d, on_step=on_step)
    frame = frame.take(frame.label >= 0)
    model = fit_frame(frame)
    if on_step:
        on_step("fitted")
    cal = frame.take(frame.day == frame.day.max())
    meta = {
        "trained_for": day.isoformat(), "feature_days": [day_of(f).isoformat() for f in days],
        "calibration_day": day_of(int(frame.day.max())).isoformat(), "horizon_days": settings.churn.horizon_days,
        "rows": len(frame), "leavers": int((frame.label == 1).sum()),
        "calibration": {"rows": len(cal), "leavers": int((cal.label == 1).sum()),
                        "mean_predicted": round(float(model.predict(cal).mean()), 5),
                        "observed": round(float((cal.label == 1).mean()), 5)},
        "importance": model.importance(), "platt": list(model.platt),
        "bands": {"high": settings.churn.high, "medium": settings.churn.medium},
        "train_seconds": round(time.monotonic() - started, 2),
    }
    return Trained(model, meta)


def save(trained: Trained, model_dir: Path, keep: int) -> str:
    version = new_version()
    meta = {**trained.meta, "version": version, "leavers_share": round(
        trained.meta["leavers"] / max(trained.meta["rows"], 1), 5)}
    publish(model_dir, version, {**trained.model.to_files(), "meta.json": json.dumps(meta, indent=2)}, keep=keep)
    return version
