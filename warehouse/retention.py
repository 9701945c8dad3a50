"""Retention: drop whole days of events older than N days (ClickHouse 18.16 has no TTL).

`events` is partitioned by the device's day (YYYYMMDD) and `dead_letters` by the month
they were received (YYYYMM); a partition is dropped only when every day it covers is older
than the cut-off, so nothing newer than N days is ever touched. Dropping a partition is a
metadata operation on both stores: instant, and nothing is rewritten.

    python -m warehouse retention --keep-days 400 --store clickhouse://host:9000/stb [--dry-run]

On a cluster (docs/DEPLOYMENT.md) the parts are those of `NAME_local` on every server (the
Distributed `NAME` has none): a partition's rows are each shard's count (its fullest replica),
summed; the drop is one `ALTER TABLE db.NAME_local ON CLUSTER c DROP PARTITION ...` a table,
which runs once a shard and replication removes it from the shard's other replicas. Every
server must answer (a partition on a server that did not could be missed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from warehouse.base import Warehouse
from warehouse.cluster import LOCAL_SUFFIX, EveryServer, cluster_of

# table -> how its partition id reads as the last day it can hold
_PARTITIONED_BY_DAY = ("events",)
_PARTITIONED_BY_MONTH = ("dead_letters",)


@dataclass(frozen=True)
class Dropped:
    table: str
    partition: str
    rows: int


def last_day(partition: str, by_month: bool) -> dt.date | None:
    """The newest day a partition can hold, or None for an id that is not a date (left alone)."""
    try:
        if by_month:
            year, month = int(partition[:4]), int(partition[4:6])
            following = dt.date(year + month // 12, month % 12 + 1, 1)
            return following - dt.timedelta(days=1) if len(partition) == 6 else None
        return dt.datetime.strptime(partition, "%Y%m%d").date() if len(partition) == 8 else None
    except ValueError:
        return None


_PARTS_SQL = ("SELECT table, partition_id, sum(rows) FROM system.parts "
              "WHERE database = %(db)s AND active AND table IN %(tables)s GROUP BY table, partition_id")


def expired_partitions(warehouse: Warehouse, keep_days: int, today: dt.date) -> list[Dropped]:
    """Partitions of the event tables whose every day is before today - keep_days."""
    cutoff = today - dt.timedelta(days=keep_days)
    tables = (*_PARTITIONED_BY_DAY, *_PARTITIONED_BY_MONTH)
    if cluster_of(warehouse):
        counts = _cluster_partitions(warehouse, tables)
    else:
        counts = {(str(t), str(p)): int(n) for t, p, n in warehouse.query_rows(
            _PARTS_SQL, {"db": warehouse.database, "tables": tables})}
    out = []
    for (table, partition), count in sorted(counts.items()):
        newest = last_day(partition, by_month=table in _PARTITIONED_BY_MONTH)
        if newest is not None and newest < cutoff:
            out.append(Dropped(table, partition, count))
    return out


def _cluster_partitions(warehouse: Warehouse, tables: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """(table, partition) -> rows over the shards, from `table_local` on every server."""
    with EveryServer(warehouse) as servers:
        answers = servers.query(_PARTS_SQL, {"db": warehouse.database,
                                             "tables": tuple(t + LOCAL_SUFFIX for t in tables)})
    return shard_totals([(server.shard, rows) for server, rows in answers])


def shard_totals(answers: list[tuple[int, list[tuple[Any, ...]]]]) -> dict[tuple[str, str], int]:
    """(shard, rows of (table_local, partition, rows)) from every server -> (table, partition) -> rows:
    a shard's count is its fullest replica's (a lagging one holds fewer), the shards' counts add up."""
    per_shard: dict[tuple[str, str, int], int] = {}
    for shard, rows in answers:
        for local, partition, count in rows:
            key = (str(local).removesuffix(LOCAL_SUFFIX), str(partition), shard)
            per_shard[key] = max(per_shard.get(key, 0), int(count))
    out: dict[tuple[str, str], int] = {}
    for (table, partition, _), count in per_shard.items():
        out[table, partition] = out.get((table, partition), 0) + count
    return out


def drop(warehouse: Warehouse, partitions: list[Dropped]) -> None:
    # partition_id of an integer key is its decimal value: a literal, never user text.
    cluster = cluster_of(warehouse)
    if not cluster:
        for p in partitions:
            warehouse.execute(f"ALTER TABLE {warehouse.database}.{p.table} DROP PARTITION {int(p.partition)}")
        return
    for table in sorted({p.table for p in partitions}):
        commands = ", ".join(f"DROP PARTITION {int(p.partition)}" for p in partitions if p.table == table)
        warehouse.execute(f"ALTER TABLE {warehouse.database}.{table}{LOCAL_SUFFIX} ON CLUSTER {cluster} {commands}")
