"""A ClickHouse server over the native protocol (clickhouse-driver); 18.16 and newer."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import numpy as np
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from warehouse import schema
from warehouse.base import Columns
from warehouse.errors import WarehouseRejected, WarehouseUnavailable
from warehouse.url import StoreURL

# Server error codes that mean "not now" rather than "never": retry them.
_RETRYABLE_CODES = {
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    319,  # UNKNOWN_STATUS_OF_INSERT
    999,  # KEEPER_EXCEPTION
}
_NETWORK_ERRORS = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, ConnectionError,
                   socket.timeout, OSError)


class ServerWarehouse:
    def __init__(self, store: StoreURL) -> None:
        self.url = store.redacted
        self.database = store.database
        opts = store.options
        self._client = Client(
            store.host, port=store.port, user=store.user, password=store.password,
            connect_timeout=float(opts.get("connect_timeout", 5)),
            send_receive_timeout=float(opts.get("send_receive_timeout", 120)),
            secure=opts.get("secure", "0") in ("1", "true"),
            compression=opts.get("compression", False) or False,
            settings={"strings_as_bytes": False},
        )
        self._insert_settings: dict[str, Any] | None = None
        self._version: tuple[int, ...] | None = None

    # -- the Warehouse protocol ------------------------------------------------------------

    def migrate(self) -> None:
        schema.migrate(self.database, self.execute, self.query_rows)

    def insert_columns(self, table: str, columns: Columns) -> None:
        names = list(columns)
        # Python lists are clickhouse-driver's fast path (its numpy mode needs pandas
        # frames and was no faster here for these mostly-integer blocks).
        data = [_as_list(columns[n]) for n in names]
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(names)}) VALUES"
        self._call(lambda: self._client.execute(sql, data, columnar=True, settings=self._settings()))

    def query_columns(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        rows, types = self._call(
            lambda: self._client.execute(sql, params, columnar=True, with_column_types=True))
        return {name: _to_numpy(col, ch_type) for (name, ch_type), col in zip(types, rows, strict=True)} \
            if rows else {name: np.empty(0, dtype=_numpy_dtype(t)) for name, t in types}

    def query_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self._call(lambda: self._client.execute(sql, params)))

    def execute(self, sql: str) -> None:
        self._call(lambda: self._client.execute(sql))

    def server_version(self) -> tuple[int, ...]:
        if self._version is None:
            text = self._call(lambda: self._client.execute("SELECT version()"))[0][0]
            self._version = tuple(int(p) for p in str(text).split(".")[:3])
        return self._version

    def close(self) -> None:
        self._client.disconnect()

    # -- internals ---------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        if self._insert_settings is None:
            # Modern servers may batch inserts asynchronously and answer before the rows
            # are durable; we acknowledge MQTT messages on this answer, so insist on
            # synchronous inserts. 18.16 predates (and rejects) these settings.
            self._insert_settings = (
                {"async_insert": 0, "wait_for_async_insert": 1} if self.server_version() >= (21, 11) else {})
        return self._insert_settings

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except ch_errors.ServerException as exc:
            self._client.disconnect() if exc.code in _RETRYABLE_CODES else None
            cls = WarehouseUnavailable if exc.code in _RETRYABLE_CODES else WarehouseRejected
            raise cls(f"ClickHouse error {exc.code}: {exc.message[:500]}", url=self.url) from exc
        except _NETWORK_ERRORS as exc:
            self._client.disconnect()  # the next call reconnects
            raise WarehouseUnavailable(f"ClickHouse unreachable at {self.url}: {exc}", url=self.url) from exc
        except ch_errors.Error as exc:
            self._client.disconnect()
            raise WarehouseUnavailable(f"ClickHouse client error at {self.url}: {exc}", url=self.url) from exc


def _as_list(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


_INT_TYPES = {"UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
              "Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64,
              "Float32": np.float32, "Float64": np.float64}


def _numpy_dtype(ch_type: str) -> Any:
    return _INT_TYPES.get(ch_type, object)


def _to_numpy(values: Any, ch_type: str) -> np.ndarray:
    dtype = _numpy_dtype(ch_type)
    if dtype is object:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    return np.asarray(values, dtype=dtype)
