"""The store on a ClickHouse cluster (2 shards x 2 replicas, ZooKeeper): schema, durable ingest
through the real collector with servers failing, and the readers' queries through Distributed tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stbcommon.localcluster import LocalCluster
from tests.integration.harness import Collector, Traffic, count_events, differing_copies, publish
from warehouse import open_warehouse
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
    per_server = _on_every_server(clickhouse_cluster, f"SELECT count() FROM {database}.schema_migrations_local")
    assert per_server == [[(SCHEMA_VERSION,)], [(SCHEMA_VERSION,)], [(0,)], [(0,)]]


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
    database = cluster_url.rsplit("/", 1)[1].split("?")[0]
    shards = _on_every_server(clickhouse_cluster, f"SELECT count() FROM {database}.events_local FINAL")
    assert shards[0] == shards[1] and shards[2] == shards[3]  # replicas agree (quorum 2)
    assert shards[0][0][0] + shards[2][0][0] == traffic.total_events  # type: ignore[operator]
    assert min(shards[0][0][0], shards[2][0][0]) > 0  # type: ignore[type-var]
