"""The schema on a ClickHouse cluster (a store URL with `?cluster=NAME`, docs/SCHEMA.md "Cluster").

Every table of warehouse.schema becomes two, both created `ON CLUSTER NAME`:

    db.T_local   Replicated<Engine>('/clickhouse/tables/{shard}/db/T', '{replica}', <engine args>)
                 on every server: the rows of its shard, copied between the shard's replicas
    db.T         Distributed(NAME, db, T_local, <sharding key>): what every query and insert names

Sharding: tables with `household_id` by `intHash64(household_id)`, so a redelivered event
meets its first copy on one shard (ReplacingMergeTree collapses only within a shard) and a
household's rows are read where they live. `dead_letters` (append-only, grows with the
traffic, no key to collapse on) by `rand()`. The rest (EPG, campaigns and their logs,
segments, ratings, the console's users and audit, forget requests, schema_migrations) are
small registries whose ReplacingMergeTree keys are not households: all their rows go to the
first shard (constant key 0), replicated there, so a version and its replacement always meet
and `FINAL` holds; queries over several tables ship them where needed (GLOBAL IN/JOIN, see
warehouse/server.py's `distributed_product_mode`).

The Distributed table lists the local table's columns, but MATERIALIZED ones as ALIAS of the
same expression: 18.16 forwards every column of a Distributed insert to the shards, and a
shard refuses a value for a MATERIALIZED column; an ALIAS is computed at read time instead.

Migrations: ALTERs run `ON CLUSTER` on `T_local` (on a replicated table 18.16 runs them once
per shard and replication carries them). 18.16 refuses `ALTER ... ON CLUSTER` of the
Distributed table itself (code 371, "isn't replicated, but shard is replicated"), so after
each migration the Distributed tables are brought to their local table's columns by
`DROP TABLE ... ON CLUSTER` and `CREATE ... ON CLUSTER` (a Distributed table holds no data;
inserts in that instant fail and are retried). Every step may be repeated, as on one server.

Maintenance that must see every server (retention's partitions, forget's mutations: a
Distributed table has no parts and no mutations, and reads one replica a shard) goes through
`EveryServer`: one connection to each server of the cluster as `system.clusters` lists it
(the addresses the servers use for each other), with the store's user, password and options.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Self

from warehouse.errors import WarehouseRejected, WarehouseUnavailable
from warehouse.schema import Statement, Table, run_statement
from warehouse.url import parse_store_url

if TYPE_CHECKING:
    from warehouse.base import Warehouse
    from warehouse.server import ServerWarehouse

# Tables without household_id that still spread over the shards (see the module docstring).
SHARDING_OVERRIDES: Final = {"dead_letters": "rand()"}
LOCAL_SUFFIX: Final = "_local"
ZOOKEEPER_PATH: Final = "/clickhouse/tables/{shard}/%s/%s"

_ENGINE = re.compile(r"(\w*MergeTree)\((.*)\)", re.DOTALL)
_ALTER = re.compile(r"ALTER TABLE (\{db\}|\w+)\.(\w+) (.*)", re.DOTALL)

Column = tuple[str, str, str, str]  # name, type, default_kind, default_expression (system.columns)


def sharding_key(name: str, columns: Iterable[str]) -> str:
    if name in SHARDING_OVERRIDES:
        return SHARDING_OVERRIDES[name]
    return "intHash64(household_id)" if "household_id" in columns else "0"


def replicated_engine(engine: str, database: str, table: str) -> str:
    """`ReplacingMergeTree(v)` -> `ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', v)`."""
    match = _ENGINE.fullmatch(engine.strip())
    if match is None:
        raise WarehouseRejected(f"table {table}: engine {engine!r} is not a MergeTree and cannot be replicated")
    args = [f"'{ZOOKEEPER_PATH % (database, table)}'", "'{replica}'"]
    args += [match[2].strip()] if match[2].strip() else []
    return f"Replicated{match[1]}({', '.join(args)})"


def local_ddl(table: Table, database: str, cluster: str) -> str:
    """CREATE of a schema.Table's shard-local replicated table, on every server of the cluster."""
    local = replace(table, name=table.name + LOCAL_SUFFIX,
                    engine=replicated_engine(table.engine, database, table.name))
    ddl = local.ddl(database)
    head = f"CREATE TABLE IF NOT EXISTS {database}.{local.name} ("
    return ddl.replace(head, f"CREATE TABLE IF NOT EXISTS {database}.{local.name} ON CLUSTER {cluster} (", 1)


def distributed_columns(local: Iterable[Column]) -> list[Column]:
    """The Distributed table's columns for a local table's (MATERIALIZED becomes ALIAS)."""
    return [(name, ch_type, "ALIAS" if kind in ("MATERIALIZED", "ALIAS") else kind, expr)
            for name, ch_type, kind, expr in local]


