"""`python -m crm forget HOUSEHOLD...`: remove households from every table, and say when it is done.

    report = forget(warehouse, [1042, 1043], timeout_s=600)

Tables are found, not listed: every MergeTree-family table of the database with a `household_id`
column (events, subscribers and their history, profiles, tags, churn scores and alerts, and any
table added later), plus every table with a `device_id` column but no `household_id` (dead
letters), for the households' boxes as the events name them (read before anything is deleted).
Each table holding rows of them gets one `ALTER TABLE ... DELETE WHERE ...` mutation (18.16 and
chdb alike); the command then polls `system.mutations` until none of those tables has an unfinished
mutation and re-counts: it returns only when no row is left, and fails (non-zero, one line) if the
mutations do not finish within the timeout. Running it again finds nothing and exits 0.

The request is recorded in `forget_requests` with the times and how many tables and rows were
removed — never the id: its `household_key` is the household's keyed pseudonym (the 64 bits of
stbcommon.pseudonym with `[privacy] key_file`), so only the key's holder can tell whose request
it was; without a key it is 0 (an unkeyed hash could be reversed by trying every id).

On a cluster store (docs/DEPLOYMENT.md) the tables are found by their shard-local tables
(`T_local`, where the rows are) and each delete is `ALTER TABLE db.T_local ON CLUSTER c DELETE
WHERE ...`; the wait then covers every replica (crm/forget_cluster.py, which also explains why
18.16 can refuse to finish it while quorum-inserted parts hold the rows: ForgetBlocked).

Not covered: model files on disk (the recommender's artifact holds household ids until its next
training; churn models hold none), and data arriving after the request (a box still reporting).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from crm.errors import CrmError
from crm.settings import CrmSettings
from stbcommon.pseudonym import Pseudonymizer
from warehouse import Warehouse
from warehouse.cluster import LOCAL_SUFFIX, cluster_of

POLL_S = 0.2


class ForgetTimeout(CrmError):
    """The delete mutations did not finish in time (they go on in the server; run forget again)."""

    retryable = True


@dataclass(frozen=True)
class ForgetReport:
    households: int
    rows: int                  # rows removed
    tables: dict[str, int]     # table -> rows removed (tables that held any)
    seconds: float


def _tables(warehouse: Warehouse, suffix: str = "") -> tuple[list[str], list[str]]:
    """(tables with household_id, tables with device_id but no household_id), MergeTree family only.
    With `suffix` (a cluster: "_local"), the tables whose `NAME + suffix` is such a table."""
    rows = warehouse.query_rows(
        "SELECT c.table, groupArray(c.name) FROM system.columns AS c WHERE c.database = %(db)s "
        "AND c.name IN ('household_id', 'device_id') GROUP BY c.table", {"db": warehouse.database})
    engines = dict(warehouse.query_rows("SELECT name, engine FROM system.tables WHERE database = %(db)s",
                                        {"db": warehouse.database}))
    by_household: list[str] = []
    by_device: list[str] = []
    for table, names in rows:
        name = str(table).removesuffix(suffix) if str(table).endswith(suffix) else ""
        if not name or "MergeTree" not in str(engines.get(table, "")) or name.startswith("crm_stage_"):
            continue
        (by_household if "household_id" in names else by_device).append(name)
    return sorted(by_household), sorted(by_device)


def forget(warehouse: Warehouse, households: Sequence[int], *, timeout_s: float = 600.0,
           on_progress: Callable[[str], None] | None = None, pseudonyms: Pseudonymizer | None = None) -> ForgetReport:
    started = time.monotonic()
    requested_ms = int(time.time() * 1000)
    db = warehouse.database
    cluster = cluster_of(warehouse)
    ids = ", ".join(str(int(h)) for h in sorted(set(households)))    # integers only: nothing else reaches SQL
    by_household, by_device = _tables(warehouse, LOCAL_SUFFIX if cluster else "")
    where = {t: f"household_id IN ({ids})" for t in by_household}
    if by_device and "events" in by_household:
        devices = [str(d) for (d,) in warehouse.query_rows(
            f"SELECT DISTINCT device_id FROM {db}.events WHERE household_id IN ({ids})")]
        if devices:
            where.update({t: "device_id IN %(devices)s" for t in by_device})
    else:
        devices = []
    params = {"devices": tuple(devices)}
    before = {t: int(warehouse.query_rows(f"SELECT count() FROM {db}.{t} WHERE {c}", params)[0][0])
              for t, c in where.items()}
    doomed = {t: n for t, n in before.items() if n}
    for table in doomed:
        target = f"{db}.{table}{LOCAL_SUFFIX} ON CLUSTER {cluster}" if cluster else f"{db}.{table}"
        warehouse.query_rows(f"ALTER TABLE {target} DELETE WHERE {where[table]}", params)
        if on_progress:
            on_progress(table)

    def timeout(state: str) -> ForgetTimeout:
        return ForgetTimeout(f"the deletes in {', '.join(doomed)} did not finish within {timeout_s:.0f}s "
                             f"({state}); they continue in the server: run forget again")

    if where and cluster:   # every table: a replica the Distributed count did not read may still hold rows
        from crm.forget_cluster import wait_on_every_server

        wait_on_every_server(warehouse, where, params, timeout_s=timeout_s, timeout_error=timeout,
                             on_progress=on_progress)
    elif doomed:
        _wait(warehouse, {t: where[t] for t in doomed}, params, timeout_s, timeout, on_progress)
    rows = sum(doomed.values())
    unique = sorted({int(h) for h in households})
    n = len(unique)
    warehouse.insert_columns("forget_requests", {
        "household_key": np.array([int(pseudonyms(h)[1:], 16) if pseudonyms else 0 for h in unique], dtype=np.uint64),
        "requested_ms": np.full(n, requested_ms, dtype=np.int64),
        "completed_ms": np.full(n, int(time.time() * 1000), dtype=np.int64),
        "tables": np.full(n, len(doomed), dtype=np.uint32), "rows": np.full(n, rows, dtype=np.uint64)})
    return ForgetReport(len(set(households)), rows, doomed, time.monotonic() - started)


def _wait(warehouse: Warehouse, where: dict[str, str], params: dict[str, tuple[str, ...]], timeout_s: float,
          timeout: Callable[[str], ForgetTimeout], on_progress: Callable[[str], None] | None) -> None:
    """One server or chdb: until no mutation of these tables is pending and no row matches."""
    db = warehouse.database
    names = ", ".join(f"'{t}'" for t in where)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = int(warehouse.query_rows(f"SELECT count() FROM system.mutations WHERE database = %(db)s "
                                           f"AND table IN ({names}) AND is_done = 0", {"db": db})[0][0])
        left = sum(int(warehouse.query_rows(f"SELECT count() FROM {db}.{t} WHERE {c}", params)[0][0])
                   for t, c in where.items()) if not pending else -1    # re-count only once no mutation is pending
        if left == 0:
            return
        if on_progress:
            on_progress(f"waiting: {pending} mutations pending" if pending else f"{left:,} rows left")
        if time.monotonic() > deadline:
            raise timeout(f"{pending} mutations pending")
        time.sleep(POLL_S)


def run_forget(args: argparse.Namespace, settings: CrmSettings, warehouse: Warehouse) -> int:
    from tqdm import tqdm

    key_file = settings.privacy.key_file
    pseudonyms = Pseudonymizer.from_file(key_file) if key_file else None
    with tqdm(unit="step", disable=args.no_progress, desc="forget", bar_format="{desc}: {postfix} [{elapsed}]") as bar:
        def progress(what: str) -> None:
            bar.set_postfix_str(what)   # a table whose delete was issued, then the wait

        report = forget(warehouse, args.households, timeout_s=float(args.timeout), on_progress=progress,
                        pseudonyms=pseudonyms)
    tables = ", ".join(f"{t} {n:,}" for t, n in sorted(report.tables.items())) or "nothing held"
    print(f"forgot {report.households} household(s): {report.rows:,} rows removed ({tables}) in "
          f"{report.seconds:.1f}s; request recorded")
    return 0
