"""The store on a ClickHouse cluster (2 shards x 2 replicas, ZooKeeper): schema, durable ingest
through the real collector with servers failing, and the readers' queries through Distributed tables."""

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
from tests.integration.crm_world import World, simulate
from tests.integration.harness import Collector, Traffic, count_events, differing_copies, publish
from tests.integration.test_rec_store import DAYPARTS, small_settings
from tests.unit.test_rec_planted import DAY_MS, HOUR_MS, PlantedWorld, planted_world
from warehouse import Warehouse, open_warehouse
from warehouse.schema import MIGRATIONS_TABLE, SCHEMA_VERSION, TABLES

pytestmark = pytest.mark.integration


def _on_every_server(cluster: LocalCluster, sql: str) -> list[list[tuple[object, ...]]]:
    from clickhouse_driver import Client

    out = []
    for node in cluster.all_nodes:
        client = Client(node.host, port=node.tcp_port)
        try:
            out.append([tuple(r) for r in client.execute(sql)])
        finally:
            client.disconnect()
    return out


def _counts(cluster: LocalCluster, sql: str) -> list[int]:
    """One number from every server, shard by shard, replica by replica."""
    return [int(str(rows[0][0])) for rows in _on_every_server(cluster, sql)]


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def _replicas_agree(cluster: LocalCluster, database: str) -> list[int]:
    """Each server's events once replication has caught up (SYSTEM SYNC REPLICA)."""
    _on_every_server(cluster, f"SYSTEM SYNC REPLICA {database}.events_local")
    return _counts(cluster, f"SELECT count() FROM {database}.events_local FINAL")


@pytest.fixture
def collector(mosquitto, cluster_url: str, tmp_path: Path) -> Iterator[Collector]:  # type: ignore[no-untyped-def]
    c = Collector(mosquitto.url, cluster_url, tmp_path)
    yield c
    c.close()


def test_migrate_twice_every_table_distributed_over_replicated_locals(clickhouse_cluster: LocalCluster,
                                                                    cluster_url: str) -> None:
    store = open_warehouse(cluster_url)
    try:
        store.migrate()
        store.migrate()  # idempotent: nothing left to do, nothing refused
        database = store.database
        versions = store.query_rows(f"SELECT version FROM {database}.schema_migrations FINAL ORDER BY version")
    finally:
        store.close()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
    names = sorted([*TABLES, MIGRATIONS_TABLE.name])
    for tables in _on_every_server(clickhouse_cluster, f"SELECT name, engine FROM system.tables "
                                                       f"WHERE database = '{database}' ORDER BY name"):
        engines = dict(tables)  # type: ignore[arg-type]
        assert sorted(n for n in engines if not str(n).endswith("_local")) == names
        assert all(engines[n] == "Distributed" for n in names)
        assert all(str(engines[f"{n}_local"]).startswith("Replicated") for n in names)
    # schema_migrations lives on the first shard, the same rows on both of its replicas
    per_server = _counts(clickhouse_cluster, f"SELECT count() FROM {database}.schema_migrations_local FINAL")
    assert per_server == [SCHEMA_VERSION, SCHEMA_VERSION, 0, 0]


def test_collector_exact_final_counts_and_redelivered_copies_collapse(mosquitto, collector: Collector,  # type: ignore[no-untyped-def]
                                                                       clickhouse_cluster: LocalCluster,
                                                                       cluster_url: str) -> None:
    collector.start()
    traffic = Traffic(devices=40, messages_per_device=25, events_per_message=20)
    messages = list(traffic.messages())
    publish(mosquitto.url, messages + messages[:30])  # agents that resent after a lost PUBACK
    collector.wait_rows(traffic.total_events + 30 * 20)
    assert collector.terminate() == 0
    assert count_events(cluster_url) == traffic.total_events
    assert differing_copies(cluster_url) == 0
    shards = _counts(clickhouse_cluster, f"SELECT count() FROM {_database(cluster_url)}.events_local FINAL")
    assert shards[0] == shards[1] and shards[2] == shards[3]  # both replicas hold it (quorum 2)
    assert shards[0] + shards[2] == traffic.total_events and min(shards) > 0


