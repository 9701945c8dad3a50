"""Recommendations shown in the simulated guide, and how members react to them.

When a member opens the guide and the simulator has a `RecommendationSource`, it asks for
`k` airings, logs one `rec_impression` per item (rank 1 = top), and the member clicks at most
one: scanning down the list, item r is clicked with probability

    position_bias(r) * expit(click_bias + click_slope * (u_item - u_best))

where u_item is the member's true utility for the item (`choice.utility`) and u_best that of
what they were about to choose themselves. A click on an airing that is on now on an
entitled channel tunes to it (`tune` method 3, with probability 0.9); a click on a later
airing sets a reminder (`epg_click` rec/remind); a click on an airing that has ended by the
time the member acts does nothing more.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from firmware_sim.epg import Epg
from firmware_sim.schedule import DAY_MS, MINUTE_MS


class Recommendations(NamedTuple):
    items: list[tuple[int, int, int]]  # (programme_id, channel_id, start_ms), best first
    request_id: str                     # <= 128 characters
    model_version: str                  # <= 128 characters


class RecommendationSource(Protocol):
    def recommend(self, household_id: int, at_ms: int, k: int) -> Recommendations:
        """Up to `k` airings for the household at `at_ms` (a tuple-compatible Recommendations)."""
        ...


class PopularNowSource:
    """What is on now, most popular content first: the non-personal baseline."""

    model_version = "popular-now-1"

    def __init__(self, epg: Epg) -> None:
        self._epg = epg
        self._score = epg.content_pop_z[epg.features.content_idx]
        self._ranked: dict[int, list[list[int]]] = {}  # UTC day -> per minute: airings, best first
        a = epg.airings
        self._items = list(zip(a["programme_id"].tolist(), a["channel_id"].tolist(), a["start_ms"].tolist(),
                               strict=True))

    def recommend(self, household_id: int, at_ms: int, k: int) -> Recommendations:
        day = at_ms // DAY_MS
        ranked = self._ranked.get(day)
        if ranked is None:
            if len(self._ranked) > 3:
                self._ranked.pop(next(iter(self._ranked)))
            grid = self._epg.minute_grid(day * DAY_MS, DAY_MS // MINUTE_MS)
            order = np.argsort(-np.where(grid >= 0, self._score[np.maximum(grid, 0)], -np.inf), axis=1,
                               kind="stable")
            best = np.take_along_axis(grid, order, axis=1)
            ranked = self._ranked[day] = [[int(i) for i in row if i >= 0] for row in best.tolist()]
        now = ranked[(at_ms - day * DAY_MS) // MINUTE_MS][:k]
        return Recommendations([self._items[i] for i in now], f"pop-{household_id}-{at_ms}",
                               self.model_version)


def position_bias(rank: np.ndarray) -> np.ndarray:
    """Probability that the member looks at the item at 1-based `rank`."""
    return np.asarray(1.0 / np.power(rank, 0.8))
