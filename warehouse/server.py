"""A ClickHouse server over the native protocol (clickhouse-driver): 18.16 and newer.

Inserts are columnar in clickhouse-driver's numpy mode. Measured here (2 cores shared with
other work, ClickHouse 18.16 on the same machine, a 50,000-row block of every events
column: 15 integer columns as numpy arrays, 8 object arrays of str; medians of 20
interleaved runs):
    into an ENGINE = Null table:  Python lists (.tolist()) 120 ms, numpy mode 93 ms
    into `events`:                Python lists 185 ms (270k rows/s), numpy mode 146 ms (340k rows/s)
so numpy mode it is (about 25 % faster). Of the rest, the Enum8 `kind` column (which
clickhouse-driver maps value by value in Python even in numpy mode) and the 8 string columns
are most of the client's share; the server's sort and part write is the other half. With the
Enum tweak in insert_columns, insert_columns of that block: 80-160 ms median, 310-630k rows/s
(the spread is the other work on the machine).
Reads use the plain mode: numpy mode was no faster for reads and turns String columns
into fixed-width unicode arrays, which fail on bytes that are not UTF-8.

Every call holds a lock, so one store may be shared by threads (calls are serialised).

A cluster URL (`?cluster=NAME`, warehouse/cluster.py) lists entry points: clickhouse-driver
connects to the first that answers (`alt_hosts`) and, after an error, to the next. Every
query on it carries these settings, so an answer means the rows are written:
    insert_distributed_sync = 1    an insert into a Distributed table returns once every
                                   shard's part is written, not when queued for the background
    insert_quorum = 2 (URL option) and insert_quorum_timeout: ... and on that many replicas
                                   of each shard; fewer live replicas refuse (code 285), a
                                   quorum not reached in time fails (319, status unknown):
                                   both retryable, the retry is deduplicated by the
                                   replicated table (same block, same checksum) or by FINAL
    distributed_product_mode = 'global'   IN / JOIN over a Distributed table inside a query
                                   over another is run once and shipped to the shards
                                   (18.16 refuses such "double-distributed" queries by
                                   default); right for tables sharded differently
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import numpy as np
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors
from pandas.api.types import infer_dtype

from warehouse import fastcolumns, schema
from warehouse.base import Columns
from warehouse.errors import WarehouseDataRejected, WarehouseError, WarehouseRejected, WarehouseUnavailable
from warehouse.url import StoreURL

DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0
DEFAULT_SEND_RECEIVE_TIMEOUT_S: Final = 60.0

# Server error codes that mean "not now" rather than "never": the same call may succeed later.
RETRYABLE_CODES: Final = frozenset({
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY (server or user switched to read-only, e.g. during maintenance)
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY (replica lost ZooKeeper)
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS (merges are behind; but see _TOO_MANY_PARTITIONS)
    274,  # AIO_READ_ERROR
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
    # a cluster (warehouse/cluster.py): a shard or replica down, a quorum not (yet) reached
    225,  # NO_ZOOKEEPER
    279,  # ALL_CONNECTION_TRIES_FAILED
    285,  # TOO_FEW_LIVE_REPLICAS
    286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
    289,  # REPLICA_IS_NOT_IN_QUORUM
})
# Server error codes that blame the rows of an INSERT, not the store: the same statement with
# other rows can succeed, so the collector may split a batch to find the guilty message.
# Every other rejection (UNKNOWN_TABLE, ACCESS_DENIED, a schema that no longer fits...) would
# refuse every message alike and must never be blamed on one.
DATA_FAULT_CODES: Final = frozenset({
    6,    # CANNOT_PARSE_TEXT
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    691,  # UNKNOWN_ELEMENT_OF_ENUM
})
# Code 252 also means "this block spans more than max_partitions_per_insert_block
# partitions", which no retry of the same block cures: that one is a rejection, so the
# collector splits the batch instead of retrying it forever.
_TOO_MANY_PARTITIONS = re.compile(r"partitions for single INSERT block", re.IGNORECASE)

_NETWORK_ERRORS: Final = (ch_errors.NetworkError, ch_errors.SocketTimeoutError,
                          ch_errors.UnexpectedPacketFromServerError, ch_errors.PartiallyConsumedQueryError,
                          EOFError, ConnectionError, socket.timeout, OSError)
# Raised by clickhouse-driver while serialising a block that does not fit the columns.
_DATA_ERRORS: Final = (ch_errors.Error, TypeError, ValueError, OverflowError, struct.error)

_INT_DTYPES: Final[dict[str, Any]] = {
    "UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
    "Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64,
    "Float32": np.float32, "Float64": np.float64,
}

T = TypeVar("T")


def is_retryable_code(code: int | None, message: str = "") -> bool:
    """Whether a ClickHouse error code means "try later" (shared with the embedded store)."""
    if code == 252 and _TOO_MANY_PARTITIONS.search(message):
        return False
    return code in RETRYABLE_CODES


def is_data_fault(code: int | None, message: str = "") -> bool:
    """Whether a (non-retryable) rejection blames the rows sent rather than the store."""
    if code == 252:
        return bool(_TOO_MANY_PARTITIONS.search(message))
    return code in DATA_FAULT_CODES


def rejection_class(code: int | None, message: str) -> type[WarehouseError]:
    """The exception type for a ClickHouse error (shared with the embedded store)."""
    if is_retryable_code(code, message):
        return WarehouseUnavailable
    return WarehouseDataRejected if is_data_fault(code, message) else WarehouseRejected


def as_array(values: Any) -> np.ndarray:
    """A column as numpy: numbers stay numpy numbers; text (lists, fixed-width numpy strings) becomes
    an object array (numpy's own bytes dtype would drop trailing NUL bytes). Shared with embedded.py."""
    if isinstance(values, np.ndarray):
        return values.astype(object) if values.dtype.kind in "US" else values
    if infer_dtype(values, skipna=False) in ("integer", "floating", "boolean"):
        return np.asarray(values)
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


class _QuietEnumFallback(logging.Filter):
    """clickhouse-driver logs a warning on every numpy-mode insert into an Enum column
    ("NumPy support is not implemented for Enum8"), then handles it correctly: drop just that."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (str(record.msg).startswith("NumPy support is not implemented")
                    and str(args[0] if args else "").startswith("Enum"))


logging.getLogger("clickhouse_driver.columns.service").addFilter(_QuietEnumFallback())
fastcolumns.install()


class ServerWarehouse:
    """The Warehouse protocol on a ClickHouse server. Connects lazily, reconnects after errors."""

    def __init__(self, store: StoreURL) -> None:
        self.url = store.redacted
        self.database = store.database
        self._store = store
        options = dict(store.options)
        options.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
        options.setdefault("send_receive_timeout", DEFAULT_SEND_RECEIVE_TIMEOUT_S)
        options.setdefault("client_name", "stb-warehouse")
        if store.cluster:
            options["alt_hosts"] = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in store.alt_hosts)
            options["settings"] = cluster_settings(store)
        # No `database=`: it may not exist before migrate(); every statement names it.
        self._client = Client(store.host, port=store.port, user=store.user, password=store.password, **options)
        self._lock = threading.Lock()
        self._closed = False

    # -- the Warehouse protocol ------------------------------------------------------------

    def migrate(self) -> None:
        schema.migrate(self.database, self.execute, self.query_rows, self._store.cluster)

    def insert_columns(self, table: str, columns: Columns) -> None:
        names = list(columns)
        # Enum columns stay integer arrays: warehouse.fastcolumns writes them in one go.
        data = [as_array(v) for v in columns.values()]
        lengths = {len(v) for v in data}
        if len(lengths) > 1:
            raise WarehouseRejected(f"columns of {table} differ in length: {sorted(lengths)}", url=self.url)
        if not names or lengths == {0}:
            return
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(names)}) VALUES"

        def insert() -> None:
            settings = {"use_numpy": True, **self._insert_settings()}
            self._client.execute(sql, data, columnar=True, settings=settings)

        self._call(insert)

    def query_columns(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        result = self._call(lambda: self._client.execute(sql, params, columnar=True, with_column_types=True))
        values, types = result
        if not values:  # no rows: clickhouse-driver returns no columns at all
            values = [[] for _ in types]
        return {name: _to_numpy(col, ch_type) for (name, ch_type), col in zip(types, values, strict=True)}

    def query_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._call(lambda: self._client.execute(sql, params))]

    def execute(self, sql: str) -> None:
        self._call(lambda: self._client.execute(sql))

    def server_version(self) -> tuple[int, ...]:
        info = self._call(self._server_info)
        return (info.version_major, info.version_minor, info.version_patch)

    def another_connection(self) -> ServerWarehouse:
        """A second, independent connection to the same server, for queries run in parallel."""
        return ServerWarehouse(self._store)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._client.disconnect()

    # -- internals ---------------------------------------------------------------------------

    def _server_info(self) -> Any:
        connection = self._client.connection
        if not connection.connected:
            connection.connect()
        return connection.server_info

    def _insert_settings(self) -> dict[str, Any]:
        # Modern servers may buffer inserts (async_insert) and answer before the rows are
        # written; we acknowledge MQTT messages on that answer, so insist on a synchronous
        # insert. 18.16 predates these settings (and would reject or skip them): send nothing.
        info = self._server_info()
        if (info.version_major, info.version_minor) >= (21, 11):
            return {"async_insert": 0, "wait_for_async_insert": 1}
        return {}

    def _call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._closed:
                raise WarehouseRejected("the store is closed", url=self.url)
            try:
                return fn()
            except ch_errors.ServerException as exc:
                message = str(exc.message).strip().splitlines()[0][:500] if exc.message else str(exc)
                cls = rejection_class(exc.code, message)
                if cls is WarehouseUnavailable:
                    self._client.disconnect()
                raise cls(f"ClickHouse error {exc.code} at {self.url}: {message}", url=self.url,
                          code=exc.code) from exc
            except _NETWORK_ERRORS as exc:
                self._client.disconnect()  # the next call connects afresh
                raise WarehouseUnavailable(f"ClickHouse unreachable at {self.url}: {exc}", url=self.url) from exc
            except _DATA_ERRORS as exc:
                # The block did not serialise (a value that does not fit its column): the
                # same data fails again. The connection may be mid-query: drop it.
                self._client.disconnect()
                code = getattr(exc, "code", None)
                raise WarehouseDataRejected(f"ClickHouse client refused the data for {self.url}: {exc}",
                                            url=self.url, code=code if isinstance(code, int) else None) from exc


def cluster_settings(store: StoreURL) -> dict[str, Any]:
    """The settings every query on a cluster store carries (see the module docstring)."""
    quorum = int(store.cluster_options.get("insert_quorum", 0))
    settings: dict[str, Any] = {"insert_distributed_sync": 1, "distributed_product_mode": "global"}
    if quorum > 1:
        settings["insert_quorum"] = quorum
        settings["insert_quorum_timeout"] = int(float(store.cluster_options["insert_quorum_timeout"]) * 1000)
    return settings


def _to_numpy(values: Any, ch_type: str) -> np.ndarray:
    """A clickhouse-driver result column as the numpy array the Warehouse protocol promises."""
    dtype = _INT_DTYPES.get(ch_type)
    if dtype is not None:
        return np.asarray(values, dtype=dtype)
    if ch_type == "DateTime":  # naive: wall-clock time in the server's time zone, as ClickHouse shows it
        return np.asarray(values, dtype="datetime64[s]")
    if ch_type == "Date":
        return np.asarray(values, dtype="datetime64[D]")
    out = np.empty(len(values), dtype=object)  # String, Enum, Nullable, Array...: Python objects
    out[:] = list(values)
    return out
