"""One contract, two stores: every test in TestContract runs against a real clickhouse-server
(18.16, from the session fixture) and an embedded chdb folder, through the same Warehouse
protocol. Store-specific behaviour (outage and recovery, chdb's folder lock) follows."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proto.telemetry import KINDS
from stbcommon.localservers import ClickHouseServer
from warehouse import (
    Warehouse,
    WarehouseDataRejected,
    WarehouseError,
    WarehouseLocked,
    WarehouseRejected,
    WarehouseUnavailable,
    open_warehouse,
)
from warehouse.columns import DEAD_LETTER_COLUMNS, EVENT_COLUMNS
from warehouse.schema import MIGRATIONS, TABLE_COLUMNS, TABLES
from warehouse.server import ServerWarehouse, is_retryable_code, rejection_class
from warehouse.url import parse_store_url

pytestmark = pytest.mark.integration

_DTYPES: dict[str, type[np.integer[Any]]] = {"UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32,
                                             "UInt64": np.uint64, "Int64": np.int64}
DAY_MS = 86_400_000
T0 = 1_763_769_600_000  # 2025-11-22 00:00:00 UTC


def _text(values: list[str] | list[bytes]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def event_block(n: int, *, seq0: int = 0, seed: int = 1, ts_shift_ms: int = 0) -> dict[str, np.ndarray]:
    """A realistic block with every events column: numpy integers, object arrays of str."""
    rng = np.random.default_rng(seed)
    seq = np.arange(seq0, seq0 + n, dtype=np.uint64)
    device = (seq % 7).astype(np.int64)  # identity and device time follow seq: redeliveries match
    cols: dict[str, np.ndarray] = {}
    for name, ch_type in EVENT_COLUMNS.items():
        if ch_type == "String":
            cols[name] = _text([f"{name}-{i % 5}-ü€" for i in range(n)])
        elif ch_type.startswith("Enum8"):
            cols[name] = rng.choice(sorted(KINDS), n).astype(np.int8)
        else:
            high = min(int(np.iinfo(_DTYPES[ch_type]).max), 1_000_000)
            cols[name] = rng.integers(0, high, n, endpoint=True).astype(_DTYPES[ch_type])
    cols["household_id"] = (device // 2 + 10).astype(np.uint64)
    cols["household_id"][device == 0] = np.iinfo(np.uint64).max  # the top of UInt64 survives the trip
    cols["device_id"] = _text([f"stb-{d:04d}" for d in device])
    cols["seq"] = seq
    cols["device_ts_ms"] = T0 + (seq.astype(np.int64) * 7_919_333) % (DAY_MS - 60_000)
    cols["ts_ms"] = cols["device_ts_ms"] + 1_500 + ts_shift_ms
    cols["received_ms"] = cols["ts_ms"] + 40
    cols["region"] = _text([["north-1", "süd", ""][i % 3] for i in range(n)])
    cols["firmware"] = _text([["4.2.0", "4.3.0-rc1"][i % 2] for i in range(n)])
    return cols


def _sorted(cols: dict[str, np.ndarray], *keys: str) -> dict[str, np.ndarray]:
    order = np.lexsort([cols[k] for k in reversed(keys)])
    return {k: v[order] for k, v in cols.items()}


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@pytest.fixture(params=["server", "embedded"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("clickhouse_url" if request.param == "server" else "chdb_url"))


@pytest.fixture
def warehouse(store_url: str) -> Iterator[Warehouse]:
    store = open_warehouse(store_url)
    try:
        store.migrate()
        yield store
    finally:
        if store_url.startswith("clickhouse"):
            try:
                store.execute(f"DROP DATABASE IF EXISTS {store.database}")
            except WarehouseError:
                pass  # the test left the server down; the session fixture cleans up
        store.close()


class TestContract:
    def test_migrate_is_idempotent_and_recorded(self, warehouse: Warehouse) -> None:
        warehouse.migrate()
        warehouse.migrate()
        rows = warehouse.query_rows(f"SELECT version, name FROM {warehouse.database}.schema_migrations")
        assert sorted(r[0] for r in rows) == [m.version for m in MIGRATIONS]
        for table, columns in TABLE_COLUMNS.items():
            described = warehouse.query_rows(f"DESCRIBE TABLE {warehouse.database}.{table}")
            got = [(r[0], r[1]) for r in described if r[2] != "MATERIALIZED"]
            assert _same_types(got, columns), (table, got)
        time_col = [r for r in warehouse.query_rows(f"DESCRIBE TABLE {warehouse.database}.events")
                    if r[0] == "time"]
        assert [(r[1], r[2]) for r in time_col] == [("DateTime", "MATERIALIZED")]

    def test_concurrent_migrations_do_not_break(self, store_url: str) -> None:
        stores = [open_warehouse(store_url) for _ in range(2)]  # chdb: one folder, one engine
        errors: list[BaseException] = []

        def run(store: Warehouse) -> None:
            try:
                store.migrate()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert errors == []
            stores[0].migrate()
            versions = {r[0] for r in stores[0].query_rows(
                f"SELECT version FROM {stores[0].database}.schema_migrations")}
            assert versions == {m.version for m in MIGRATIONS}
        finally:
            if store_url.startswith("clickhouse"):
                stores[0].execute(f"DROP DATABASE IF EXISTS {stores[0].database}")
            for s in stores:
                s.close()

    def test_events_round_trip_exactly(self, warehouse: Warehouse) -> None:
        block = event_block(300)
        warehouse.insert_columns("events", block)
        got = warehouse.query_columns(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM {warehouse.database}.events ORDER BY device_id, seq")
        want = _sorted(block, "device_id", "seq")
        assert list(got) == list(EVENT_COLUMNS)
        names = {spec.code: spec.name for spec in KINDS.values()}
        for name, ch_type in EVENT_COLUMNS.items():
            if ch_type.startswith("Enum8"):
                assert got[name].dtype == object
                assert got[name].tolist() == [names[int(c)] for c in want[name]]
            elif ch_type == "String":
                assert got[name].dtype == object and all(type(v) is str for v in got[name])
                assert got[name].tolist() == want[name].tolist(), name
            else:
                assert got[name].dtype == np.dtype(_DTYPES[ch_type]), name
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    def test_select_star_returns_the_inserted_columns(self, warehouse: Warehouse) -> None:
        warehouse.insert_columns("events", event_block(3))
        assert list(warehouse.query_columns(f"SELECT * FROM {warehouse.database}.events")) == list(EVENT_COLUMNS)

    def test_redelivered_events_collapse_with_final(self, warehouse: Warehouse) -> None:
        db = warehouse.database
        warehouse.insert_columns("events", event_block(200))
        # A redelivery: same device time and identity, different arrival and correction.
        warehouse.insert_columns("events", event_block(200, ts_shift_ms=5_000))
        warehouse.insert_columns("events", event_block(100, seq0=150))  # half overlap, half new
        raw = warehouse.query_rows(f"SELECT count() FROM {db}.events")[0][0]
        final = warehouse.query_rows(f"SELECT count() FROM {db}.events FINAL")[0][0]
        distinct = warehouse.query_rows(f"SELECT uniqExact(device_id, seq) FROM {db}.events")[0][0]
        assert (raw, final, distinct) == (500, 250, 250)

    def test_partitions_follow_device_time(self, warehouse: Warehouse) -> None:
        block = event_block(50)
        block["device_ts_ms"][:] = T0 + 1000
        block["ts_ms"][:] = T0 + 3 * DAY_MS  # a corrected clock in another day
        warehouse.insert_columns("events", block)
        partitions = warehouse.query_rows(
            "SELECT DISTINCT partition FROM system.parts "
            f"WHERE database = '{warehouse.database}' AND table = 'events' AND active")
        assert [str(p[0]) for p in partitions] == ["20251122"]

    def test_time_is_computed_from_corrected_ts(self, warehouse: Warehouse) -> None:
        warehouse.insert_columns("events", event_block(100))
        rows = warehouse.query_rows(
            f"SELECT count(), countIf(toUInt32(time) = intDiv(ts_ms, 1000)) FROM {warehouse.database}.events")
        assert rows == [(100, 100)]
        got = warehouse.query_columns(f"SELECT time FROM {warehouse.database}.events LIMIT 1")
        assert got["time"].dtype == np.dtype("datetime64[s]")

    def test_dead_letter_payload_bytes_round_trip(self, warehouse: Warehouse) -> None:
        payloads = [b"\x93\x01\xff\xfe\x00\x00", b"", b"\x00", bytes(range(256)), b"\xc3(", "ok €".encode(),
                    b"trailing NULs\x00\x00"]
        n = len(payloads)
        block = {name: _text([f"{name}-{i}" for i in range(n)]) for name, t in DEAD_LETTER_COLUMNS.items()
                 if t == "String"}
        block["received_ms"] = T0 + np.arange(n, dtype=np.int64)
        block["payload_size"] = np.array([len(p) for p in payloads], dtype=np.uint32)
        block["payload"] = _text(payloads)
        warehouse.insert_columns("dead_letters", {k: block[k] for k in DEAD_LETTER_COLUMNS})
        db = warehouse.database
        exact = warehouse.query_rows(f"SELECT hex(payload), length(payload) FROM {db}.dead_letters "
                                     "ORDER BY received_ms")
        assert [bytes.fromhex(h) for h, _ in exact] == payloads
        assert [n for _, n in exact] == [len(p) for p in payloads]
        # Read as columns: bytes where the value is not UTF-8, str where it is (both stores).
        got = warehouse.query_columns(f"SELECT payload, reason FROM {db}.dead_letters ORDER BY received_ms")
        assert [_as_bytes(v) for v in got["payload"]] == payloads
        assert type(got["payload"][0]) is bytes and type(got["payload"][5]) is str
        assert got["reason"].tolist() == [f"reason-{i}" for i in range(n)]

    def test_epg_tables_keep_the_newest_version(self, warehouse: Warehouse) -> None:
        db = warehouse.database
        warehouse.insert_columns("channels", {
            "channel_id": np.array([1, 2], np.uint32), "xmltv_id": _text(["bbc1.uk", "itv.uk"]),
            "name": _text(["BBC One", "ITV"]), "genre": _text(["general", "general"]),
            "updated_ms": np.array([100, 100], np.int64)})
        warehouse.insert_columns("channels", {
            "channel_id": np.array([2], np.uint32), "xmltv_id": _text(["itv.uk"]), "name": _text(["ITV1"]),
            "genre": _text(["entertainment"]), "updated_ms": np.array([200], np.int64)})
        warehouse.insert_columns("programmes", {
            "programme_id": np.array([2**63 + 5], np.uint64), "content_id": np.array([77], np.uint64),
            "title": _text(["Doctor Who"]), "episode_title": _text(["Rose"]), "category": _text(["Drama"]),
            "series_id": _text(["dw"]), "episode_num": _text(["0.0."]), "duration_s": np.array([2700], np.uint32),
            "updated_ms": np.array([1], np.int64)})
        warehouse.insert_columns("airings", {
            "channel_id": np.array([1, 1], np.uint32), "start_ms": np.array([T0, T0 + 3_600_000], np.int64),
            "stop_ms": np.array([T0 + 2_700_000, T0 + 7_200_000], np.int64),
            "programme_id": np.array([2**63 + 5, 9], np.uint64), "updated_ms": np.array([1, 1], np.int64)})
        assert warehouse.query_rows(f"SELECT channel_id, name, genre FROM {db}.channels FINAL ORDER BY channel_id") \
            == [(1, "BBC One", "general"), (2, "ITV1", "entertainment")]
        joined = warehouse.query_rows(
            f"SELECT a.start_ms, p.title, p.content_id FROM {db}.airings AS a FINAL "
            f"ALL INNER JOIN (SELECT programme_id, title, content_id FROM {db}.programmes FINAL) AS p "
            "USING programme_id ORDER BY a.start_ms")
        assert joined == [(T0, "Doctor Who", 77)]

    def test_query_parameters_are_quoted(self, warehouse: Warehouse) -> None:
        rows = warehouse.query_rows("SELECT %(text)s, %(n)s, %(ids)s", {"text": "it's a \\ test", "n": 5,
                                                                       "ids": [1, 2]})
        assert rows == [("it's a \\ test", 5, [1, 2])]
        assert warehouse.query_rows("SELECT 'no % substitution'") == [("no % substitution",)]

    def test_empty_results_have_columns(self, warehouse: Warehouse) -> None:
        got = warehouse.query_columns(f"SELECT household_id, device_id FROM {warehouse.database}.events")
        assert list(got) == ["household_id", "device_id"] and all(len(v) == 0 for v in got.values())
        assert got["household_id"].dtype == np.uint64
        assert warehouse.query_rows(f"SELECT seq FROM {warehouse.database}.events") == []

    def test_empty_insert_is_a_noop(self, warehouse: Warehouse) -> None:
        warehouse.insert_columns("events", {k: v[:0] for k, v in event_block(1).items()})
        assert warehouse.query_rows(f"SELECT count() FROM {warehouse.database}.events") == [(0,)]

    def test_bad_data_and_sql_are_rejected_not_retried(self, warehouse: Warehouse) -> None:
        block = event_block(3)
        with pytest.raises(WarehouseRejected, match="differ in length"):
            warehouse.insert_columns("events", {**block, "seq": block["seq"][:2]})
        block["kind"][1] = 99  # not a kind: the rows are at fault, other rows would pass
        with pytest.raises(WarehouseDataRejected):
            warehouse.insert_columns("events", block)
        with pytest.raises(WarehouseRejected) as caught:
            warehouse.execute("SELEC 1")
        assert caught.value.code == 62 and not caught.value.retryable
        assert not isinstance(caught.value, WarehouseDataRejected)
        with pytest.raises(WarehouseRejected) as unknown:
            warehouse.query_rows(f"SELECT 1 FROM {warehouse.database}.no_such_table")
        assert unknown.value.code == 60 and not isinstance(unknown.value, WarehouseDataRejected)
        warehouse.insert_columns("events", event_block(3))  # the store still works afterwards
        assert warehouse.query_rows(f"SELECT count() FROM {warehouse.database}.events") == [(3,)]

    def test_a_missing_table_is_the_stores_fault_not_the_rows(self, warehouse: Warehouse) -> None:
        warehouse.execute(f"DROP TABLE {warehouse.database}.events")
        try:
            with pytest.raises(WarehouseRejected) as caught:
                warehouse.insert_columns("events", event_block(3))
            assert not isinstance(caught.value, WarehouseDataRejected)
        finally:
            warehouse.execute(TABLES["events"].ddl(warehouse.database))  # what the test dropped

    def test_server_version(self, warehouse: Warehouse) -> None:
        version = warehouse.server_version()
        assert len(version) == 3 and all(isinstance(p, int) for p in version) and version >= (18, 16, 0)

    def test_close_is_idempotent(self, store_url: str) -> None:
        store = open_warehouse(store_url)
        store.close()
        store.close()
        with pytest.raises(WarehouseError, match="closed"):
            store.query_rows("SELECT 1")


def test_schema_tables_match_the_collector_columns() -> None:
    assert dict(TABLES["events"].columns) == EVENT_COLUMNS
    assert dict(TABLES["dead_letters"].columns) == DEAD_LETTER_COLUMNS


def _same_types(got: list[tuple[str, str]], columns: dict[str, str]) -> bool:
    """DESCRIBE prints Enum8 values without spaces on some versions: compare without them."""
    return [(n, t.replace(" ", "")) for n, t in got] == [(n, t.replace(" ", "")) for n, t in columns.items()]


def test_server_outage_is_retryable_and_the_store_recovers(clickhouse_server: ClickHouseServer,
                                                           clickhouse_url: str) -> None:
    store = open_warehouse(clickhouse_url)
    try:
        store.migrate()
        store.insert_columns("events", event_block(10))
        clickhouse_server.kill()
        with pytest.raises(WarehouseUnavailable) as caught:
            store.insert_columns("events", event_block(10, seq0=10))
        assert caught.value.retryable and "127.0.0.1" in str(caught.value)
        with pytest.raises(WarehouseUnavailable):
            store.query_rows("SELECT 1")
        clickhouse_server.start()
        store.insert_columns("events", event_block(10, seq0=10))  # the same store object reconnects
        assert store.query_rows(f"SELECT count() FROM {store.database}.events FINAL") == [(20,)]
    finally:
        if not clickhouse_server.is_running():
            clickhouse_server.start()
        store.execute(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


def test_server_store_does_not_connect_until_used() -> None:
    store = open_warehouse("clickhouse://default@127.0.0.1:1/stb?connect_timeout=1")  # nothing listens
    with pytest.raises(WarehouseUnavailable):
        store.server_version()
    store.close()


def test_chdb_folder_is_locked_against_another_process(chdb_url: str) -> None:
    store = open_warehouse(chdb_url)
    try:
        store.migrate()
        script = ("import sys\nfrom warehouse import open_warehouse, WarehouseLocked\n"
                  "try:\n    open_warehouse(sys.argv[1])\n"
                  "except WarehouseLocked as exc:\n    print('LOCKED', exc)\n    sys.exit(3)\n")
        done = subprocess.run([sys.executable, "-c", script, chdb_url], capture_output=True, text=True,
                              timeout=60, cwd=Path(__file__).parents[2])
        assert done.returncode == 3, done.stderr[-2000:]
        assert str(Path(chdb_url.removeprefix("chdb://"))) in done.stdout
        assert "another process (PID:" in done.stdout and "stop that process" in done.stdout
        assert store.query_rows("SELECT 1") == [(1,)]  # the owner is unaffected
    finally:
        store.close()


def test_chdb_one_folder_per_process(chdb_url: str, tmp_path: Path) -> None:
    first = open_warehouse(chdb_url)
    try:
        second = open_warehouse(chdb_url)  # the same folder: shares the engine
        second.migrate()
        first.insert_columns("events", event_block(5))
        assert second.query_rows(f"SELECT count() FROM {second.database}.events") == [(5,)]
        second.close()
        with pytest.raises(WarehouseLocked, match="one folder per process"):
            open_warehouse(f"chdb://{tmp_path / 'other'}")
        assert first.query_rows("SELECT 1") == [(1,)]
    finally:
        first.close()
    other = open_warehouse(f"chdb://{tmp_path / 'other'}")  # free again once the first is closed
    other.close()


def test_chdb_inserts_are_synchronous(chdb_url: str) -> None:
    store = open_warehouse(chdb_url)
    try:
        assert store.query_rows("SELECT toUInt8(getSetting('async_insert'))") == [(0,)]
    finally:
        store.close()


@pytest.mark.parametrize(("version", "settings"), [
    ((18, 16, 1), {}),
    ((21, 10, 0), {}),
    ((21, 11, 0), {"async_insert": 0, "wait_for_async_insert": 1}),
    ((25, 3, 2), {"async_insert": 0, "wait_for_async_insert": 1}),
])
def test_insert_settings_follow_the_server_version(version: tuple[int, int, int], settings: dict[str, int],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = ServerWarehouse(parse_store_url("clickhouse://127.0.0.1:1/stb"))
    info = type("Info", (), dict(zip(("version_major", "version_minor", "version_patch"), version, strict=True)))
    monkeypatch.setattr(store, "_server_info", lambda: info)
    assert store._insert_settings() == settings
    assert store.server_version() == version


@pytest.mark.parametrize(("code", "message", "expected"), [
    (252, "Too many parts (300). Merges are processing significantly slower than inserts", WarehouseUnavailable),
    (252, "Too many partitions for single INSERT block (more than 100)", WarehouseDataRejected),
    (241, "Memory limit (total) exceeded", WarehouseUnavailable),
    (159, "Timeout exceeded", WarehouseUnavailable),
    (202, "Too many simultaneous queries", WarehouseUnavailable),
    (242, "Table is in readonly mode", WarehouseUnavailable),
    (60, "Table stb.nope doesn't exist", WarehouseRejected),
    (497, "Not enough privileges", WarehouseRejected),
    (53, "Type mismatch", WarehouseDataRejected),
    (None, "", WarehouseRejected),
])
def test_error_classes(code: int | None, message: str, expected: type) -> None:
    assert rejection_class(code, message) is expected
    assert is_retryable_code(code, message) is (expected is WarehouseUnavailable)
