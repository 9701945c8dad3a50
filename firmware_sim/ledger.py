"""The responder's ledger: what households bought (or were kept by) in the simulated world.

One JSON object a line, appended:

    {"household_id": 17, "product": "sports", "day": "2026-12-01", "source": "accepted"}

`source` is `accepted` (the household accepted an offer of the product on its TV), `organic` (it
bought the product on its own: what a holdout converts at) or `retention` (a retention offer was
shown to a persuadable household: it will not leave; `product` is "retention"). The subscriber
extract (`subscribers.subscriber_rows(..., purchases=read_ledger(path))`) adds bought products to
the household's `products` from their day on, and keeps saved households active.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

SOURCES: Final = ("accepted", "organic", "retention")


@dataclass(frozen=True, slots=True)
class Purchase:
    household_id: int
    product: str
    day: dt.date
    source: str

    def to_json(self) -> str:
        return json.dumps({"household_id": self.household_id, "product": self.product,
                           "day": self.day.isoformat(), "source": self.source})


def read_ledger(path: str | Path) -> list[Purchase]:
    """Every entry of a ledger file, in file order (a missing file is an empty ledger; a torn last
    line, from a killed writer, is skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
            out.append(Purchase(int(doc["household_id"]), str(doc["product"]), dt.date.fromisoformat(doc["day"]),
                                str(doc["source"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


class LedgerWriter:
    """Appends entries, one line each, flushed at once (a crash loses at most a torn line)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # closed by close()

    def write(self, entries: Iterable[Purchase]) -> None:
        for entry in entries:
            self._file.write(entry.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
