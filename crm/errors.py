"""Exception tree of the CRM package (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass


class CrmError(Exception):
    """Root of every error the CRM raises on purpose. None is retryable: the same input fails again
    (store outages surface as warehouse.WarehouseUnavailable, which is)."""

    retryable: bool = False


@dataclass(frozen=True)
class BadRow:
    """One refused row of a subscriber extract: 1-based file line (the header is line 1)."""

    line: int
    column: str
    reason: str


class ExtractRefused(CrmError):
    """A subscriber extract that cannot be imported: a missing column, or invalid rows."""

    def __init__(self, message: str, *, bad_rows: list[BadRow] | None = None, bad_count: int = 0) -> None:
        super().__init__(message)
        self.bad_rows = bad_rows or []      # the first ones (at most the report limit)
        self.bad_count = bad_count          # all of them


class CatalogueError(CrmError):
    """A tag catalogue that cannot be used (every problem, one per line)."""


class SegmentError(CrmError):
    """An expression that does not parse or names an unknown field or tag; `position` is 1-based."""

    def __init__(self, message: str, *, position: int = 0) -> None:
        super().__init__(message)
        self.position = position


class NoData(CrmError):
    """The store holds nothing to compute from for the requested day."""
