"""The training pipeline: store -> confidences -> ALS + daypart profiles + index -> artifact.

    result = train(settings, store)        # publishes a new version, returns its metadata

Steps (a tqdm bar over them; ALS shows its own per-iteration bar):
1. viewing: one aggregation query (household x content x daypart sums, zap counts),
2. fit: implicit ALS on the household x content confidences, daypart sub-profiles by fold-in,
   FAISS index over the normalised content factors,
3. popular-now, watched programmes and the schedule snapshot (airings from a day before the
   data end to `model.horizon_hours` after it),
4. optional evaluation (a time split inside the training window, see `evaluate`),
5. publish atomically (artifact.publish).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from recommender import artifact
from recommender.dayparts import Dayparts
from recommender.errors import NoTrainingData
from recommender.model import ContentModel, vars_of
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import DAY_MS, HOUR_MS, RecommenderSettings
from recommender.signal import (
    Shard,
    Watched,
    build_viewing,
    data_end_ms,
    fetch_watched,
    holdout_mask,
    household_shards,
    query_viewing,
)
from warehouse.base import Warehouse

log = logging.getLogger("recommender.train")


@dataclass(frozen=True)
class Trained:
    """A fitted model with everything an artifact holds, before it is published."""

    model: ContentModel
    popularity: Popularity
    schedule: Schedule
    meta: dict[str, Any]
    artifact: artifact.Artifact


def fit(settings: RecommenderSettings, store: Warehouse, *, until_ms: int = 0, show_progress: bool = False,
        with_schedule: bool = True, holdout: float = 0.0) -> Trained:
    """Fit a model on viewing before `until_ms` (default: just after the latest view), leaving out
    a `holdout` fraction of households (evaluation: households the model has never seen)."""
    s = settings
    dayparts = Dayparts.from_settings(s.daypart)
    started = time.monotonic()
    timings: dict[str, float] = {}
    t1 = until_ms or data_end_ms(store) + 1
    if t1 <= 1:
        raise NoTrainingData("the store holds no views")
    t0 = t1 - int(s.signal.history_days * DAY_MS)
    # On a ClickHouse server the popularity and watched queries run on a second connection
    # while the viewing query and the fit run: each FINAL read is one stream on 18.16, so
    # two queries use two cores. The embedded store has one session: they run after the fit.
    shards = household_shards(store, t0, t1)  # one count for both sharded reads
    side_store = store.another_connection()
    try:
        with (tqdm(total=4, desc="train", unit="step", disable=not show_progress) as steps,
              ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-side") as pool):
            side = pool.submit(_side_tables, side_store, t0, t1, s, dayparts, shards) if side_store else None

            def step(name: str, t: float) -> None:
                timings[name] = round(time.monotonic() - t, 3)
                steps.set_postfix_str(name)
                steps.update(1)

            t = time.monotonic()
            cols = query_viewing(store, t0, t1, s.signal, dayparts, shards)
            timings["viewing.query"] = round(time.monotonic() - t, 3)  # the SQL aggregation and its transfer
            viewing = build_viewing(cols, dayparts.count, t1)
            del cols
            timings["viewing.matrix"] = round(time.monotonic() - t - timings["viewing.query"], 3)
            if holdout > 0:
                viewing = viewing.without(holdout_mask(viewing.household_ids, holdout))
            if viewing.households == 0 or viewing.raw.nnz == 0:
                raise NoTrainingData(f"no views past the zap threshold in [{t0}, {t1})", window=(t0, t1))
            step("viewing", t)

            t = time.monotonic()
            model = ContentModel(s.als, s.daypart, s.index).fit(viewing, s.signal, show_progress=show_progress)
            timings.update({f"fit.{k}": v for k, v in model.timings.items()})
            step("fit", t)

            t = time.monotonic()
            popularity, watched, side_timings = (side.result() if side is not None
                                                 else _side_tables(store, t0, t1, s, dayparts, shards))
            timings.update(side_timings)
            popularity = popularity.with_history(viewing.content_ids, np.asarray(viewing.raw.sum(axis=0)).ravel())
            timings["popularity.overlapped"] = side is not None
            step("popularity", t)  # with a side connection: only the wait after the fit

            t = time.monotonic()
            schedule = (Schedule.fetch(store, t1 - DAY_MS, t1 + int(s.model.horizon_hours * HOUR_MS))
                        if with_schedule else Schedule.empty())
            step("schedule", t)
    finally:
        if side_store is not None:
            side_store.close()
    meta: dict[str, Any] = {
        "data_window_ms": [t0, t1],
        "counts": {"households": int(viewing.households), "contents": len(viewing.content_ids),
                   "positives": model.positives, "negatives": model.negatives,
                   "daypart_profiles": len(model.users.dp_keys), "airings": len(schedule),
                   "watched_programmes": len(watched.programme_ids)},
        "schedule_span_ms": list(schedule.span),
        "index": {"kind": model.index.kind if model.index else "none",
                  "items": model.index.size if model.index else 0},
        "settings": {"signal": vars_of(s.signal), "als": vars_of(s.als), "daypart": vars_of(s.daypart),
                     "popularity": vars_of(s.popularity)},
        "timings_s": timings,
        "training_s": round(time.monotonic() - started, 3),
    }
    art = artifact.Artifact("", meta, model, popularity, schedule, watched, viewing)
    return Trained(model, popularity, schedule, meta, art)


def _side_tables(store: Warehouse, t0: int, t1: int, s: RecommenderSettings, dayparts: Dayparts,
                 shards: list[Shard | None]) -> tuple[Popularity, Watched, dict[str, float]]:
    """Popular-now and the watched programmes: the tables the fit does not need."""
    t = time.monotonic()
    popularity = Popularity.fetch(store, t1, s.popularity, s.signal.zap_threshold_s, dayparts)
    popular_s = round(time.monotonic() - t, 3)
    watched = fetch_watched(store, t0, t1, s.signal.zap_threshold_s, shards)
    return popularity, watched, {"popularity.popular": popular_s,
                                 "popularity.watched": round(time.monotonic() - t - popular_s, 3)}


def train(settings: RecommenderSettings, store: Warehouse, *, until_ms: int = 0, show_progress: bool = False,
          evaluate: bool = True) -> dict[str, Any]:
    """Fit, optionally evaluate, publish. Returns the published version's metadata."""
    trained = fit(settings, store, until_ms=until_ms, show_progress=show_progress)
    meta = dict(trained.meta)
    if evaluate:
        from recommender.evaluate import evaluate as run_evaluation

        t = time.monotonic()
        try:
            report = run_evaluation(settings, store, until_ms=meta["data_window_ms"][1], show_progress=show_progress)
            meta["evaluation"] = report.summary()
        except NoTrainingData as exc:
            meta["evaluation"] = {"skipped": str(exc)}
        meta["timings_s"] = {**meta["timings_s"], "evaluation": round(time.monotonic() - t, 3)}
    version = artifact.new_version()
    final = artifact.Artifact(version, meta, trained.model, trained.popularity, trained.schedule,
                              trained.artifact.watched, trained.artifact.history)
    t = time.monotonic()
    folder = artifact.publish(Path(settings.model.dir), version, final.write, settings.model.keep_versions)
    publish_s = round(time.monotonic() - t, 3)  # after meta.json is written: only in the log and the result
    log.info("model published", extra={"version": version, "folder": str(folder),
                                       "households": meta["counts"]["households"],
                                       "contents": meta["counts"]["contents"],
                                       "training_s": meta["training_s"], "timings_s": meta["timings_s"],
                                       "publish_s": publish_s})
    return {**meta, "version": version, "folder": str(folder), "publish_s": publish_s}
