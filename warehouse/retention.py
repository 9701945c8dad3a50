"""Retention: drop whole days of events older than N days (ClickHouse 18.16 has no TTL).

`events` is partitioned by the device's day (YYYYMMDD) and `dead_letters` by the month
they were received (YYYYMM); a partition is dropped only when every day it covers is older
than the cut-off, so nothing newer than N days is ever touched. Dropping a partition is a
metadata operation on both stores: instant, and nothing is rewritten.

    python -m warehouse retention --keep-days 400 --store clickhouse://host:9000/stb [--dry-run]
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from warehouse.base import Warehouse

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


def expired_partitions(warehouse: Warehouse, keep_days: int, today: dt.date) -> list[Dropped]:
    """Partitions of the event tables whose every day is before today - keep_days."""
    cutoff = today - dt.timedelta(days=keep_days)
    rows = warehouse.query_rows(
        "SELECT table, partition_id, sum(rows) FROM system.parts "
        "WHERE database = %(db)s AND active AND table IN %(tables)s GROUP BY table, partition_id "
        "ORDER BY table, partition_id",
        {"db": warehouse.database, "tables": (*_PARTITIONED_BY_DAY, *_PARTITIONED_BY_MONTH)})
    out = []
    for table, partition, count in rows:
        newest = last_day(str(partition), by_month=table in _PARTITIONED_BY_MONTH)
        if newest is not None and newest < cutoff:
            out.append(Dropped(str(table), str(partition), int(count)))
    return out


def drop(warehouse: Warehouse, partitions: list[Dropped]) -> None:
    for p in partitions:
        # partition_id of an integer key is its decimal value: a literal, never user text.
        warehouse.execute(f"ALTER TABLE {warehouse.database}.{p.table} DROP PARTITION {int(p.partition)}")
