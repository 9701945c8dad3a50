"""Viewing behaviour: households' boxes turned into wire-format event streams.

    sim = Simulator(epg, households, rec_source=PopularNowSource(epg))
    for dd in sim.iter_days():                  # day by day, block by block: bounded memory
        agent_for(dd.device_id).replay(dd.events, dd.emit_ms)
    streams = sim.household_events(42)         # {device_id: [event, ...]} over all days

Events are positional wire arrays (`proto.telemetry`), in the order the box records them:
`emit_ms[i]` is when event i happens — for a `view`, when the stretch ends (its `ts_ms` is
when it began). What a session looks like on the wire:

    power 1 ─ [view of the resumed channel, tune] ─ view … view ─ [epg_click …] ─ tune ─ view …
          └ zapping: tune(method 1), short view (end_reason 0), tune(1), …
    … view (end_reason 1) ─ power 2 (standby) or 0 (off)

- A view is one stretch on one programme: a stretch that reaches the programme's end is
  split there (end_reason 2) and, if the viewer stays, the next programme is a new view
  starting at the boundary with no tune in between. So watch time per programme is the sum
  of its views, and a view's `programme_id` is always what the channel was airing.
- The last view of a session ends with end_reason 1; a session that ends at a programme
  boundary shows a few seconds of the next programme first (the box is on until standby).
- `vod_play` (asset `vod-{content_id}`, position 0, duration_s = seconds watched) comes from
  a member who would rather switch off but has VOD habits; live viewing resumes after it.
- `rec_impression` / `rec_click` / `tune` method 3 appear only with a `rec_source`.
- Churn (`churn.py`, on by default): a household that has left reports nothing (its boxes still
  get a `DeviceDay`, with no events), one on holiday neither; an unhappy one watches less and in
  fragments for weeks before it leaves.

Determinism: a box's day is a function of (seed, household id, device number, day) only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_sim.catalogue import REGIONS
from firmware_sim.choice import AiringFeatures, ChoiceModel
from firmware_sim.churn import Churn
from firmware_sim.engine import DayRun
from firmware_sim.epg import Epg
from firmware_sim.households import Households, device_id, entitlements
from firmware_sim.recs import PopularNowSource, Recommendations, RecommendationSource
from firmware_sim.schedule import DAY_MS
from firmware_sim.sessions import Premieres, broadcast_day_start

__all__ = ["BehaviourParams", "DeviceDay", "PopularNowSource", "RecommendationSource", "Recommendations",
           "Simulator"]

GRID_MINUTES = 26 * 60  # a broadcast day plus time to finish a late film


@dataclass(frozen=True, slots=True)
class BehaviourParams:
    """Behavioural knobs (the utility coefficients are in `choice.ChoiceModel`)."""

    outside_shift: float = 2.0      # added to members' utility of switching off
    power_on_outside: float = -2.5  # ... right after switching on (rare)
    full_bias: float = -0.4         # P(watch to the programme's end) = expit(bias + slope * u)
    full_slope: float = 0.9
    partial_slope: float = 0.4      # a partial stretch lasts partial_s * exp(slope * u) * Exp(1)
    zap_max: int = 6                # zap up/down when the target is this many channels away or less
    zap_view_s: float = 5.0         # seconds on a zapped-through channel: 2 + Exp(this), at most 25
    zap_catch: float = 0.5          # P(stopping on a zapped-through channel nearly as good as the target)
    catch_margin: float = 0.5       # "nearly": utility within this of the target's
    guide_peek: float = 0.25        # P(guide | staying) = this * P(guide | switching)
    finish_p: float = 0.7           # P(staying past the session's planned end to finish a programme)
    finish_max_s: int = 2400        # ... if it ends within this
    off_p: float = 0.15             # P(power off rather than standby)
    rec_k: int = 5                  # recommendations asked for per guide opening
    click_bias: float = -2.0        # rec click: position_bias * expit(bias + slope * (u_item - u_best))
    click_slope: float = 1.5
    tune_after_click: float = 0.9   # P(tuning to a clicked airing that is on now)


@dataclass(frozen=True, slots=True)
class DeviceDay:
    """One box's events for one broadcast day (04:00 to 04:00 UTC)."""

    household_id: int
    device_id: str
    region: str
    day: int
    events: list[list[Any]]
    emit_ms: list[int] = field(repr=False)