def distributed_ddl(name: str, local: Iterable[Column], database: str, cluster: str) -> str:
    columns = distributed_columns(local)
    cols = [f"    {n} {t}" + (f" {k} {e}" if k else "") for n, t, k, e in columns]
    key = sharding_key(name, [c[0] for c in columns])
    return (f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} (\n" + ",\n".join(cols) +
            f"\n) ENGINE = Distributed({cluster}, {database}, {name}{LOCAL_SUFFIX}, {key})")


def on_cluster(sql: str, cluster: str) -> tuple[str, str | None]:
    """A single-server DDL statement (`{db}` placeholders) as it runs on the cluster, and the
    table whose Distributed table must follow it (None when none)."""
    if sql.startswith("CREATE DATABASE IF NOT EXISTS {db}"):
        return sql + f" ON CLUSTER {cluster}", None
    match = _ALTER.fullmatch(sql)
    if match is None:
        raise WarehouseRejected(f"no cluster form for the statement {sql[:80]!r}")
    return f"ALTER TABLE {match[1]}.{match[2]}{LOCAL_SUFFIX} ON CLUSTER {cluster} {match[3]}", match[2]


def sync_distributed(name: str, database: str, cluster: str, execute: Callable[[str], None],
                     query_rows: Callable[[str], list[tuple[Any, ...]]]) -> None:
    """Create `db.name` over `db.name_local`, or re-create it when its columns differ from the local's."""
    def columns(table: str) -> list[Column]:
        rows = query_rows(f"SELECT name, type, default_kind, default_expression FROM system.columns "
                          f"WHERE database = '{database}' AND table = '{table}'")
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    local = columns(name + LOCAL_SUFFIX)
    if not local:
        raise WarehouseRejected(f"{database}.{name}{LOCAL_SUFFIX} is missing on the server this store reached")
    current = columns(name)
    if current == distributed_columns(local):
        return
    if current:
        execute(f"DROP TABLE IF EXISTS {database}.{name} ON CLUSTER {cluster}")
    execute(distributed_ddl(name, local, database, cluster))


def run_on_cluster(statement: Statement, database: str, cluster: str, execute: Callable[[str], None],
                   query_rows: Callable[[str], list[tuple[Any, ...]]]) -> None:
    """One migration statement on the cluster: on the local tables, then their Distributed tables."""
    if statement.creates is not None:
        run_statement(Statement(local_ddl(statement.creates, database, cluster), statement.done_codes),
                      database, execute)
        sync_distributed(statement.creates.name, database, cluster, execute, query_rows)
        return
    sql, follows = on_cluster(statement.sql, cluster)
    run_statement(Statement(sql, statement.done_codes), database, execute)
    if follows is not None:
        sync_distributed(follows, database, cluster, execute, query_rows)


def cluster_of(warehouse: Warehouse) -> str:
    """The cluster a store works on, from its URL: '' for one server or chdb."""
    return parse_store_url(warehouse.url).cluster


@dataclass(frozen=True)
class Server:
    """One server of a cluster, as `system.clusters` names it."""

    shard: int
    replica: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (shard {self.shard}, replica {self.replica})"


class EveryServer:
    """A connection to each server of the store's cluster, for the system tables of every replica.

        with EveryServer(store) as servers:
            for server, rows in servers.query("SELECT ... FROM system.mutations ..."): ...

    A server that does not answer fails the call (WarehouseUnavailable naming it): what it holds
    cannot be known, so nothing may be concluded without it."""

    def __init__(self, warehouse: Warehouse) -> None:
        from warehouse.server import ServerWarehouse

        cluster = cluster_of(warehouse)
        if not cluster or not isinstance(warehouse, ServerWarehouse):
            raise WarehouseRejected(f"{warehouse.url} is not a cluster store", url=warehouse.url)
        rows = warehouse.query_rows("SELECT shard_num, replica_num, host_name, port FROM system.clusters "
                                    "WHERE cluster = %(c)s ORDER BY shard_num, replica_num", {"c": cluster})
        if not rows:
            raise WarehouseRejected(f"cluster {cluster!r} is not in remote_servers of the server reached",
                                    url=warehouse.url)
        self.cluster = cluster
        self.servers = [Server(int(s), int(r), str(h), int(p)) for s, r, h, p in rows]
        store = warehouse._store  # the same credentials and options, one host, no cluster settings
        self._connections: list[ServerWarehouse] = [
            ServerWarehouse(replace(store, host=s.host, port=s.port, alt_hosts=(), cluster="", cluster_options={}))
            for s in self.servers]

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Server, list[tuple[Any, ...]]]]:
        """The rows of `sql` on every server, in system.clusters' order."""
        return [(server, self.query_on(server, sql, params)) for server in self.servers]

    def query_on(self, server: Server, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of `sql` on one of `servers`."""
        try:
            return self._connections[self.servers.index(server)].query_rows(sql, params)
        except WarehouseUnavailable as exc:
            raise WarehouseUnavailable(f"server {server} of cluster {self.cluster} did not answer: {exc}",
                                       url=exc.url, code=exc.code) from exc

    def close(self) -> None:
        for connection in self._connections:
            connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
