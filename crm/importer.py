"""Writing a validated extract: `subscribers` (current state) and `subscriber_history` (changes).

    report = import_extract(warehouse, extract, as_of=date(2026, 12, 1))

The extract is an upsert: households it lists take its values, others keep theirs. A history row
is written for a household that is new or whose status, products or fee differ from its current
row, dated when the change took effect as far as the extract says: the `ended` date for an
ended household, `activated` for a new household's activation, otherwise the extract's date
(`as_of`). Both tables are ReplacingMergeTree and the history's sorting key is the whole change,
so importing the same file again writes the same rows and changes nothing (idempotent), and an
import interrupted between the two inserts is completed by running it again.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numpy as np

from crm.subscribers import Extract
from warehouse import Warehouse

_NO_DATE = np.datetime64(0, "s")


@dataclass(frozen=True)
class ImportReport:
    rows_read: int
    imported: int
    new: int
    changed: int               # existing households whose status, products or fee changed
    history_rows: int
    skipped: int               # invalid rows left out with --skip-invalid
    dropped_identifiers: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    as_of: str

    def lines(self) -> list[str]:
        out = [f"read {self.rows_read:,} rows; imported {self.imported:,} households as of {self.as_of} "
               f"({self.new:,} new, {self.changed:,} changed, {self.imported - self.new - self.changed:,} "
               f"unchanged; {self.history_rows:,} history rows)"]
        if self.skipped:
            out.append(f"skipped {self.skipped:,} invalid rows")
        if self.dropped_identifiers:
            out.append("dropped direct-identifier columns (never stored): " + ", ".join(self.dropped_identifiers))
        if self.ignored_columns:
            out.append("ignored unknown columns: " + ", ".join(self.ignored_columns))
        return out


def import_extract(warehouse: Warehouse, extract: Extract, *, as_of: dt.date,
                   now_ms: int | None = None) -> ImportReport:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cols = extract.columns
    n = len(cols["household_id"])
    new, changed = _compare(warehouse, cols)
    history = _history(cols, new, changed, as_of, now_ms)
    # History first: if the second insert fails, the next run sees the same differences again
    # and writes the same (collapsing) history rows before finishing the current state.
    warehouse.insert_columns("subscriber_history", history)
    warehouse.insert_columns("subscribers", {
        **cols, "as_of": np.full(n, np.datetime64(as_of, "s")), "imported_ms": np.full(n, now_ms, dtype=np.int64)})
    return ImportReport(extract.rows_read, n, int(new.sum()), int(changed.sum()), len(history["household_id"]),
                        extract.bad_count, tuple(extract.dropped_identifiers), tuple(extract.ignored_columns),
                        as_of.isoformat())


def _compare(warehouse: Warehouse, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(is new, has changed) per extract row against the current `subscribers`."""
    cur = warehouse.query_columns(
        f"SELECT household_id, status, products, monthly_fee_cents FROM {warehouse.database}.subscribers FINAL "
        "ORDER BY household_id")
    ids = cols["household_id"]
    pos = np.searchsorted(cur["household_id"], ids)
    pos_ok = np.minimum(pos, max(len(cur["household_id"]) - 1, 0))
    known = (pos < len(cur["household_id"])) & (cur["household_id"][pos_ok] == ids) if len(ids) and \
        len(cur["household_id"]) else np.zeros(len(ids), dtype=bool)
    changed = np.zeros(len(ids), dtype=bool)
    if known.any():
        p = pos_ok[known]
        changed[known] = ((cur["status"][p] != cols["status"][known])
                          | (cur["products"][p] != cols["products"][known])
                          | (cur["monthly_fee_cents"][p] != cols["monthly_fee_cents"][known]))
    return ~known, changed


def _history(cols: dict[str, np.ndarray], new: np.ndarray, changed: np.ndarray, as_of: dt.date,
             now_ms: int) -> dict[str, np.ndarray]:
    as_of_s = np.datetime64(as_of, "s")
    status, ended = cols["status"], cols["ended"]
    # A change takes effect on the end date for an ending, otherwise when the extract says so.
    effective = np.where((status == "ended") & (ended != _NO_DATE), ended, as_of_s)
    # New households: their activation, then (if they are no longer active) the current status.
    first = new
    current = changed | (new & (status != "active"))
    parts = [(first, cols["activated"], np.full(len(status), "active", dtype=object)),
             (current, effective, status)]
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("household_id", "day", "status", "products",
                                                       "monthly_fee_cents")}
    for mask, day, st in parts:
        out["household_id"].append(cols["household_id"][mask])
        out["day"].append(day[mask])
        out["status"].append(st[mask])
        out["products"].append(cols["products"][mask])
        out["monthly_fee_cents"].append(cols["monthly_fee_cents"][mask])
    merged = {k: np.concatenate(v) for k, v in out.items()}
    merged["day"] = merged["day"].astype("datetime64[s]")
    merged["imported_ms"] = np.full(len(merged["household_id"]), now_ms, dtype=np.int64)
    return merged
