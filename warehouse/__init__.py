"""The analytical store: ClickHouse server (clickhouse-driver) or embedded chdb, one interface.

    open_warehouse(url) -> Warehouse
        url: clickhouse://user:pass@host:9000/db | chdb:///abs/path | chdb:rel/path

Errors (warehouse.errors):
    WarehouseError                 root
    ├── WarehouseUnavailable       retryable: server down, connection lost, timeout
    ├── WarehouseRejected          permanent: the server refused this statement or data
    │   └── WarehouseDataRejected  ...because of the rows it was given (other rows may pass)
    ├── WarehouseLocked            permanent: a chdb folder already open in another process
    └── WarehouseURLError          permanent: a store URL that cannot be used
"""

from __future__ import annotations

from warehouse.base import Columns, Warehouse
from warehouse.errors import (
    WarehouseDataRejected,
    WarehouseError,
    WarehouseLocked,
    WarehouseRejected,
    WarehouseUnavailable,
    WarehouseURLError,
)
from warehouse.url import StoreURL, parse_store_url

__all__ = ["Columns", "StoreURL", "Warehouse", "WarehouseDataRejected", "WarehouseError", "WarehouseLocked",
           "WarehouseRejected", "WarehouseURLError", "WarehouseUnavailable", "open_warehouse", "parse_store_url"]


def open_warehouse(url: str) -> Warehouse:
    """Connect to (or open) the store a URL names. Does not create tables: call migrate()."""
    store = parse_store_url(url)
    if store.scheme == "clickhouse":
        from warehouse.server import ServerWarehouse

        return ServerWarehouse(store)
    from warehouse.embedded import EmbeddedWarehouse

    return EmbeddedWarehouse(store)