class Simulator:
    """Generates households' viewing over the guide's days."""

    def __init__(self, epg: Epg, households: Households, *, seed: int | None = None,
                 model: ChoiceModel | None = None, params: BehaviourParams | None = None,
                 rec_source: RecommendationSource | None = None, churn: Churn | None = None) -> None:
        self.epg = epg
        self.households = households
        # Who leaves and when (firmware_sim.churn); Churn.generate(households, ChurnParams.off()) for none.
        self.churn = churn if churn is not None else Churn.generate(households)
        self.seed = households.seed if seed is None else seed
        self.model = model or ChoiceModel()
        self.params = params or BehaviourParams()
        self.rec_source = rec_source
        self.features: AiringFeatures = epg.features
        ent = entitlements(epg)
        # Up/down order: a household's entitled channels by channel number.
        self.position = np.where(ent, np.cumsum(ent, axis=2) - 1, -1).astype(np.int64)
        self.chan_at = np.full(ent.shape, -1, dtype=np.int64)
        for p in range(ent.shape[0]):
            for r in range(ent.shape[1]):
                idx = np.flatnonzero(ent[p, r])
                self.chan_at[p, r, :len(idx)] = idx
        self.vod_assets = np.array([k for k, c in enumerate(epg.contents) if c.kind == "film"],
                                   dtype=np.int64)
        self._grid_day = -1
        self._grid = np.zeros((0, 0), dtype=np.int32)
        self._premieres = Premieres(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def grid(self, day: int) -> np.ndarray:
        """Airing index per (minute since the broadcast day's start, channel)."""
        self._prepare(day)
        return self._grid

    def premieres(self, day: int) -> Premieres:
        """The broadcast day's new airings (for appointment viewing)."""
        self._prepare(day)
        return self._premieres

    def _prepare(self, day: int) -> None:
        if day == self._grid_day:
            return
        t0 = broadcast_day_start(self.epg.start_ms, day)
        self._grid = self.epg.minute_grid(t0, GRID_MINUTES)
        a, f = self.epg.airings, self.features
        new = np.flatnonzero(a["is_new"] & (a["start_ms"] >= t0) & (a["start_ms"] < t0 + DAY_MS))
        order = new[np.lexsort((a["start_ms"][new], f.content_idx[new]))]
        self._premieres = Premieres(f.content_idx[order], a["start_ms"][order], a["stop_ms"][order])
        self._grid_day = day

    def simulate_day(self, day: int, rows: Iterable[int] | None = None) -> list[DeviceDay]:
        """Every box of the households at `rows` (distinct row numbers into `households`;
        default: all) for broadcast day `day` (04:00 UTC on the guide's day `day` to 04:00 the
        next day). Boxes come in the order of `rows`, then by device number."""
        if not 0 <= day < self.epg.days:
            raise ValueError(f"day {day} outside the guide's 0..{self.epg.days - 1}")
        rows_ = np.arange(len(self.households)) if rows is None else np.fromiter(rows, dtype=np.int64)
        if len(np.unique(rows_)) != len(rows_):
            raise ValueError("rows must be distinct")
        run = DayRun(self, rows_, day)
        hh = self.households
        out = []
        for d, events in enumerate(run.run()):
            row = int(run.block.dev_household[d])
            hid = int(hh.household_id[row])
            out.append(DeviceDay(hid, device_id(hid, int(run.block.dev_k[d])), REGIONS[int(hh.region[row])],
                                 day, events.events, events.emit_ms))
        return out

    def iter_days(self, days: Iterable[int] | None = None, rows: np.ndarray | None = None,
                  block_size: int = 4096) -> Iterator[DeviceDay]:
        """Day after day, block after block of households: memory stays bounded by the block."""
        rows_ = np.arange(len(self.households)) if rows is None else np.asarray(rows, dtype=np.int64)
        for day in range(self.epg.days) if days is None else days:
            for lo in range(0, len(rows_), block_size):
                yield from self.simulate_day(day, rows_[lo:lo + block_size])

    def household_events(self, household_id: int,
                         days: Iterable[int] | None = None) -> dict[str, list[list[Any]]]:
        """{device_id: events over the days} for one household."""
        row = self.households.index_of(household_id)
        out: dict[str, list[list[Any]]] = {d: [] for d in self.households.device_ids(row)}
        for dd in self.iter_days(days, np.array([row])):
            out[dd.device_id].extend(dd.events)
        return out
