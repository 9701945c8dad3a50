"""Training, evaluation and feedback against both real stores (ClickHouse 18.16 and chdb)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recommender import artifact
from recommender.dayparts import Dayparts
from recommender.engine import WATCHED_BEFORE, Engine, Snapshot
from recommender.feedback import feedback
from recommender.settings import AlsSettings, DaypartSettings, ModelSettings, RecommenderSettings, SignalSettings
from recommender.signal import fetch_viewing
from recommender.train import train
from tests.unit.test_rec_planted import DAY_MS, HOUR_MS, PlantedWorld, event_columns, planted_world, reference_viewing
from warehouse import open_warehouse
from warehouse.base import Warehouse

pytestmark = pytest.mark.integration
DAYPARTS = Dayparts.from_settings(DaypartSettings())
# A 20-content catalogue: few factors and strong regularisation (see tests/unit/test_rec_model.py).
SMALL_ALS = AlsSettings(factors=8, regularization=5.0, alpha=2.0, iterations=10, threads=2)


def small_settings(store_url: str, model_dir: Path) -> RecommenderSettings:
    s = RecommenderSettings()
    return dataclasses.replace(s, als=SMALL_ALS, store=dataclasses.replace(s.store, url=store_url),
                               model=ModelSettings(dir=str(model_dir)),
                               evaluate=dataclasses.replace(s.evaluate, test_days=3.0))


@pytest.fixture(scope="module")
def world() -> PlantedWorld:
    return planted_world(households=120, days=14, seed=21)


@pytest.fixture(params=["clickhouse", "chdb"])
def store(request: pytest.FixtureRequest, world: PlantedWorld) -> Iterator[Warehouse]:
    url = str(request.getfixturevalue("clickhouse_url" if request.param == "clickhouse" else "chdb_url"))
    st = open_warehouse(url)
    st.migrate()
    world.insert(st)
    yield st
    st.close()


def test_train_recovers_the_planted_preferences(store: Warehouse, world: PlantedWorld, tmp_path: Path) -> None:
    settings = small_settings(store.url, tmp_path / "models")
    meta = train(settings, store, evaluate=True)
    # the SQL aggregation agrees with a numpy computation of the same definition
    t0, t1 = meta["data_window_ms"]
    got = fetch_viewing(store, t0, t1, SignalSettings(), DAYPARTS)
    want = reference_viewing(world, t0, t1, SignalSettings(), DAYPARTS)
    assert got.households == len(np.unique(want["household_id"]))
    np.testing.assert_allclose(got.raw.sum(), want["raw"].sum(), rtol=1e-5)
    assert got.zaps.sum() == want["zaps"].sum()
    # the published model puts each group's series first in prime time
    a = artifact.load(tmp_path / "models")
    assert a.version == meta["version"] and a.meta["counts"]["households"] == len(world.households)
    snap = Snapshot.from_artifact(a)
    engine = Engine(settings.serve, DAYPARTS)
    at = (t1 // DAY_MS + 1) * DAY_MS + 19 * HOUR_MS   # prime time the day after the data
    firsts = [engine.recommend(snap, hh, k=3, at_ms=at, window_minutes=120).items[0]
              for hh in world.households.tolist()]
    assert np.mean([i.content_id == world.favourite[hh] for i, hh in zip(firsts, world.households.tolist(),
                                                                          strict=True)]) >= 0.9
    assert all(i.reason == WATCHED_BEFORE for i in firsts)
    # the evaluation stored with it: the model beats every baseline
    figures = {m["name"]: m for m in a.meta["evaluation"]["methods"]}
    assert figures["als"]["ndcg@10"] > max(figures[b]["ndcg@10"] for b in ("popular", "channel_daypart",
                                                                             "last_watched"))
    assert figures["als"]["hr@5"] > figures["popular"]["hr@5"]


def test_feedback_counts_clicks_per_model_version(store: Warehouse, world: PlantedWorld) -> None:
    t = world.end_ms + HOUR_MS
    hh = int(world.households[0])
    impressions = [(hh, t + i, 101, 1000001 + i, 0) for i in range(6)]
    store.insert_columns("events", event_columns(impressions, kind=6, extra={
        "request_id": ["r1", "r1", "r1", "r2", "r2", "r3"], "model_version": ["v1", "v1", "v1", "v1", "v1", "v2"],
        "rank": [1, 2, 3, 1, 2, 1]}, seq0=10**9))
    clicks = [(hh, t + 100, 101, 1000002, 0), (hh, t + 200, 101, 1000006, 0)]
    store.insert_columns("events", event_columns(clicks, kind=7, extra={"request_id": ["r1", "r3"],
                                                                         "rank": [2, 1]}, seq0=10**9 + 100))
    rows = {r.model_version: r for r in feedback(store, t - HOUR_MS, t + HOUR_MS)}
    assert set(rows) == {"v1", "v2"}
    v1, v2 = rows["v1"], rows["v2"]
    assert (v1.impressions, v1.requests, v1.clicks, v1.clicked_requests) == (5, 2, 1, 1)
    assert (v2.impressions, v2.clicks) == (1, 1) and v2.ctr == 1.0 and v1.request_ctr == 0.5
    assert v1.mean_click_rank == 2.0


def test_evaluate_cli_writes_json(clickhouse_url: str, world: PlantedWorld, tmp_path: Path) -> None:
    st = open_warehouse(clickhouse_url)
    st.migrate()
    world.insert(st)
    st.close()
    out = tmp_path / "eval.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "STB_RECOMMENDER__ALS__FACTORS": "8",
           "STB_RECOMMENDER__ALS__REGULARIZATION": "5", "STB_RECOMMENDER__ALS__ALPHA": "2"}
    done = subprocess.run([sys.executable, "-m", "recommender", "evaluate", "--store", clickhouse_url,
                           "--test-days", "3", "--json", str(out), "--no-progress", "--log-format", "text"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HR@10" in done.stdout and "last_watched" in done.stdout
    report = json.loads(out.read_text())
    names = [m["name"] for m in report["methods"]]
    assert names[:5] == ["als", "als+foldin", "popular", "channel_daypart", "last_watched"]
    assert report["sessions_sampled"] > 100 and 0 < report["methods"][0]["coverage"] <= 1
