"""Exception tree of the warehouse package (see the package docstring)."""

from __future__ import annotations


class WarehouseError(Exception):
    """Root of every error the warehouse raises."""

    retryable: bool = False

    def __init__(self, message: str, *, url: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.code = code  # the ClickHouse error code, when the engine gave one


class WarehouseUnavailable(WarehouseError):
    """The store cannot be reached now; the same call may succeed later."""

    retryable = True


class WarehouseRejected(WarehouseError):
    """The store refused the statement or data; retrying the same thing will fail again."""


class WarehouseDataRejected(WarehouseRejected):
    """The store refused this data (a value that does not fit its column, a block spanning too
    many partitions): the same statement with other rows can succeed. Only this kind of
    rejection may be blamed on a message; any other rejection (a missing table, no permission)
    is the store's fault and every message would fail alike."""


class WarehouseLocked(WarehouseError):
    """An embedded chdb folder is held by another process (chdb locks its data folder)."""


class WarehouseURLError(WarehouseError):
    """A store URL that names no usable store."""
