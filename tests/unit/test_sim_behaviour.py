"""Simulated viewing: valid wire events, consistency with the guide, determinism, realism."""

from __future__ import annotations

import collections
import datetime as dt
from functools import cache
from typing import Any

import msgpack
import numpy as np

from firmware_sim.behaviour import DeviceDay, Simulator
from firmware_sim.epg import DAY_MS, Epg
from firmware_sim.households import Households
from firmware_sim.recs import PopularNowSource, Recommendations
from proto.telemetry import check_event

DAYS = 3
N = 400


@cache
def world() -> tuple[Epg, Households]:
    e = Epg.generate(dt.date(2025, 3, 3), DAYS, seed=1, size="small")
    return e, Households.generate(e, N, seed=7)


@cache
def fleet(with_recs: bool = False) -> tuple[DeviceDay, ...]:
    e, h = world()
    sim = Simulator(e, h, rec_source=PopularNowSource(e) if with_recs else None)
    return tuple(sim.iter_days(block_size=150))


def views(dds: tuple[DeviceDay, ...]) -> np.ndarray:
    """[n, 6]: household_id, ts, channel, programme, duration_s, end_reason."""
    return np.array([[d.household_id, *x[1:6]] for d in dds for x in d.events if x[0] == 1], dtype=np.int64)


def test_every_box_every_day_and_valid_events() -> None:
    _e, h = world()
    dds = fleet()
    assert len(dds) == DAYS * int(h.n_devices.sum())
    kinds: collections.Counter[str] = collections.Counter()
    for d in dds:
        for x in d.events:
            kinds[check_event(x).name] += 1
    assert kinds.keys() >= {"view", "tune", "epg_click", "power"}
    assert not kinds.keys() & {"rec_impression", "rec_click"}  # no recommender configured


def check_device(e: Epg, d: DeviceDay) -> None:
    """A box's day is a consistent story: sessions, contiguous views, tunes from where it is."""
    on, channel, last_view, view_end, last_emit, switched = False, None, None, None, 0, False
    for x, emit in zip(d.events, d.emit_ms, strict=True):
        assert emit >= last_emit
        last_emit = emit
        kind, ts = x[0], x[1]
        if kind == 5:  # power
            if x[2] == 1:
                assert not on
                on, channel, last_view = True, None, None
            else:
                assert on and last_view is not None and last_view[5] == 1  # the last view ends by standby
                assert last_view[1] + last_view[4] * 1000 == ts
                on = False
        elif kind == 1:  # view
            assert on and x[4] > 0
            i = e.airing_at(x[2], ts)
            assert i is not None and int(e.airings["programme_id"][i]) == x[3]
            assert ts + x[4] * 1000 <= e.airings["stop_ms"][i]
            assert x[5] != 2 or ts + x[4] * 1000 == e.airings["stop_ms"][i]
            assert channel in (None, x[2])
            assert view_end is None or ts >= view_end
            if last_view is not None and not switched:  # same channel, nothing between: a boundary
                assert last_view[5] == 2 and ts == view_end
            assert emit == ts + x[4] * 1000
            channel, last_view, view_end, switched = x[2], x, ts + x[4] * 1000, False
        elif kind == 2:  # tune
            assert on and x[2] == channel and x[3] != channel
            channel, switched = x[3], True
        else:
            assert on
            switched |= kind == 4  # VOD in between
    assert not on


def test_views_match_the_guide_and_sessions_are_consistent() -> None:
    e, _ = world()
    for d in fleet() + fleet(True):
        check_device(e, d)


def test_deterministic_and_seed_dependent() -> None:
    e, h = world()
    a = Simulator(e, h).simulate_day(1, range(30))
    b = Simulator(e, h).simulate_day(1, range(30))
    c = Simulator(e, h, seed=99).simulate_day(1, range(30))
    pack = lambda dds: msgpack.packb([d.events for d in dds])  # noqa: E731
    assert pack(a) == pack(b)
    assert pack(a) != pack(c)


