"""One contract, both stores: the ClickHouse 18.16 server and embedded chdb."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from collector.decoder import DeadLetter, Decoder, dead_letter_columns
from proto.telemetry import encode_batch, make_event
from warehouse import Warehouse, WarehouseLocked, WarehouseRejected, WarehouseUnavailable, open_warehouse
from warehouse.columns import EVENT_COLUMNS

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000)


@pytest.fixture(params=["clickhouse", "chdb"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    url = request.getfixturevalue("clickhouse_url" if request.param == "clickhouse" else "chdb_url")
    wh = open_warehouse(url)
    wh.migrate()
    yield wh
    wh.close()


def event_block(devices: int = 3, per_device: int = 4) -> dict[str, np.ndarray]:
    decoder = Decoder()
    accepted = []
    for d in range(devices):
        events = [make_event("view", NOW - 60_000, 101, 2**63 + 5, 1500, 2), make_event("tune", NOW, 101, 102, 2),
                  make_event("epg_click", NOW, "guide", "open", 7), make_event("vod_play", NOW, "asset-é", 10, 20),
                  make_event("power", NOW, 2), make_event("rec_impression", NOW, "req-1", "als-7", 9, 1),
                  make_event("rec_click", NOW, "req-1", 9, 1)][:per_device]
        payload = encode_batch(device_id=f"box-{d}", household_id=500 + d, firmware="4.2", seq0=100,
                               sent_ms=NOW, events=events)
        accepted.append(decoder.accept(f"stb/v1/north/box-{d}/events", payload, NOW))
    return decoder.decode(accepted).events  # type: ignore[arg-type]


def test_migrate_is_idempotent(warehouse: Warehouse) -> None:
    warehouse.migrate()
    warehouse.migrate()
    rows = warehouse.query_rows(f"SELECT version FROM {warehouse.database}.schema_migrations FINAL")
    assert rows == [(1,)]


def test_events_round_trip_every_column(warehouse: Warehouse) -> None:
    block = event_block(devices=2, per_device=7)
    warehouse.insert_columns("events", block)
    back = warehouse.query_columns(f"SELECT {', '.join(EVENT_COLUMNS)}, toUnixTimestamp(time) AS t "
                                   f"FROM {warehouse.database}.events ORDER BY device_id, seq")
    kinds = ["view", "tune", "epg_click", "vod_play", "power", "rec_impression", "rec_click"]
    assert list(back["kind"]) == kinds * 2
    for name in EVENT_COLUMNS:
        if name == "kind":
            continue
        assert list(back[name]) == list(block[name]), name
    assert list(back["t"]) == list(block["ts_ms"] // 1000)


def test_duplicates_collapse_with_final(warehouse: Warehouse) -> None:
    block = event_block()
    for _ in range(3):  # redeliveries: the same (device_id, seq) again
        warehouse.insert_columns("events", block)
    db = warehouse.database
    assert warehouse.query_rows(f"SELECT count() FROM {db}.events")[0][0] == 36
    assert warehouse.query_rows(f"SELECT count() FROM {db}.events FINAL")[0][0] == 12


def test_dead_letters_keep_raw_bytes(warehouse: Warehouse) -> None:
    raw = bytes(range(256)) + b"\xc1\xff not utf-8"
    letters = [DeadLetter(NOW, "not_msgpack", "ExtraData", "stb/v1/n/x/events", "x", len(raw), raw),
               DeadLetter(NOW, "bad_topic", "", "weird/topic", "", 0, b"")]
    warehouse.insert_columns("dead_letters", dead_letter_columns(letters))
    rows = warehouse.query_rows(f"SELECT reason, payload, payload_size FROM {warehouse.database}.dead_letters "
                                "ORDER BY reason DESC")
    assert [(r, bytes(p) if isinstance(p, bytes | bytearray) else p.encode("latin-1"), n) for r, p, n in rows] == [
        ("not_msgpack", raw, len(raw)), ("bad_topic", b"", 0)]


def test_epg_tables_replace_by_version(warehouse: Warehouse) -> None:
    def channels(name: str, version: int) -> dict[str, np.ndarray]:
        return {"channel_id": np.array([101], dtype=np.uint32), "xmltv_id": np.array(["c101.sim"], dtype=object),
                "name": np.array([name], dtype=object), "genre": np.array(["news"], dtype=object),
                "updated_ms": np.array([version], dtype=np.int64)}

    warehouse.insert_columns("channels", channels("Old name", 1))
    warehouse.insert_columns("channels", channels("New name", 2))
    assert warehouse.query_rows(f"SELECT name FROM {warehouse.database}.channels FINAL") == [("New name",)]


def test_rejected_statement_is_permanent(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseRejected):
        warehouse.query_rows(f"SELECT no_such_column FROM {warehouse.database}.events")


def test_server_outage_is_retryable_and_recovers(clickhouse_server, clickhouse_url: str) -> None:  # type: ignore[no-untyped-def]
    wh = open_warehouse(clickhouse_url)
    wh.migrate()
    clickhouse_server.stop()
    try:
        with pytest.raises(WarehouseUnavailable):
            wh.insert_columns("events", event_block())
    finally:
        clickhouse_server.start()
    wh.insert_columns("events", event_block())  # the same object reconnects by itself
    assert wh.query_rows(f"SELECT count() FROM {wh.database}.events")[0][0] == 12
    wh.close()


def test_chdb_folder_is_locked_to_one_process(chdb_url: str) -> None:
    wh = open_warehouse(chdb_url)
    wh.migrate()
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom warehouse import open_warehouse, WarehouseLocked\n"
             f"try:\n    open_warehouse({chdb_url!r})\nexcept WarehouseLocked as e:\n    print('LOCKED', e)\n"
             "    sys.exit(3)\n"], capture_output=True, text=True, timeout=60)
        assert probe.returncode == 3, probe.stderr[-2000:]
        assert "in use by another process" in probe.stdout
    finally:
        wh.close()
    assert WarehouseLocked.retryable is False
