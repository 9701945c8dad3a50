"""The store on a ClickHouse cluster (2 shards x 2 replicas, ZooKeeper): schema, durable ingest
through the real collector with servers failing, the readers' queries through Distributed tables,
retention and forget. The readers compared with one server: test_cluster_equivalence.py.

The module's database `shared` is migrated once (tests/fixtures/cluster.py) and holds the rows
of every test here, each told apart by its own device prefix, households or days."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crm.__main__ import main as crm_main
from crm.forget import forget
from crm.forget_cluster import ForgetBlocked
from stbcommon.localcluster import LocalCluster
from tests.fixtures.cluster import ensure_cluster_running, migrated_cluster_databases
from tests.integration.crm_support import event_rows
from tests.integration.harness import ROOT, Collector, Traffic, publish
from tests.integration.test_retention import TODAY, noon_ms
from tests.integration.test_warehouse_contract import event_block
from tests.unit.test_rec_planted import DAY_MS
from warehouse import Warehouse, open_warehouse
from warehouse.columns import DEAD_LETTER_COLUMNS
from warehouse.schema import MIGRATIONS_TABLE, SCHEMA_VERSION, TABLES

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)


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


def _replicas_agree(cluster: LocalCluster, database: str, prefix: str) -> list[int]:
    """Each server's events of one test (device prefix) once replication has caught up."""
    _on_every_server(cluster, f"SYSTEM SYNC REPLICA {database}.events_local")
    return _counts(cluster, f"SELECT count() FROM {database}.events_local FINAL WHERE device_id LIKE '{prefix}-%'")


def _events(url: str, prefix: str) -> tuple[int, int]:
    """(events of the devices `prefix-*` through the Distributed table, FINAL; those stored more than
    once with different content — redeliveries may only leave identical copies)."""
    store = open_warehouse(url)
    try:
        db, where = store.database, f"device_id LIKE '{prefix}-%'"
        count = int(store.query_rows(f"SELECT count() FROM {db}.events FINAL WHERE {where}")[0][0])
        differing = int(store.query_rows(
            f"SELECT count() FROM (SELECT device_id, seq, uniqExact(household_id, kind, device_ts_ms, firmware, "
            f"region, channel_id, programme_id, duration_s, power_state) AS versions "
            f"FROM {db}.events WHERE {where} GROUP BY device_id, seq HAVING versions > 1)")[0][0])
        return count, differing
    finally:
        store.close()


@pytest.fixture(scope="module")
def databases(clickhouse_cluster: LocalCluster) -> dict[str, str]:
    return migrated_cluster_databases(clickhouse_cluster, ("shared",))


@pytest.fixture
def shared_url(clickhouse_cluster: LocalCluster, databases: dict[str, str]) -> str:
    ensure_cluster_running(clickhouse_cluster)
    return databases["shared"]


def test_migrate_twice_every_table_distributed_over_replicated_locals(clickhouse_cluster: LocalCluster,
                                                                    shared_url: str) -> None:
    store = open_warehouse(shared_url)  # migrated once by the fixture: this is the second time
    try:
        store.migrate()  # idempotent: nothing left to do, nothing refused
        database = store.database
        versions = store.query_rows(f"SELECT version FROM {database}.schema_migrations FINAL ORDER BY version")
    finally:
        store.close()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
    names = sorted([*TABLES, MIGRATIONS_TABLE.name])
    for tables in _on_every_server(clickhouse_cluster, f"SELECT name, engine FROM system.tables "
                                                       f"WHERE database = '{database}' ORDER BY name"):
        engines = {str(n): str(e) for n, e in tables}
        assert sorted(n for n in engines if not str(n).endswith("_local")) == names
        assert all(engines[n] == "Distributed" for n in names)
        assert all(str(engines[f"{n}_local"]).startswith("Replicated") for n in names)
    # schema_migrations lives on the first shard, the same rows on both of its replicas
    per_server = _counts(clickhouse_cluster, f"SELECT count() FROM {database}.schema_migrations_local FINAL")
    assert per_server == [SCHEMA_VERSION, SCHEMA_VERSION, 0, 0]


