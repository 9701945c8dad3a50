"""Shared by the CRM integration tests: a migrated store on either real backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from warehouse import Warehouse, WarehouseError, open_warehouse


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