def test_a_household_does_not_depend_on_the_fleet() -> None:
    e, _h = world()
    sim = Simulator(e, Households.generate(e, 12, seed=7), rec_source=PopularNowSource(e))
    alone = sim.household_events(12)
    in_fleet: dict[str, list[Any]] = collections.defaultdict(list)
    for d in fleet(True):
        if d.household_id == 12:
            in_fleet[d.device_id].extend(d.events)
    assert sum(map(len, alone.values())) > 0
    assert msgpack.packb(alone) == msgpack.packb(dict(in_fleet))


def test_realistic_figures() -> None:
    _e, _h = world()
    v = views(fleet())
    n_events = sum(len(d.events) for d in fleet())
    assert 15 < n_events / N / DAYS < 120
    dur = v[:, 4]
    assert 0.15 < (dur < 60).mean() < 0.6  # zapping
    hours = dur.sum() / 3600 / N / DAYS
    assert 2 < hours < 9  # household viewing per day
    hour = (v[:, 1] % DAY_MS) // 3_600_000
    assert 0.3 < dur[(hour >= 19) & (hour < 23)].sum() / dur.sum() < 0.6  # prime time
    tunes = collections.Counter(x[4] for d in fleet() for x in d.events if x[0] == 2)
    assert tunes.keys() == {0, 1, 2}
    assert set(np.unique(v[:, 5]).tolist()) == {0, 1, 2}


def test_households_watch_their_favourite_series_far_more() -> None:
    e, h = world()
    v = views(fleet())
    content = e.programmes["content_idx"][e.programme_rows(v[:, 3].astype(np.uint64))]
    watch: collections.Counter[tuple[int, int]] = collections.Counter()
    for hid, k, d in zip(v[:, 0].tolist(), content.tolist(), v[:, 4].tolist(), strict=True):
        watch[(hid, k)] += d
    fans: dict[int, set[int]] = collections.defaultdict(set)
    for i in range(len(h)):
        for m in h.members_of(i):
            for k in h.tastes.favourites[m][h.tastes.favourites[m] >= 0].tolist():
                fans[k].add(int(h.household_id[i]))
    lifts = []
    for k, who in fans.items():
        if len(who) >= 5:
            fan = np.mean([watch[(x, k)] for x in who])
            other = np.mean([watch[(int(x), k)] for x in h.household_id if int(x) not in who])
            lifts.append((fan + 60) / (other + 60))
    assert len(lifts) >= 10
    assert np.median(lifts) > 4


def test_recommendation_events() -> None:
    dds = fleet(True)
    shown: dict[str, dict[int, int]] = collections.defaultdict(dict)
    clicks, rec_tunes = 0, 0
    for d in dds:
        for x in d.events:
            if x[0] == 6:
                assert x[3] == PopularNowSource.model_version and 1 <= x[5] <= 5
                shown[x[2]][x[4]] = x[5]
            elif x[0] == 7:
                assert shown[x[2]][x[3]] == x[4]  # a click is on an item shown, with its rank
                clicks += 1
            elif x[0] == 2 and x[4] == 3:
                rec_tunes += 1
    assert len(shown) > 100 and clicks > 10 and rec_tunes > 5
    assert clicks < sum(len(v) for v in shown.values()) / 5


class FutureAndBogus:
    """A recommender that suggests tomorrow's airings and ids the guide does not know."""

    def __init__(self, e: Epg) -> None:
        self.e = e

    def recommend(self, household_id: int, at_ms: int, k: int) -> Recommendations:
        later = self.e.airings_between(at_ms + 6 * 3_600_000, at_ms + 6 * 3_600_000 + 1)
        items = [(int(r["programme_id"]), int(r["channel_id"]), int(r["start_ms"])) for r in later[:k - 1]]
        return Recommendations([(1, 101, at_ms), *items], f"r{household_id}", "test-1")


def test_reminders_for_later_airings_and_unknown_items_ignored() -> None:
    e, h = world()
    sim = Simulator(e, h, rec_source=FutureAndBogus(e))
    events = [x for d in sim.simulate_day(0, range(120)) for x in d.events]
    reminders = [x for x in events if x[0] == 3 and x[3] == "remind"]
    assert reminders
    assert not [x for x in events if x[0] == 2 and x[4] == 3]  # nothing on now: no rec tunes
    assert not [x for x in events if x[0] == 7 and x[3] == 1]  # the unknown item is never clicked
