"""BoxDirectory: a full look-up of each household's box every few hours, new households between."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marketing.audience import FULL_EVERY_MS, NEW_OVERLAP_MS, BoxDirectory, Boxes


class Events:
    """A store stand-in answering the box query from (household, device, region, ts_ms) rows."""

    def __init__(self, rows: list[tuple[int, str, str, int]]) -> None:
        self.rows = rows
        self.database = "stb"
        self.windows: list[int] = []

    def query_columns(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        since = int((params or {})["since"])
        self.windows.append(since)
        counts: dict[tuple[int, str], tuple[str, int]] = {}
        for hh, dev, region, ts in self.rows:
            if ts >= since:
                r, n = counts.get((hh, dev), (region, 0))
                counts[hh, dev] = (r, n + 1)
        best: dict[int, tuple[str, str, int]] = {}
        for (hh, dev), (region, n) in counts.items():
            if hh not in best or n > best[hh][2]:
                best[hh] = (dev, region, n)
        ids = sorted(best)
        return {"household_id": np.array(ids, dtype=np.uint64),
                "device_id": np.array([best[h][0] for h in ids], dtype=object),
                "region": np.array([best[h][1] for h in ids], dtype=object)}


DAY = 86_400_000
NOW = 400 * DAY


def test_a_new_household_is_reachable_at_the_next_cycle_without_a_full_scan() -> None:
    store = Events([(1, "a", "north", NOW - 5 * DAY), (2, "b", "south", NOW - DAY)])
    boxes = BoxDirectory()
    first = boxes.get(store, NOW, 30)  # type: ignore[arg-type]
    assert first.household_id.tolist() == [1, 2] and store.windows == [NOW - 30 * DAY]
    store.rows.append((3, "c", "east", NOW + 60_000))
    second = boxes.get(store, NOW + 120_000, 30)  # type: ignore[arg-type]
    assert store.windows[-1] == NOW - NEW_OVERLAP_MS  # only since the last look, with the overlap
    found, device, region = second.lookup(np.array([3, 1, 9], dtype=np.uint64))
    assert found.tolist() == [True, True, False]
    assert device.tolist() == ["c", "a", ""] and region.tolist() == ["east", "north", ""]


def test_a_household_keeps_its_main_box_until_the_next_full_look_up() -> None:
    rows = [(1, "a", "north", NOW - DAY + i) for i in range(3)]
    store = Events(rows)
    boxes = BoxDirectory()
    boxes.get(store, NOW, 30)  # type: ignore[arg-type]
    store.rows += [(1, "b", "north", NOW + i) for i in range(10)]  # another box now watched most
    assert boxes.get(store, NOW + 60_000, 30).lookup(np.array([1], dtype=np.uint64))[1].tolist() == ["a"]  # type: ignore[arg-type]
    later = NOW + FULL_EVERY_MS
    assert boxes.get(store, later, 30).lookup(np.array([1], dtype=np.uint64))[1].tolist() == ["b"]  # type: ignore[arg-type]
    assert store.windows[-1] == later - 30 * DAY


def test_time_going_back_reloads_everything() -> None:
    store = Events([(1, "a", "north", NOW - DAY)])
    boxes = BoxDirectory()
    boxes.get(store, NOW, 30)  # type: ignore[arg-type]
    boxes.get(store, NOW - DAY, 30)  # type: ignore[arg-type]
    assert store.windows == [NOW - 30 * DAY, NOW - 31 * DAY]


def test_adding_keeps_households_sorted_and_known_ones_unchanged() -> None:
    have = Boxes(np.array([2, 5], dtype=np.uint64), np.array(["b", "e"], dtype=object),
                 np.array(["n", "n"], dtype=object))
    more = Boxes(np.array([1, 5, 7], dtype=np.uint64), np.array(["x", "y", "z"], dtype=object),
                 np.array(["s", "s", "s"], dtype=object))
    got = have.adding(more)
    assert got.household_id.tolist() == [1, 2, 5, 7]
    assert got.device_id.tolist() == ["x", "b", "e", "z"]
    assert have.adding(Boxes(np.array([2], dtype=np.uint64), np.array(["q"], dtype=object),
                             np.array(["s"], dtype=object))) is have
