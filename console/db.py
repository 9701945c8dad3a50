"""The store as the pages see it: one connection, calls serialised by a lock and run off the event
loop (clickhouse-driver and chdb block; a chdb session must not see two statements at once).

Report jobs' worker threads (console.jobs) use the blocking `rows_now` / `call_now`: the same lock,
so a long report's statements take turns with the pages' ones."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from warehouse import Warehouse

T = TypeVar("T")


class Db:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.database = warehouse.database
        self._lock = threading.Lock()

    def _locked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return fn(*args, **kwargs)

    def rows_now(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """`rows`, blocking: for worker threads."""
        return self._locked(self.warehouse.query_rows, sql.replace("{db}", self.database), params)

    def call_now(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call`, blocking: for worker threads."""
        return self._locked(fn, self.warehouse, *args, **kwargs)

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """A SELECT's rows; `{db}` in the SQL stands for the database."""
        return await asyncio.to_thread(self._locked, self.warehouse.query_rows, sql.replace("{db}", self.database),
                                       params)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(warehouse, *args, **kwargs) under the lock, in a thread (crm.segments, marketing.store/report)."""
        return await asyncio.to_thread(self._locked, fn, self.warehouse, *args, **kwargs)

    async def insert(self, table: str, rows: list[dict[str, Any]], types: Mapping[str, str]) -> None:
        """Insert a few rows given as dicts (columns typed by the schema's map)."""
        columns = {name: column([r[name] for r in rows], ch_type) for name, ch_type in types.items()}
        await asyncio.to_thread(self._locked, self.warehouse.insert_columns, table, columns)


def column(values: list[Any], ch_type: str) -> np.ndarray:
    if ch_type == "String":
        out = np.empty(len(values), dtype=object)
        out[:] = [str(v) for v in values]
        return out
    return np.array(values, dtype=np.dtype(ch_type.lower()))


def now_ms() -> int:
    return int(time.time() * 1000)