def test_collector_exact_final_counts_and_redelivered_copies_collapse(
        mosquitto, clickhouse_cluster: LocalCluster, shared_url: str, tmp_path: Path) -> None:
    collector = Collector(mosquitto.url, shared_url, tmp_path)
    try:
        collector.start()
        traffic = Traffic(devices=40, messages_per_device=25, events_per_message=20, device_prefix="exact")
        messages = list(traffic.messages())
        publish(mosquitto.url, messages + messages[:30])  # agents that resent after a lost PUBACK
        collector.wait_rows(traffic.total_events + 30 * 20)
        collector.stop_cleanly()
    finally:
        collector.close()
    assert _events(shared_url, "exact") == (traffic.total_events, 0)
    shards = _counts(clickhouse_cluster, f"SELECT count() FROM {_database(shared_url)}.events_local FINAL "
                                         f"WHERE device_id LIKE 'exact-%'")
    assert shards[0] == shards[1] and shards[2] == shards[3]  # both replicas hold it (quorum 2)
    assert shards[0] + shards[2] == traffic.total_events and min(shards) > 0


def test_a_replica_killed_mid_stream_then_back_loses_and_doubles_nothing(
        mosquitto, clickhouse_cluster: LocalCluster, shared_url: str, tmp_path: Path) -> None:
    url = shared_url + "&insert_quorum_timeout=3"  # the dead replica's ZooKeeper session lives on for a while
    collector = Collector(mosquitto.url, url, tmp_path)
    replica = clickhouse_cluster.nodes[1][0]
    try:
        collector.start()
        traffic = Traffic(devices=40, messages_per_device=40, events_per_message=20, device_prefix="replica")
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
        collector.stop_cleanly()
    finally:
        collector.close()
        clickhouse_cluster.start()
    assert _events(shared_url, "replica") == (traffic.total_events, 0)
    shards = _replicas_agree(clickhouse_cluster, _database(shared_url), "replica")
    assert shards[0] == shards[1] and shards[2] == shards[3] and shards[0] + shards[2] == traffic.total_events


def test_a_whole_shard_stopped_then_back_loses_and_doubles_nothing(
        mosquitto, clickhouse_cluster: LocalCluster, shared_url: str, tmp_path: Path) -> None:
    collector = Collector(mosquitto.url, shared_url, tmp_path)
    shard = clickhouse_cluster.nodes[0]  # with the first entry point: the store fails over to the next
    try:
        collector.start()
        traffic = Traffic(devices=40, messages_per_device=30, events_per_message=20, device_prefix="shard")
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
        collector.stop_cleanly()
    finally:
        collector.close()
        clickhouse_cluster.start()
    assert _events(shared_url, "shard") == (traffic.total_events, 0)
    shards = _replicas_agree(clickhouse_cluster, _database(shared_url), "shard")
    assert shards[0] == shards[1] and shards[2] == shards[3] and shards[0] + shards[2] == traffic.total_events


