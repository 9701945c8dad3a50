"""Scoring a day: `churn_scores`, the risk tags, and alerts for households entering the high band.

    report = score_day(warehouse, day, settings, load_current(model_dir))

Every subscriber not ended on or before the day (and activated by it) gets one row: the calibrated
probability of ending within the horizon, its band (`high` >= churn.high, `medium` >= churn.medium,
else `low`) and, for high and medium, the reasons in words (crm.churn.reasons). Rows go through a
temporary `crm_stage_<random>` table of plain columns, then one INSERT ... SELECT each into:

- `churn_scores` (ReplacingMergeTree by computed_ms: re-scoring a day replaces its rows);
- `household_tags`: a new tag run of the day = the day's newest run without its old risk.churn_* tags
  + `risk.churn_high` / `risk.churn_medium` (readers take the newest run, crm.tags);
- `churn_alerts`: high households that were not high on the previous scored day (all of them on
  the first scoring); re-scoring a day adds alerts, never withdraws one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crm.churn.artifact import LoadedModel
from crm.churn.features import FeatureFrame, day_of, feature_frame
from crm.churn.reasons import reasons
from crm.settings import CrmSettings
from warehouse import Warehouse

BANDS = ("high", "medium", "low")
RISK_TAGS = ("risk.churn_high", "risk.churn_medium")
_SEP = "\n"   # reasons travel joined by newlines (sentences never hold one), split in the store


@dataclass(frozen=True)
class ScoreReport:
    day: str
    model_version: str
    households: int
    bands: dict[str, int]
    alerts: int
    top: list[tuple[int, float, list[str]]]     # the riskiest households: (id, score, reasons)


def bands_of(score: np.ndarray, settings: CrmSettings) -> np.ndarray:
    c = settings.churn
    return np.where(score >= c.high, "high", np.where(score >= c.medium, "medium", "low")).astype(object)


def score_frame(frame: FeatureFrame, loaded: LoadedModel,
                settings: CrmSettings) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    score = loaded.model.predict(frame)
    band = bands_of(score, settings)
    worded = np.flatnonzero(band != "low")    # reasons for those anyone will act on (and it is quicker)
    why: list[list[str]] = [[] for _ in range(len(frame))]
    if len(worded):
        contrib = loaded.model.contributions(frame.take(worded))
        for i, r in zip(worded.tolist(), reasons(frame.take(worded), contrib, settings.churn.reasons), strict=True):
            why[i] = r
    return score, band, why


def score_day(warehouse: Warehouse, day: int, settings: CrmSettings, loaded: LoadedModel,
              on_step: Callable[[str], None] | None = None) -> ScoreReport:
    frame = feature_frame(warehouse, [day], settings, known_by=day, on_step=on_step)
    score, band, why = score_frame(frame, loaded, settings)
    if on_step:
        on_step("scored")
    db = warehouse.database
    now = int(time.time() * 1000)
    params = {"day": day_of(day).isoformat(), "version": loaded.version}
    stage = f"crm_stage_{uuid.uuid4().hex[:12]}"
    text = np.empty(len(frame), dtype=object)
    text[:] = [_SEP.join(r) for r in why]
    warehouse.execute(f"CREATE TABLE {db}.{stage} (household_id UInt64, score Float64, band String, "
                      f"reasons String) ENGINE = MergeTree() ORDER BY household_id")
    try:
        warehouse.insert_columns(stage, {"household_id": frame.household_id, "score": score, "band": band,
                                         "reasons": text})
        warehouse.query_rows(
            f"INSERT INTO {db}.churn_scores (household_id, day, score, band, reasons, model_version, computed_ms) "
            f"SELECT household_id, toDate(%(day)s), score, band, "
            f"if(reasons = '', emptyArrayString(), splitByChar('\\n', reasons)), %(version)s, {now} "
            f"FROM {db}.{stage}", params)
        _write_tags(warehouse, stage, now, params)
        alerts = _write_alerts(warehouse, day, now, params)
    finally:
        warehouse.execute(f"DROP TABLE IF EXISTS {db}.{stage}")
    if on_step:
        on_step("written")
    order = np.argsort(-score, kind="stable")[:10]
    return ScoreReport(params["day"], loaded.version, len(frame),
                       {b: int((band == b).sum()) for b in BANDS}, alerts,
                       [(int(frame.household_id[i]), float(score[i]), why[i]) for i in order.tolist()])


def _write_tags(warehouse: Warehouse, stage: str, now: int, params: dict[str, str]) -> None:
    db = warehouse.database
    risk = ", ".join(f"'{t}'" for t in RISK_TAGS)
    warehouse.query_rows(f"""
        INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms)
        SELECT household_id, tag, level, score, toDate(%(day)s), {now} FROM (
            SELECT household_id, tag, level, score FROM {db}.household_tags
            WHERE day = toDate(%(day)s) AND tag NOT IN ({risk})
                  AND computed_ms = (SELECT max(computed_ms) FROM {db}.household_tags WHERE day = toDate(%(day)s))
            UNION ALL
            SELECT household_id, concat('risk.churn_', band) AS tag, 'risk' AS level, score
            FROM {db}.{stage} WHERE band IN ('high', 'medium'))""", params)


def _write_alerts(warehouse: Warehouse, day: int, now: int, params: dict[str, str]) -> int:
    db = warehouse.database
    prev = warehouse.query_rows(f"SELECT count(), max(day) FROM {db}.churn_scores WHERE day < toDate(%(day)s)",
                                params)[0]
    before = f"""household_id NOT IN (SELECT household_id FROM {db}.churn_scores FINAL
                                      WHERE day = toDate(%(prev)s) AND band = 'high')""" if prev[0] else "1"
    query = {**params, "prev": str(prev[1]) if prev[0] else params["day"]}
    warehouse.query_rows(f"""
        INSERT INTO {db}.churn_alerts (household_id, day, score, reasons, model_version, created_ms)
        SELECT household_id, day, score, reasons, model_version, {now} FROM {db}.churn_scores FINAL
        WHERE day = toDate(%(day)s) AND band = 'high' AND {before}""", query)
    return int(warehouse.query_rows(f"SELECT count() FROM {db}.churn_alerts WHERE day = toDate(%(day)s) "
                                    f"AND created_ms = {now}", params)[0][0])
