"""Cluster DDL (warehouse/cluster.py): replicated engines, Distributed tables, sharding keys,
migrations rewritten ON CLUSTER, and the single-server DDL left exactly as it was."""

from __future__ import annotations

import pytest

from warehouse import cluster, schema
from warehouse.errors import WarehouseRejected


def test_replicated_engines_take_path_and_replica_first() -> None:
    assert cluster.replicated_engine("ReplacingMergeTree(updated_ms)", "stb", "channels") == (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/stb/channels', '{replica}', updated_ms)")
    assert cluster.replicated_engine("MergeTree()", "db", "segments") == (
        "ReplicatedMergeTree('/clickhouse/tables/{shard}/db/segments', '{replica}')")
    with pytest.raises(WarehouseRejected, match="not a MergeTree"):
        cluster.replicated_engine("Log", "db", "x")


def test_local_table_is_the_single_server_table_replicated_on_the_cluster() -> None:
    ddl = cluster.local_ddl(schema.EVENTS, "stb", "c1")
    single = schema.EVENTS.ddl("stb")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS stb.events_local ON CLUSTER c1 (\n")
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/stb/events', '{replica}')" in ddl
    assert ddl.split("(\n", 1)[1].split(") ENGINE")[0] == single.split("(\n", 1)[1].split(") ENGINE")[0]
    assert ddl.endswith(single[single.index("\nPARTITION BY"):])


def test_distributed_table_aliases_materialized_columns_and_shards_by_household() -> None:
    local = [("household_id", "UInt64", "", ""), ("ts_ms", "Int64", "", ""),
             ("time", "DateTime", "MATERIALIZED", "toDateTime(intDiv(ts_ms, 1000))"), ("n", "UInt8", "DEFAULT", "1")]
    ddl = cluster.distributed_ddl("events", local, "stb", "c1")
    assert ddl == ("CREATE TABLE IF NOT EXISTS stb.events ON CLUSTER c1 (\n    household_id UInt64,\n"
                   "    ts_ms Int64,\n    time DateTime ALIAS toDateTime(intDiv(ts_ms, 1000)),\n"
                   "    n UInt8 DEFAULT 1\n) ENGINE = Distributed(c1, stb, events_local, intHash64(household_id))")


@pytest.mark.parametrize(("table", "key"), [
    ("events", "intHash64(household_id)"), ("deliveries", "intHash64(household_id)"),
    ("dead_letters", "rand()"), ("channels", "0"), ("campaigns", "0"), ("schema_migrations", "0"),
])
def test_sharding_keys(table: str, key: str) -> None:
    columns = (schema.TABLES.get(table) or schema.MIGRATIONS_TABLE).columns
    assert cluster.sharding_key(table, columns) == key


def test_every_table_has_a_cluster_form() -> None:
    for table in (*schema.TABLES.values(), schema.MIGRATIONS_TABLE):
        assert "ON CLUSTER stb" in cluster.local_ddl(table, "db", "stb")
    for migration in schema.MIGRATIONS:
        for statement in migration.statements:
            if statement.creates is None:
                sql, follows = cluster.on_cluster(statement.sql, "stb")
                assert "_local ON CLUSTER stb " in sql and follows in schema.TABLES


def test_alters_run_on_the_local_table_and_name_the_distributed_one() -> None:
    sql, follows = cluster.on_cluster("ALTER TABLE {db}.events ADD COLUMN x UInt8", "c")
    assert (sql, follows) == ("ALTER TABLE {db}.events_local ON CLUSTER c ADD COLUMN x UInt8", "events")
    assert cluster.on_cluster("CREATE DATABASE IF NOT EXISTS {db}", "c") == (
        "CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER c", None)
    with pytest.raises(WarehouseRejected, match="no cluster form"):
        cluster.on_cluster("OPTIMIZE TABLE {db}.events", "c")


def test_single_server_migrations_are_unchanged() -> None:
    """Without a cluster, migrate() sends exactly the statements it always sent."""
    sent: list[str] = []
    assert schema.migrate("stb", sent.append, lambda sql: []) == [m.version for m in schema.MIGRATIONS]
    assert not any("ON CLUSTER" in s or "_local" in s or "Distributed" in s for s in sent)
    assert sent[1] == schema.MIGRATIONS_TABLE.ddl("stb")
    assert sent[2] == schema.EVENTS.ddl("stb")


def test_cluster_migration_creates_local_then_distributed() -> None:
    sent: list[str] = []

    def rows(sql: str) -> list[tuple[object, ...]]:
        if "system.columns" in sql and "_local'" in sql:
            return [("version", "UInt32", "", "")]
        return []

    schema.migrate("stb", sent.append, rows, cluster="c")
    assert sent[0] == "CREATE DATABASE IF NOT EXISTS stb ON CLUSTER c"
    assert sent[1].startswith("CREATE TABLE IF NOT EXISTS stb.schema_migrations_local ON CLUSTER c (")
    assert sent[2].startswith("CREATE TABLE IF NOT EXISTS stb.schema_migrations ON CLUSTER c (")
    assert "Distributed(c, stb, schema_migrations_local, 0)" in sent[2]
    with pytest.raises(WarehouseRejected, match="bad cluster name"):
        schema.migrate("stb", sent.append, rows, cluster="bad-name")


def test_retention_on_a_cluster_counts_each_shard_once_by_its_fullest_replica() -> None:
    from warehouse.retention import shard_totals

    answers = [(1, [("events_local", "20260203", 10), ("dead_letters_local", "202601", 2)]),
               (1, [("events_local", "20260203", 7)]),        # a lagging replica of shard 1
               (2, [("events_local", "20260203", 5)]), (2, [("events_local", "20260203", 5)])]
    assert shard_totals(answers) == {("events", "20260203"): 15, ("dead_letters", "202601"): 2}
    assert shard_totals([(1, []), (2, [])]) == {}


def test_every_server_refuses_a_store_that_is_not_a_cluster() -> None:
    from warehouse import open_warehouse

    store = open_warehouse("clickhouse://127.0.0.1:1/db")   # nothing listens: refused before connecting
    try:
        assert cluster.cluster_of(store) == ""
        with pytest.raises(WarehouseRejected, match="not a cluster store"):
            cluster.EveryServer(store)
    finally:
        store.close()
    with_cluster = open_warehouse("clickhouse://127.0.0.1:1,127.0.0.1:2/db?cluster=c1")
    try:
        assert cluster.cluster_of(with_cluster) == "c1"
    finally:
        with_cluster.close()
