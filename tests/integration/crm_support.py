"""Shared by the CRM integration tests: a migrated store on either real backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from proto.telemetry import KIND_BY_NAME
from warehouse import Warehouse, WarehouseError, open_warehouse
from warehouse.columns import EVENT_COLUMNS


@pytest.fixture(params=["server", "embedded"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("clickhouse_url" if request.param == "server" else "chdb_url"))


def open_migrated(url: str) -> Warehouse:
    store = open_warehouse(url)
    store.migrate()
    return store


def close_and_drop(store: Warehouse, url: str) -> None:
    if url.startswith("clickhouse"):
        try:
            store.execute(f"DROP DATABASE IF EXISTS {store.database}")
        except WarehouseError:
            pass
    store.close()


@pytest.fixture
def warehouse(store_url: str) -> Iterator[Warehouse]:
    store = open_migrated(store_url)
    try:
        yield store
    finally:
        close_and_drop(store, store_url)


def event_rows(rows: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """`events` columns from (household, device, kind, ts_ms, channel_id, programme_id, duration_s) rows."""
    cols: dict[str, np.ndarray] = {}
    n = len(rows)
    for name, ch_type in EVENT_COLUMNS.items():
        if ch_type == "String":
            cols[name] = np.array([""] * n, dtype=object)
        elif ch_type.startswith("Enum8"):
            cols[name] = np.zeros(n, dtype=np.int8)
        else:
            cols[name] = np.zeros(n, dtype=np.dtype(ch_type.lower()))
    for i, (hh, dev, kind, ts, ch, prog, dur) in enumerate(rows):
        cols["household_id"][i] = hh
        cols["device_id"][i] = f"stb-{hh}-{dev}"
        cols["seq"][i] = i
        cols["kind"][i] = KIND_BY_NAME[kind].code
        cols["device_ts_ms"][i] = cols["ts_ms"][i] = cols["received_ms"][i] = ts
        cols["region"][i] = "north"
        cols["channel_id"][i] = ch
        cols["programme_id"][i] = prog
        cols["duration_s"][i] = dur
    return cols


def insert_guide(store: Warehouse, channels: list[tuple[int, str]], programmes: list[tuple[int, str, str]],
                 airings: list[tuple[int, int, int, int]]) -> None:
    """channels (id, name); programmes (id, title, category); airings (channel, start_ms, stop_ms, programme)."""
    def text(values: list[str]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    store.insert_columns("channels", {
        "channel_id": np.array([c for c, _ in channels], dtype=np.uint32), "xmltv_id": text([""] * len(channels)),
        "name": text([n for _, n in channels]), "genre": text([""] * len(channels)),
        "updated_ms": np.ones(len(channels), dtype=np.int64)})
    n = len(programmes)
    store.insert_columns("programmes", {
        "programme_id": np.array([p for p, _, _ in programmes], dtype=np.uint64),
        "content_id": np.array([p // 10 for p, _, _ in programmes], dtype=np.uint64),
        "title": text([t for _, t, _ in programmes]), "episode_title": text([""] * n),
        "category": text([c for _, _, c in programmes]), "series_id": text([t for _, t, _ in programmes]),
        "episode_num": text([""] * n), "duration_s": np.zeros(n, dtype=np.uint32),
        "updated_ms": np.ones(n, dtype=np.int64)})
    store.insert_columns("airings", {
        "channel_id": np.array([a[0] for a in airings], dtype=np.uint32),
        "start_ms": np.array([a[1] for a in airings], dtype=np.int64),
        "stop_ms": np.array([a[2] for a in airings], dtype=np.int64),
        "programme_id": np.array([a[3] for a in airings], dtype=np.uint64),
        "updated_ms": np.ones(len(airings), dtype=np.int64)})
