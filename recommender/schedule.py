"""The EPG schedule the service recommends from: airings with their content ids.

An immutable `Schedule` holds column arrays sorted by start time, so a time window is two
binary searches plus a mask (no Python loop over airings). Loaded from the store
(`airings` joined to `programmes`), and snapshotted into every model artifact so serving can
start when the store cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommender.signal import programmes_sql
from warehouse.base import Warehouse

COLUMNS = ("channel_id", "start_ms", "stop_ms", "programme_id", "content_id")
_DTYPES = {"channel_id": np.uint32, "start_ms": np.int64, "stop_ms": np.int64,
           "programme_id": np.uint64, "content_id": np.uint64}


def airings_sql(t0_ms: int, t1_ms: int, db: str) -> str:
    """Airings overlapping [t0, t1) (latest version of each), with content ids."""
    return (
        f"SELECT channel_id, start_ms, stop_ms, programme_id, content_id FROM ("
        f"SELECT channel_id, start_ms, argMax(stop_ms, updated_ms) AS stop_ms, "
        f"argMax(programme_id, updated_ms) AS programme_id FROM ("
        f"SELECT channel_id, start_ms, stop_ms, programme_id, updated_ms FROM {db}.airings "
        f"WHERE start_ms < {int(t1_ms)} AND stop_ms > {int(t0_ms)}) AS r GROUP BY channel_id, start_ms) AS a "
        f"ALL LEFT JOIN ({programmes_sql(db)}) AS p USING programme_id "
        f"ORDER BY start_ms, channel_id"
    )


@dataclass(frozen=True)
class Schedule:
    channel_id: np.ndarray    # uint32
    start_ms: np.ndarray      # int64, ascending
    stop_ms: np.ndarray       # int64
    programme_id: np.ndarray  # uint64
    content_id: np.ndarray    # uint64 (0 when the programme is unknown)
    max_length_ms: int
    source: str = ""          # "store" or "artifact <version>"
    loaded_ms: int = 0

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray], source: str = "", loaded_ms: int = 0) -> Schedule:
        arrays = {name: np.asarray(cols[name], dtype=_DTYPES[name]) for name in COLUMNS}
        ok = arrays["stop_ms"] > arrays["start_ms"]
        order = np.lexsort((arrays["channel_id"][ok], arrays["start_ms"][ok]))
        arrays = {name: a[ok][order] for name, a in arrays.items()}
        length = arrays["stop_ms"] - arrays["start_ms"]
        return cls(**arrays, max_length_ms=int(length.max()) if len(length) else 0,
                   source=source, loaded_ms=loaded_ms)

    @classmethod
    def empty(cls) -> Schedule:
        return cls.from_columns({name: np.zeros(0) for name in COLUMNS}, source="empty")

    @classmethod
    def fetch(cls, store: Warehouse, t0_ms: int, t1_ms: int, now_ms: int = 0) -> Schedule:
        return cls.from_columns(store.query_columns(airings_sql(t0_ms, t1_ms, store.database)), "store", now_ms)

    def __len__(self) -> int:
        return len(self.start_ms)

    @property
    def span(self) -> tuple[int, int]:
        if not len(self):
            return (0, 0)
        return int(self.start_ms[0]), int(self.stop_ms.max())

    def window(self, t0_ms: int, t1_ms: int, channels: np.ndarray | None = None,
               min_remaining_ms: int = 0) -> np.ndarray:
        """Indexes of airings watchable in [t0, t1): starting in it, or on air at t0 with at
        least `min_remaining_ms` left; on `channels` (sorted uint32) when given."""
        lo = int(np.searchsorted(self.start_ms, t0_ms - self.max_length_ms, side="left"))
        hi = int(np.searchsorted(self.start_ms, t1_ms, side="left"))
        idx = np.arange(lo, hi)
        stop = self.stop_ms[lo:hi]
        start = self.start_ms[lo:hi]
        ok = (start >= t0_ms) | (stop - t0_ms >= max(min_remaining_ms, 1))
        if channels is not None:
            ok &= member(self.channel_id[lo:hi], channels)
        return idx[ok]

    def next_airings(self, content_ids: np.ndarray, t0_ms: int, channels: np.ndarray | None = None,
                     min_remaining_ms: int = 0) -> np.ndarray:
        """For each content, the index of its first watchable airing from t0 (-1 if none)."""
        cand = self.window(t0_ms, np.iinfo(np.int64).max, channels, min_remaining_ms)
        ids = np.asarray(content_ids, dtype=np.uint64)
        out = np.full(len(ids), -1, dtype=np.int64)
        if not len(cand) or not len(ids):
            return out
        cand = cand[member(self.content_id[cand], np.unique(ids))]
        first_content, first = np.unique(self.content_id[cand], return_index=True)  # cand is by start
        pos = np.minimum(np.searchsorted(first_content, ids), max(len(first_content) - 1, 0))
        found = (len(first_content) > 0) & (first_content[pos] == ids)
        out[found] = cand[first[pos[found]]]
        return out

    def save(self, path: Path) -> None:
        np.savez(path, **{name: getattr(self, name) for name in COLUMNS})

    @classmethod
    def load(cls, path: Path, source: str = "artifact") -> Schedule:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_columns({name: z[name] for name in COLUMNS}, source)


def member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Whether each value is in `sorted_set` (ascending): np.isin by binary search."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return np.asarray(sorted_set[pos] == values)