def test_retention_drops_old_partitions_of_the_local_tables_on_every_shard(clickhouse_cluster: LocalCluster,
                                                                          shared_url: str) -> None:
    """Days in February and March 2026 (the other tests' rows are later): events on both shards."""
    store = open_warehouse(shared_url)
    db = store.database
    try:
        for k, ago in enumerate([40, 10, 0]):  # 60 events a day, households spread over both shards
            block = event_block(60, seq0=k * 60)
            block["device_ts_ms"] = np.full(60, noon_ms(TODAY - dt.timedelta(days=ago)), dtype=np.int64)
            block["household_id"] = np.arange(60, dtype=np.uint64) + 9000
            store.insert_columns("events", block)
        letters = {n: np.array([""] * 20, dtype=object) if t == "String" else np.zeros(20, dtype=np.dtype(t.lower()))
                   for n, t in DEAD_LETTER_COLUMNS.items()}
        letters["received_ms"] = np.full(20, noon_ms(dt.date(2026, 1, 20)), dtype=np.int64)
        letters["payload"] = np.array([b"x"] * 20, dtype=object)
        store.insert_columns("dead_letters", letters)  # rand() sharding: on both shards
    finally:
        store.close()
    per_server = _counts(clickhouse_cluster, f"SELECT count() FROM {db}.events_local WHERE household_id >= 9000")
    assert per_server[0] == per_server[1] and per_server[2] == per_server[3] and min(per_server) > 0
    command = [sys.executable, "-m", "warehouse", "retention", "--keep-days", "3", "--store", shared_url,
               "--today", TODAY.isoformat()]
    dry = subprocess.run([*command, "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would drop dead_letters partition 202601 (20 rows)", "would drop events partition 20260203 (60 rows)",
        "would drop events partition 20260305 (60 rows)", "would drop 3 partitions, 140 rows older than 2026-03-12"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "dropped 3 partitions, 140 rows older than 2026-03-12" in done.stdout, done.stderr
    _on_every_server(clickhouse_cluster, f"SYSTEM SYNC REPLICA {db}.events_local")
    _on_every_server(clickhouse_cluster, f"SYSTEM SYNC REPLICA {db}.dead_letters_local")
    old = f"household_id >= 9000 AND device_ts_ms < {noon_ms(TODAY - dt.timedelta(days=3))}"
    assert _counts(clickhouse_cluster, f"SELECT count() FROM {db}.events_local WHERE {old}") == [0, 0, 0, 0]
    assert _counts(clickhouse_cluster, f"SELECT count() FROM {db}.dead_letters_local") == [0, 0, 0, 0]
    kept = _counts(clickhouse_cluster, f"SELECT count() FROM {db}.events_local WHERE household_id >= 9000")
    assert kept[0] + kept[2] == 60 and kept[0] == kept[1]  # today's day untouched, on every replica
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing older than 3 days" in again.stdout


FORGET_DAY_MS = 1_796_083_200_000   # 2026-12-01 00:00 UTC


def _fill_households(store: Warehouse, households: list[int], day_ms: int = FORGET_DAY_MS) -> None:
    """Rows of `households` in every table that holds household ids, and a dead letter of each one's box."""
    db, ids = store.database, ", ".join(map(str, households))
    store.insert_columns("events", event_rows([(hh, dev, kind, day_ms + 60_000 * i, 101, 5, 600)
                                               for hh in households for dev in (0, 1)
                                               for i, kind in enumerate(("power", "view", "tune", "view"))]))
    rows = f"FROM (SELECT arrayJoin([{ids}]) AS hh)"
    day = f"toDate('{dt.datetime.fromtimestamp(day_ms / 1000, dt.UTC).date()}')"
    for sql in (
            f"subscribers (household_id, status, activated, ended, products, monthly_fee_cents, region, birth_month, "
            f"contact_opt_in, as_of, imported_ms) SELECT hh, 'active', toDate('2024-01-01'), toDate('1970-01-01'), "
            f"'basic', 1499, 'north', 0, '', {day}, 1 {rows}",
            f"subscriber_history (household_id, day, status, products, monthly_fee_cents, imported_ms) "
            f"SELECT hh, toDate('2024-01-01'), 'active', 'basic', 1499, 1 {rows}",
            f"household_tags (household_id, tag, level, score, day, computed_ms) "
            f"SELECT hh, 'interest.test', 'interest', 1, {day}, 1 {rows}",
            f"churn_scores (household_id, day, score, band, reasons, model_version, computed_ms) "
            f"SELECT hh, {day}, 0.5, 'high', ['no viewing for 9 days'], 'v', 1 {rows}",
            f"churn_alerts (household_id, day, score, reasons, model_version, created_ms) "
            f"SELECT hh, {day}, 0.5, ['no viewing for 9 days'], 'v', 1 {rows}"):
        store.execute(f"INSERT INTO {db}.{sql}")
    n = len(households)
    dead = {name: np.array([""] * n, dtype=object) if t == "String" else np.zeros(n, dtype=np.dtype(t.lower()))
            for name, t in DEAD_LETTER_COLUMNS.items()}
    dead["device_id"] = np.array([f"stb-{hh}-0" for hh in households], dtype=object)
    dead["received_ms"] = np.full(n, day_ms, dtype=np.int64)
    dead["payload"] = np.array([b"x"] * n, dtype=object)
    store.insert_columns("dead_letters", dead)


HOLDING = ("events", "subscribers", "subscriber_history", "household_tags", "churn_scores", "churn_alerts")


def _held_on_every_server(cluster: LocalCluster, db: str, households: list[int]) -> list[int]:
    """Rows of `households` (and their boxes' dead letters) in the local tables, server by server."""
    ids = ", ".join(map(str, households))
    boxes = ", ".join(f"'stb-{hh}-0'" for hh in households)
    sql = " + ".join([*(f"(SELECT count() FROM {db}.{t}_local WHERE household_id IN ({ids}))" for t in HOLDING),
                      f"(SELECT count() FROM {db}.dead_letters_local WHERE device_id IN ({boxes}))"])
    return _counts(cluster, f"SELECT {sql}")


def test_forget_deletes_on_every_replica_and_waits(clickhouse_cluster: LocalCluster, shared_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Households 501-502 forgotten; 503-504 written with them and 700-719 after them stay (written last
    with quorum, 700-719 sit in each partition's last part on both shards: see the next test)."""
    store = open_warehouse(shared_url)
    db = store.database
    try:
        _fill_households(store, [501, 502, 503, 504])
        _fill_households(store, list(range(700, 720)))
        keepers = _held_on_every_server(clickhouse_cluster, db, [503, 504, *range(700, 720)])
        requests = int(store.query_rows(f"SELECT count() FROM {db}.forget_requests")[0][0])
        assert crm_main(["forget", "501", "502", "--store", shared_url, "--no-progress"]) == 0
        assert "forgot 2 household(s): 28 rows removed (churn_alerts 2, churn_scores 2, dead_letters 2, " \
               "events 16, household_tags 2, subscriber_history 2, subscribers 2)" in capsys.readouterr().out
        # no waiting here: every replica has applied its mutations when the command returns (18.16 lists
        # them unfinished until the next quorum insert into each partition, for the last parts: 700-719's)
        assert _held_on_every_server(clickhouse_cluster, db, [501, 502]) == [0, 0, 0, 0]
        assert _held_on_every_server(clickhouse_cluster, db, [503, 504, *range(700, 720)]) == keepers
        assert store.query_rows(f"SELECT count() FROM {db}.events WHERE household_id IN (501, 502)") == [(0,)]
        assert store.query_rows(f"SELECT household_key, tables, rows FROM {db}.forget_requests "
                                f"ORDER BY requested_ms DESC LIMIT 2") == [(0, 7, 28), (0, 7, 28)]
        assert crm_main(["forget", "502", "501", "--store", shared_url, "--no-progress"]) == 0  # again: nothing
        assert "0 rows removed (nothing held)" in capsys.readouterr().out
        assert store.query_rows(f"SELECT count() FROM {db}.forget_requests") == [(requests + 4,)]
    finally:
        store.close()


def test_forget_says_when_the_last_quorum_part_holds_the_rows_then_finishes(clickhouse_cluster: LocalCluster,
                                                                            shared_url: str) -> None:
    """18.16 does not mutate a partition's last quorum insert (ClickHouse issue 7133): forget says so at
    once; after the next quorum insert into that partition it completes."""
    store = open_warehouse(shared_url)
    db, day_ms = store.database, FORGET_DAY_MS - DAY_MS     # a day of its own: household 601 written last
    try:
        store.insert_columns("events", event_rows([(601, 0, "view", day_ms + 60_000 * i, 101, 5, 600)
                                                   for i in range(5)]))
        with pytest.raises(ForgetBlocked, match="ClickHouse issue 7133") as blocked:
            forget(store, [601], timeout_s=60)
        assert blocked.value.held == {"events": 10}   # 5 rows on both replicas of its shard
        store.insert_columns("events", event_rows([(hh, 0, "view", day_ms, 101, 5, 600) for hh in range(800, 820)]))
        report = forget(store, [601], timeout_s=60)
        assert report.tables == {"events": 5} or report.rows == 0   # the first run's delete may be done already
        assert _counts(clickhouse_cluster, f"SELECT count() FROM {db}.events_local WHERE household_id = 601") == [
            0, 0, 0, 0]
        assert sum(_counts(clickhouse_cluster, f"SELECT count() FROM {db}.events_local WHERE household_id >= 800 "
                                               f"AND household_id < 820")[0::2]) == 20
    finally:
        store.close()
