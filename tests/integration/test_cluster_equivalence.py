"""The readers on a ClickHouse cluster (2 shards x 2 replicas) answer as on one server: the CRM's
joins and subqueries through Distributed tables, and recommender training and evaluation.

`crm` and `rec`, the module's two cluster databases, are migrated once, side by side
(tests/fixtures/cluster.py); each test loads the same world into them and into one server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crm import segments
from crm.catalogue import load_catalogue
from crm.profiles import build_profiles
from crm.ratings import compute_ratings
from crm.settings import CrmSettings
from crm.tags import build_tags
from recommender import artifact
from recommender.engine import Engine, Snapshot
from recommender.train import train
from stbcommon.localcluster import LocalCluster
from tests.fixtures.cluster import ensure_cluster_running, migrated_cluster_databases
from tests.integration.crm_world import World, simulate
from tests.integration.test_rec_store import DAYPARTS, small_settings
from tests.unit.test_rec_planted import DAY_MS, HOUR_MS, PlantedWorld, planted_world
from warehouse import Warehouse, open_warehouse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def databases(clickhouse_cluster: LocalCluster) -> dict[str, str]:
    return migrated_cluster_databases(clickhouse_cluster, ("crm", "rec"))


def _rounded(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(repr(sorted((k, round(v, 6) if isinstance(v, float) else v) for k, v in r.items())) for r in rows)


@pytest.fixture(scope="module")
def crm_world() -> World:
    return simulate(households=150, days=10, seed=7)


def _both(request: pytest.FixtureRequest, tmp_path: Path, cluster_db: str,
          load: Callable[[Warehouse, Path], None]) -> Iterator[tuple[Warehouse, Warehouse]]:
    """The same data in a database of one server and in the module's cluster database `cluster_db`."""
    ensure_cluster_running(request.getfixturevalue("clickhouse_cluster"))
    urls = [str(request.getfixturevalue("clickhouse_url")), request.getfixturevalue("databases")[cluster_db]]
    stores = [open_warehouse(u) for u in urls]
    try:
        for i, store in enumerate(stores):
            store.migrate()  # the cluster's was migrated by the fixture: 0.2 s
            load(store, tmp_path / str(i))
        yield stores[0], stores[1]
    finally:
        for store in stores:
            store.close()


@pytest.fixture
def crm_stores(request: pytest.FixtureRequest, crm_world: World,
               tmp_path: Path) -> Iterator[tuple[Warehouse, Warehouse]]:
    def load(store: Warehouse, tmp: Path) -> None:
        tmp.mkdir()
        crm_world.load(store, tmp)
    yield from _both(request, tmp_path, "crm", load)


def test_crm_joins_and_subqueries_answer_as_on_one_server(crm_stores: tuple[Warehouse, Warehouse],
                                                         crm_world: World) -> None:
    """Profiles, tags (INSERT ... SELECT with JOINs), ratings (JOINs with the guide, on the first shard only)
    and segments (IN subqueries) through Distributed tables give what one server gives."""
    day, settings, catalogue = crm_world.last_day, CrmSettings(), load_catalogue()
    answers = []
    for store in crm_stores:
        db = store.database
        assert build_profiles(store, day, settings, catalogue) == len(crm_world.households)
        tags = build_tags(store, day, catalogue)
        profiles = store.query_rows(f"SELECT household_id, round(minutes_28d, 6), top_channels, "
                                    f"arraySort(category_names) FROM {db}.household_profiles FINAL "
                                    f"ORDER BY household_id")
        ratings = {by: _rounded(compute_ratings(store, day, by, settings).rows)
                   for by in ("programme", "channel", "daypart")}
        counts = {expr: segments.count(store, expr, day)
                  for expr in ("interest.football", "behaviour.heavy_viewer and not value.low",
                               "value.high or interest.sport")}
        answers.append((tags, profiles, ratings, counts))
    assert answers[0] == answers[1]
    assert answers[0][3]["interest.football"] > 0 and answers[0][2]["programme"]


@pytest.fixture
def rec_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Warehouse, Warehouse]]:
    world = planted_world(households=120, days=14, seed=21)
    request.node.world = world
    yield from _both(request, tmp_path, "rec", lambda store, _tmp: world.insert(store))


def test_recommender_train_and_evaluate_give_the_same_model_as_one_server(
        rec_stores: tuple[Warehouse, Warehouse], request: pytest.FixtureRequest, tmp_path: Path) -> None:
    world: PlantedWorld = request.node.world
    models = []
    for i, store in enumerate(rec_stores):
        settings = small_settings(store.url, tmp_path / f"models{i}")
        meta = train(settings, store, evaluate=True)
        models.append((settings, meta, artifact.load(tmp_path / f"models{i}")))
    (settings, meta_one, one), (_, meta_cluster, cluster) = models
    assert meta_one["data_window_ms"] == meta_cluster["data_window_ms"]
    assert meta_one["counts"] == meta_cluster["counts"]
    assert meta_one["evaluation"]["methods"] == meta_cluster["evaluation"]["methods"]
    np.testing.assert_allclose(one.model.item_factors, cluster.model.item_factors, rtol=1e-4, atol=1e-5)
    engine = Engine(settings.serve, DAYPARTS)
    at = (meta_one["data_window_ms"][1] // DAY_MS + 1) * DAY_MS + 19 * HOUR_MS
    snaps = Snapshot.from_artifact(one), Snapshot.from_artifact(cluster)
    for hh in world.households.tolist():
        a, b = (engine.recommend(s, hh, k=5, at_ms=at, window_minutes=120).items for s in snaps)
        assert [i.content_id for i in a] == [i.content_id for i in b]
