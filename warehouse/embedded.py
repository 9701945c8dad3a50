"""Embedded ClickHouse (chdb): the default store when no server is configured.

chdb locks its data folder to one process, so one process owns an embedded store at a
time; a second gets WarehouseLocked. Calls must come from one thread at a time (the
collector's sink has a thread of its own for the store).
"""

from __future__ import annotations

import base64
import fcntl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from clickhouse_driver.util.escape import escape_params

from warehouse import schema
from warehouse.base import Columns
from warehouse.errors import WarehouseLocked, WarehouseRejected
from warehouse.url import StoreURL


class EmbeddedWarehouse:
    def __init__(self, store: StoreURL) -> None:
        from chdb import session

        assert store.path is not None
        self.url = store.redacted
        self.database = store.database
        self.path = store.path
        self.path.mkdir(parents=True, exist_ok=True)
        holder = _lock_holder(self.path)
        if holder is not None:
            raise WarehouseLocked(
                f"the chdb folder {self.path} is in use by another process ({holder}); chdb allows one. "
                "Stop that process (e.g. the collector) or use a ClickHouse server store", url=self.url)
        self._session = session.Session(str(self.path))
        self._closed = False

    def migrate(self) -> None:
        schema.migrate(self.database, self.execute, self.query_rows)

    def insert_columns(self, table: str, columns: Columns) -> None:
        frame_cols: dict[str, Any] = {}
        select = []
        for name, values in columns.items():
            if values.dtype == object and len(values) and isinstance(values[0], bytes | bytearray):
                # chdb would store bytes as their repr: ship base64 and decode in SQL.
                frame_cols[name] = np.array([base64.b64encode(v).decode() for v in values], dtype=object)
                select.append(f"base64Decode({name}) AS {name}")
            else:
                frame_cols[name] = values
                select.append(name)
        frame = pd.DataFrame(frame_cols)  # noqa: F841  (read by name by chdb's Python() table function)
        self._run(f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) "
                  f"SELECT {', '.join(select)} FROM Python(frame) SETTINGS async_insert = 0")

    def query_columns(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        frame = self._frame(sql, params)
        return {name: _column(frame[name]) for name in frame.columns}

    def query_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        frame = self._frame(sql, params)
        return [tuple(_plain(v) for v in row) for row in frame.itertuples(index=False, name=None)]

    def execute(self, sql: str) -> None:
        self._run(sql)

    def server_version(self) -> tuple[int, ...]:
        text = str(self.query_rows("SELECT version()")[0][0])
        return tuple(int(p) for p in text.split(".")[:3])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.close()

    def _frame(self, sql: str, params: Mapping[str, Any] | None) -> pd.DataFrame:
        if params:
            sql = sql % escape_params(params)
        result = self._run(sql, "DataFrame")
        return result if isinstance(result, pd.DataFrame) else pd.DataFrame()

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        try:
            return self._session.query(sql, fmt)
        except Exception as exc:  # chdb raises plain RuntimeError for SQL errors
            raise WarehouseRejected(f"chdb: {str(exc)[:500]}", url=self.url) from exc


def _lock_holder(path: Path) -> str | None:
    """Who holds the folder's ClickHouse status lock (an flock), or None if nobody does.

    chdb's own error for this case is an opaque "Error initializing EmbeddedServer"."""
    status = path / "status"
    if not status.exists():
        return None
    with status.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read(200).decode(errors="replace")
            pid = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("PID")), "?")
            return f"pid {pid}"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _column(series: pd.Series) -> np.ndarray:
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype) or str(series.dtype) in (
            "string", "str", "category"):
        return series.to_numpy(dtype=object)
    if str(series.dtype).startswith("datetime"):
        return series.to_numpy()
    return series.to_numpy()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