def test_a_replica_killed_mid_stream_then_back_loses_and_doubles_nothing(  # type: ignore[no-untyped-def]
        mosquitto, clickhouse_cluster: LocalCluster, cluster_url: str, tmp_path: Path) -> None:
    url = cluster_url + "&insert_quorum_timeout=3"  # the dead replica's ZooKeeper session lives on for a while
    collector = Collector(mosquitto.url, url, tmp_path)
    replica = clickhouse_cluster.nodes[1][0]
    try:
        collector.start()
        traffic = Traffic(devices=40, messages_per_device=40, events_per_message=20)
        messages = list(traffic.messages())
        third = len(messages) // 3
        publish(mosquitto.url, messages[:third])
        collector.wait_rows(third * 20 // 2)
        replica.kill()  # mid-stream: quorum inserts now fail, the collector holds its acks
        publish(mosquitto.url, messages[third:2 * third])
        collector.wait_for(lambda m: m.get('collector_store_errors_total{retryable="true"}', 0) >= 1, 60,
                           "retryable store errors while a replica is down")
        replica.start()
        publish(mosquitto.url, messages[2 * third:])
        collector.wait_quiet(quiet_s=3.0, timeout=120)
        assert collector.terminate() == 0
    finally:
        collector.close()
        clickhouse_cluster.start()
    assert count_events(cluster_url) == traffic.total_events
    assert differing_copies(cluster_url) == 0
    shards = _replicas_agree(clickhouse_cluster, _database(cluster_url))
    assert shards[0] == shards[1] and shards[2] == shards[3] and shards[0] + shards[2] == traffic.total_events


def test_a_whole_shard_stopped_then_back_loses_and_doubles_nothing(  # type: ignore[no-untyped-def]
        mosquitto, clickhouse_cluster: LocalCluster, cluster_url: str, tmp_path: Path) -> None:
    collector = Collector(mosquitto.url, cluster_url, tmp_path)
    shard = clickhouse_cluster.nodes[0]  # with the first entry point: the store fails over to the next
    try:
        collector.start()
        traffic = Traffic(devices=40, messages_per_device=30, events_per_message=20)
        messages = list(traffic.messages())
        third = len(messages) // 3
        publish(mosquitto.url, messages[:third])
        collector.wait_rows(third * 20)
        for node in shard:
            node.stop()
        publish(mosquitto.url, messages[third:2 * third])  # the broker keeps them: acks are withheld
        collector.wait_for(lambda m: m.get('collector_store_errors_total{retryable="true"}', 0) >= 2, 60,
                           "retryable store errors while a shard is down")
        for node in shard:
            node.start()
        publish(mosquitto.url, messages[2 * third:])
        collector.wait_quiet(quiet_s=3.0, timeout=120)
        assert collector.terminate() == 0
    finally:
        collector.close()
        clickhouse_cluster.start()
    assert count_events(cluster_url) == traffic.total_events
    assert differing_copies(cluster_url) == 0
    shards = _replicas_agree(clickhouse_cluster, _database(cluster_url))
    assert shards[0] == shards[1] and shards[2] == shards[3] and shards[0] + shards[2] == traffic.total_events


def _rounded(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(repr(sorted((k, round(v, 6) if isinstance(v, float) else v) for k, v in r.items())) for r in rows)


@pytest.fixture(scope="module")
def crm_world() -> World:
    return simulate(households=150, days=10, seed=7)


def _both(request: pytest.FixtureRequest, tmp_path: Path, load: Callable[[Warehouse, Path], None]
          ) -> Iterator[tuple[Warehouse, Warehouse]]:
    """The same data in a database of one server and of the cluster."""
    urls = [str(request.getfixturevalue("clickhouse_url")), str(request.getfixturevalue("cluster_url"))]
    stores = [open_warehouse(u) for u in urls]
    try:
        for i, store in enumerate(stores):
            store.migrate()
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
    yield from _both(request, tmp_path, load)


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
    yield from _both(request, tmp_path, lambda store, _tmp: world.insert(store))


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
