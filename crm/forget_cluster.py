"""`crm forget` on a ClickHouse cluster: wait until every replica has dropped the households' rows.

crm/forget.py issues one `ALTER TABLE db.T_local ON CLUSTER c DELETE WHERE ...` a table (the
Distributed `T` holds no rows to mutate); 18.16 runs it once a shard and each replica then
applies the mutation itself, at its own pace. Through the Distributed tables a reader sees one
replica a shard, so the wait looks at every server (warehouse.cluster.EveryServer) until none
holds a row of the households in its local tables; then the Distributed tables are counted
once more, as readers see them.

ClickHouse before 20.3 never mutates the part that was the last `insert_quorum` insert into its
partition while it stays the last (ClickHouse issue 7133, fixed by pull request 9463), and
cluster stores insert with quorum 2 by default. Two consequences:
- `system.mutations` shows such a mutation unfinished (`is_done = 0`) until the next quorum
  insert into each partition it covers, even when those last parts hold none of the rows. So
  the test of done is the rows, counted on every replica, not `is_done`; the unfinished
  mutations are harmless (applied later to parts that hold nothing of the households).
- when the rows left are all in such last parts, waiting cannot help: ForgetBlocked says so at
  once instead of running into the timeout. The mutations stay queued and finish after the next
  quorum insert into those partitions (a day's events, the next subscriber import); forget run
  again then completes and records the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from crm.errors import CrmError
from warehouse import Warehouse
from warehouse.cluster import LOCAL_SUFFIX, EveryServer, Server

POLL_S: Final = 0.2
QUORUM_MUTATION_FIX: Final = (20, 3)  # the first release mutating the last quorum part


class ForgetBlocked(CrmError):
    """The rows left are all in parts 18.16 does not mutate yet (see the module docstring)."""

    retryable = True

    def __init__(self, message: str, *, held: dict[str, int]) -> None:
        super().__init__(message)
        self.held = held  # table -> rows waiting in last-quorum parts (over every replica)


def wait_on_every_server(warehouse: Warehouse, where: Mapping[str, str], params: Mapping[str, Any], *,
                         timeout_s: float, timeout_error: Callable[[str], Exception],
                         on_progress: Callable[[str], None] | None = None) -> None:
    """Return once no replica holds a row matching `where[table]` in `table_local`; ForgetBlocked or
    `timeout_error(reason)` otherwise."""
    db = warehouse.database
    tables = sorted(where)
    locals_ = tuple(t + LOCAL_SUFFIX for t in tables)
    left_sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count() AS n FROM {db}.{t}{LOCAL_SUFFIX} WHERE {where[t]}"
                                  for t in tables)
    old_server = warehouse.server_version()[:2] < QUORUM_MUTATION_FIX
    deadline = time.monotonic() + timeout_s
    with EveryServer(warehouse) as servers:
        while True:
            pending = sum(int(rows[0][0]) for _, rows in servers.query(
                "SELECT count() FROM system.mutations WHERE database = %(db)s AND table IN %(t)s AND is_done = 0",
                {"db": db, "t": locals_}))
            left = {(server, str(t)): int(n) for server, rows in servers.query(left_sql, params)
                    for t, n in rows if int(n)}
            if not left:
                seen = sum(int(warehouse.query_rows(f"SELECT count() FROM {db}.{t} WHERE {where[t]}", params)[0][0])
                           for t in tables)
                if not seen:
                    return
            if left and old_server:
                held = _quorum_held(servers, db, where, params, left)
                if sum(held.values()) == sum(left.values()):
                    by_table: dict[str, int] = {}
                    for (_, table), n in held.items():
                        by_table[table] = by_table.get(table, 0) + n
                    raise ForgetBlocked(
                        f"{sum(held.values()):,} rows of these households ("
                        + ", ".join(f"{t} {n:,}" for t, n in sorted(by_table.items()))
                        + ", counted on every replica) are in parts that were the last insert with insert_quorum "
                        "into their partition, which ClickHouse before 20.3 does not mutate (ClickHouse issue "
                        "7133): the deletes are queued and finish after the next quorum insert into those "
                        "partitions; run forget again then", held=by_table)
            rows_left = sum(left.values())
            if on_progress:
                on_progress(f"waiting: {rows_left:,} rows left on the replicas, {pending} mutations pending")
            if time.monotonic() > deadline:
                raise timeout_error(f"{pending} mutations pending, {rows_left:,} rows left on the replicas")
            time.sleep(POLL_S)


def _quorum_held(servers: EveryServer, db: str, where: Mapping[str, str], params: Mapping[str, Any],
                 left: Mapping[tuple[Server, str], int]) -> dict[tuple[Server, str], int]:
    """Of the rows left on each server, those in a part its shard's ZooKeeper names as the last quorum
    insert of a partition (`<zookeeper_path>/quorum/last_part`: `partition<TAB>part` lines)."""
    held = {}
    for (server, table), _ in sorted(left.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        local = table + LOCAL_SUFFIX
        paths = servers.query_on(server, "SELECT zookeeper_path FROM system.replicas WHERE database = %(db)s "
                                         "AND table = %(t)s", {"db": db, "t": local})
        if not paths:
            continue
        last = servers.query_on(server, "SELECT value FROM system.zookeeper WHERE path = %(p)s AND name = 'last_part'",
                                {"p": f"{paths[0][0]}/quorum"})
        parts = tuple(p for (value,) in last for p in last_quorum_parts(str(value)))
        if parts:
            n = servers.query_on(server, f"SELECT count() FROM {db}.{local} WHERE ({where[table]}) "
                                         f"AND _part IN %(parts)s", {**params, "parts": parts})
            held[server, table] = int(n[0][0])
    return held


def last_quorum_parts(value: str) -> list[str]:
    """The part names in a `quorum/last_part` node: one name (format 1) or, from format 2,
    a `version`/`parts count` header and then `partition<TAB>part` lines."""
    names = [line.split("\t")[-1].strip() for line in value.splitlines()]
    return [n for n in names if n and ":" not in n and " " not in n]
