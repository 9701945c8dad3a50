"""The analytical store: ClickHouse server (clickhouse-driver) or embedded chdb, one interface.

    open_warehouse(url) -> Warehouse     clickhouse://user:pass@host:9000/db | chdb:///abs/path | chdb:rel/path

Errors (warehouse.errors):
    WarehouseError                 root
    ├── WarehouseUnavailable       retryable: server down, connection lost, timeout
    ├── WarehouseRejected          permanent: the server refused this statement or data
    ├── WarehouseLocked            permanent: a chdb folder already open in another process
    └── WarehouseURLError          permanent: a store URL that cannot be used
"""
