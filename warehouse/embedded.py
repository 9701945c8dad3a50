"""Embedded ClickHouse (chdb 4.4, engine 26.x) in a data folder: the store when there is no server.

One process per folder: chdb locks it (the `status` file, like clickhouse-server), so a
second process gets WarehouseLocked. One folder per process, too: the engine is
process-wide, so while a store is open every other store in the process must name the
same folder (they then share the engine); another folder gives WarehouseLocked as well.
chdb 4.4 documents its sessions as thread-safe; this store still takes a lock per call,
so the guarantee does not rest on that.

Inserts go through chdb's Python() table function, which reads a pandas DataFrame (or
Arrow table) in place. It finds the object by its variable name in the calling Python
frames, so the block is a local of the method that runs the query, under a name no chdb
frame in between uses. (A dict works only as a dict of lists: "Dictionary value must be a
list type" for numpy arrays, and .tolist() made it the slowest path.) Measured here (2
cores shared with other work, a 50,000-row events block, medians): building the DataFrame
2 ms when the object columns stay `object` (letting pandas 3 infer its Arrow-backed `str`
dtype costs 27 ms), reading it into an ENGINE = Null table 19 ms, insert_columns into
`events` (sort by key, partition, write the part) 100-140 ms: 360-490k rows/s. A pyarrow
Table costs 17 ms more to build for our 8 string columns, so it is used only for blocks
with a binary column (dead_letters.payload): pandas object columns of `bytes` would be
stored as their repr, an Arrow binary column is stored as the raw bytes. Enum8 `kind`
takes the integer codes as they are (an unknown code is rejected by the engine).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from clickhouse_driver.util.escape import escape_params
from pandas.api.types import infer_dtype

from warehouse import schema
from warehouse.base import Columns
from warehouse.errors import (
    WarehouseDataRejected,
    WarehouseError,
    WarehouseLocked,
    WarehouseRejected,
)
from warehouse.server import as_array, rejection_class
from warehouse.url import StoreURL

_CODE = re.compile(r"Code: (\d+)")
_OTHER_FOLDER = re.compile(r"already initialized with path '([^']*)'")
# escape_params only asks the context for the time zone (for datetime parameters).
_ESCAPE_CONTEXT = SimpleNamespace(server_info=SimpleNamespace(get_timezone=lambda: "UTC"))


class EmbeddedWarehouse:
    """The Warehouse protocol on a chdb data folder."""

    def __init__(self, store: StoreURL) -> None:
        from chdb import session  # imported here: loading the engine takes a while

        assert store.path is not None
        self.url = store.redacted
        self.database = store.database
        self.path: Path = store.path
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseRejected(f"cannot create the chdb folder {self.path}: {exc}", url=self.url) from exc
        try:
            self._session = session.Session(str(self.path))
        except Exception as exc:
            raise self._open_error(exc) from exc
        self._lock = threading.Lock()
        self._closed = False
        try:
            # chdb's engine defaults to async_insert=1 (inserts also say so, explicitly):
            # the caller acknowledges data when we return, so it must be written by then.
            self._run("SET async_insert = 0")
        except WarehouseError:
            self.close()
            raise

    # -- the Warehouse protocol ------------------------------------------------------------

    def migrate(self) -> None:
        schema.migrate(self.database, self.execute, self.query_rows)

    def insert_columns(self, table: str, columns: Columns) -> None:
        arrays = {name: as_array(values) for name, values in columns.items()}
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) > 1:
            raise WarehouseRejected(f"columns of {table} differ in length: {sorted(lengths)}", url=self.url)
        if not arrays or lengths == {0}:
            return
        spec = schema.TABLES.get(table)
        binary = spec.binary if spec is not None else frozenset()
        # The name is what Python(...) looks up in this frame: keep the two in step.
        stb_insert_block = self._block(table, arrays, binary)  # noqa: F841
        names = list(arrays)
        cols = ", ".join(names)
        sql = (f"INSERT INTO {self.database}.{table} ({cols}) SELECT {cols} FROM Python(stb_insert_block) "
               "SETTINGS async_insert = 0")
        with self._lock:
            self._check_open()
            try:
                self._session.query(sql)
            except Exception as exc:
                raise self._error(exc) from exc

    def query_columns(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        frame = self._run(_substitute(sql, params), "DataFrame")
        if not isinstance(frame, pd.DataFrame):
            return {}
        return {str(name): _column(frame[name]) for name in frame.columns}

    def query_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        columns = self.query_columns(sql, params)
        return list(zip(*(c.tolist() for c in columns.values()), strict=True))

    def execute(self, sql: str) -> None:
        self._run(sql)

    def server_version(self) -> tuple[int, ...]:
        text = str(self.query_rows("SELECT version()")[0][0])
        return tuple(int(p) for p in text.split(".")[:3])

    def another_connection(self) -> None:
        return None  # chdb: one session per process

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()

    # -- internals ---------------------------------------------------------------------------

    def _block(self, table: str, columns: dict[str, np.ndarray], binary: frozenset[str]) -> pd.DataFrame | pa.Table:
        """The block as an object Python() reads, each text column checked to hold only str."""
        for name, values in columns.items():
            if values.dtype != object:
                continue
            kind = infer_dtype(values, skipna=False)
            if name in binary:
                if kind not in ("bytes", "string", "mixed", "empty"):
                    raise WarehouseDataRejected(f"{table}.{name} must hold bytes, got {kind}", url=self.url)
            elif kind not in ("string", "empty"):
                # pandas would hand chdb bytes or numbers as their repr: refuse instead.
                raise WarehouseDataRejected(f"{table}.{name} must hold str, got {kind}", url=self.url)
        if any(name in binary for name in columns):
            return pa.table({name: _arrow(values, name in binary) for name, values in columns.items()})
        # object dtype kept as is: pandas 3 would otherwise convert it to its Arrow str dtype.
        return pd.DataFrame({name: pd.Series(values, dtype=values.dtype, copy=False)
                             for name, values in columns.items()}, copy=False)

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        with self._lock:
            self._check_open()
            try:
                return self._session.query(sql, fmt)
            except Exception as exc:
                raise self._error(exc) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise WarehouseRejected("the store is closed", url=self.url)

    def _error(self, exc: Exception) -> WarehouseError:
        text = str(exc).strip()
        match = _CODE.search(text)
        code = int(match.group(1)) if match else None
        return rejection_class(code, text)(f"chdb at {self.path}: {text[:500]}", url=self.url, code=code)

    def _open_error(self, exc: Exception) -> WarehouseError:
        text = str(exc)
        other = _OTHER_FOLDER.search(text)
        if other:
            return WarehouseLocked(
                f"this process already has the chdb folder {other.group(1)} open, and chdb opens one folder "
                f"per process: close that store before opening {self.path}", url=self.url)
        holder = _lock_holder(self.path)
        if holder is not None:
            return WarehouseLocked(
                f"the chdb folder {self.path} is in use by another process ({holder}); chdb lets one "
                "process open a folder: stop that process (e.g. the collector), or use a ClickHouse "
                "server (clickhouse://...) to share the data between processes", url=self.url)
        return self._error(exc)


def _lock_holder(path: Path) -> str | None:
    """Who holds the folder's lock (ClickHouse flocks `status`, and writes its PID into it), or None."""
    status = path / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            info = status.read_text(errors="replace").split("\n")
            return next((line.strip() for line in info if line.startswith("PID:")), "PID unknown")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _arrow(values: np.ndarray, binary: bool) -> pa.Array:
    if binary:
        return pa.array(values, type=pa.binary())  # str is stored as its UTF-8 bytes
    if values.dtype != object:
        return pa.array(values)
    return pa.array(values, type=pa.string())


def _substitute(sql: str, params: Mapping[str, Any] | None) -> str:
    """Client-side %(name)s parameters, quoted exactly as clickhouse-driver quotes them."""
    if not params:
        return sql
    return sql % escape_params(dict(params), _ESCAPE_CONTEXT)


def _column(series: pd.Series) -> np.ndarray:
    """A result column as the protocol promises: numbers as numpy numbers, text as object arrays
    of str (bytes where the value is not UTF-8, as clickhouse-driver does), DateTime as datetime64[s].
    Always writable (pandas may hand out read-only views of chdb's buffers)."""
    if series.dtype.kind in "iufbM":
        out = series.to_numpy()
    else:
        out = series.to_numpy(dtype=object)
    if not out.flags.writeable:
        out = out.copy()
    if series.dtype == object:  # as clickhouse-driver gives them: bytes, not bytearray; lists, not arrays
        for i, value in enumerate(out):
            if isinstance(value, bytearray):
                out[i] = bytes(value)
            elif isinstance(value, np.ndarray):
                out[i] = value.tolist()
    return out
