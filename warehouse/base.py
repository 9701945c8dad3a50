"""The interface every store implements (ClickHouse server, embedded chdb).

Calls are blocking: async callers run them in a thread (the collector's sink owns one
thread per store, so a store never sees concurrent calls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

Columns = Mapping[str, np.ndarray]


class Warehouse(Protocol):
    url: str          # without password
    database: str

    def migrate(self) -> None:
        """Create the database and every table idempotently, and apply missing migrations."""

    def insert_columns(self, table: str, columns: Columns) -> None:
        """Insert one columnar block into `database.table`; returns once it is committed."""

    def query_columns(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Run a SELECT and return its result column by column."""

    def query_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT and return rows (for small results: summaries, tests)."""

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, OPTIMIZE, ...)."""

    def server_version(self) -> tuple[int, ...]:
        """(major, minor, patch) of the ClickHouse engine behind this store."""

    def another_connection(self) -> Warehouse | None:
        """A second, independent connection for queries run in parallel with this one's, or
        None where the store cannot have one (the embedded store: one session per process)."""

    def close(self) -> None: ...


