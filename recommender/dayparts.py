"""Dayparts: the day split by local hour (night, morning, daytime, afternoon, prime, late).

The same mapping runs in SQL (training aggregation) and in numpy (serving, evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.settings import DAY_MS, HOUR_MS, DaypartSettings


@dataclass(frozen=True)
class Dayparts:
    names: tuple[str, ...]
    hour_table: tuple[int, ...]  # daypart of each local hour 0..23
    offset_ms: int               # local time = UTC + offset

    @classmethod
    def from_settings(cls, s: DaypartSettings) -> Dayparts:
        return cls(tuple(s.names), tuple(s.hour_table()), s.utc_offset_minutes * 60_000)

    @property
    def count(self) -> int:
        return len(self.names)

    def of_ms(self, ts_ms: np.ndarray | int) -> np.ndarray:
        """Daypart index (int8) of each unix-ms timestamp."""
        hours = ((np.asarray(ts_ms, dtype=np.int64) + self.offset_ms) % DAY_MS) // HOUR_MS
        return np.asarray(self.hour_table, dtype=np.int8)[hours]

    def sql(self, ts_column: str) -> str:
        """A ClickHouse expression (18.16 and current) giving the daypart index of a ms column."""
        table = ", ".join(str(d) for d in self.hour_table)
        return (f"arrayElement([{table}], toUInt8(intDiv((({ts_column} + {self.offset_ms}) % {DAY_MS} "
                f"+ {DAY_MS}) % {DAY_MS}, {HOUR_MS}) + 1))")

    def hours(self) -> np.ndarray:
        """Hours a day that each daypart spans (to compare audiences per hour)."""
        return np.bincount(np.asarray(self.hour_table), minlength=self.count).astype(np.float64)
