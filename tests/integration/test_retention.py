"""`python -m warehouse retention`: whole old days go, nothing newer than N days is touched."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from collector.decoder import DeadLetter, dead_letter_columns
from tests.integration.test_warehouse_contract import event_block
from warehouse import Warehouse, open_warehouse
from warehouse.retention import drop, expired_partitions

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 3, 15)


def noon_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture(params=["server", "embedded"])
def store(request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    url = str(request.getfixturevalue("clickhouse_url" if request.param == "server" else "chdb_url"))
    wh = open_warehouse(url)
    wh.migrate()
    try:
        yield wh
    finally:
        if url.startswith("clickhouse"):
            wh.execute(f"DROP DATABASE IF EXISTS {wh.database}")
        wh.close()


def fill(wh: Warehouse, days_ago: list[int], letters_on: list[dt.date]) -> None:
    for k, ago in enumerate(days_ago):  # 10 events on each of these days (device time, noon UTC)
        block = event_block(10, seq0=k * 10)
        block["device_ts_ms"] = np.full(10, noon_ms(TODAY - dt.timedelta(days=ago)), dtype=np.int64)
        wh.insert_columns("events", block)
    letters = [DeadLetter(noon_ms(day), "not_msgpack", "x", "t", "d", 1, b"\x00") for day in letters_on]
    wh.insert_columns("dead_letters", dead_letter_columns(letters))


def day_counts(wh: Warehouse) -> dict[str, int]:
    return {str(d): int(c) for d, c in wh.query_rows(
        f"SELECT toString(toDate(toDateTime(intDiv(device_ts_ms, 1000)))) AS d, count() "
        f"FROM {wh.database}.events GROUP BY d ORDER BY d")}


def test_drops_whole_days_older_than_keep_days_and_nothing_newer(store: Warehouse) -> None:
    fill(store, [40, 10, 4, 3, 0], [dt.date(2026, 1, 20), dt.date(2026, 2, 27), dt.date(2026, 3, 1)])
    expired = expired_partitions(store, keep_days=3, today=TODAY)  # the cut-off: 2026-03-12
    assert {(p.table, p.partition, p.rows) for p in expired} == {
        ("events", "20260203", 10), ("events", "20260305", 10), ("events", "20260311", 10),
        ("dead_letters", "202601", 1), ("dead_letters", "202602", 1)}  # March reaches past the cut-off
    drop(store, expired)
    assert day_counts(store) == {"2026-03-12": 10, "2026-03-15": 10}
    assert store.query_rows(f"SELECT count() FROM {store.database}.dead_letters") == [(1,)]
    assert expired_partitions(store, keep_days=3, today=TODAY) == []  # a second run finds nothing


def test_cli_says_what_it_dropped(clickhouse_url: str) -> None:
    wh = open_warehouse(clickhouse_url)
    wh.migrate()
    try:
        fill(wh, [30, 1], [])
        command = [sys.executable, "-m", "warehouse", "retention", "--keep-days", "7", "--store", clickhouse_url,
                   "--today", TODAY.isoformat()]
        dry = subprocess.run([*command, "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0 and "would drop events partition 20260213 (10 rows)" in dry.stdout
        assert sum(day_counts(wh).values()) == 20
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "dropped 1 partitions, 10 rows older than 2026-03-08" in done.stdout
        assert day_counts(wh) == {"2026-03-14": 10}
        again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "nothing older than 7 days" in again.stdout
        bad = subprocess.run([*command[:4], "0", *command[5:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "--keep-days" in bad.stderr
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {wh.database}")
        wh.close()
