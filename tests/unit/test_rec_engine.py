"""Engine: windows, entitlements, exclusion, cold start, argument checks (in memory, no store)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.dayparts import Dayparts
from recommender.engine import COLD_START, POPULAR, SIMILAR, WATCHED_BEFORE, Engine, Snapshot
from recommender.errors import InvalidArgument, UnknownContent
from recommender.model import ContentModel
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import AlsSettings, DaypartSettings, IndexSettings, ServeSettings, SignalSettings
from recommender.signal import Watched, build_viewing
from tests.unit.test_rec_planted import HOUR_MS, SLOT_MS, PlantedWorld, planted_world, reference_viewing

DAYPARTS = Dayparts.from_settings(DaypartSettings())
ALS = AlsSettings(factors=8, regularization=5.0, alpha=2.0, iterations=10, threads=1)


def snapshot_of(w: PlantedWorld) -> Snapshot:
    signal = SignalSettings()
    viewing = build_viewing(reference_viewing(w, w.start_ms, w.end_ms, signal, DAYPARTS), DAYPARTS.count, w.end_ms)
    model = ContentModel(ALS, DaypartSettings(), IndexSettings()).fit(viewing, signal)
    ev = w.events
    watched = ev["duration_s"] >= signal.zap_threshold_s
    content = ev["programme_id"] // 1000
    pop = Popularity.from_columns({"content_id": content[watched], "channel_id": ev["channel_id"][watched],
                                   "daypart": DAYPARTS.of_ms(ev["ts_ms"][watched]),
                                   "audience": np.ones(int(watched.sum()))}, DAYPARTS)
    a = w.airings
    sched = Schedule.from_columns({**{k: a[k] for k in ("channel_id", "start_ms", "stop_ms", "programme_id")},
                                   "content_id": a["programme_id"] // 1000}, "test")
    seen = Watched.from_pairs(ev["household_id"][watched], ev["programme_id"][watched])
    return Snapshot("v-test", {}, model, pop, seen, viewing, viewing.household_raw(), sched)


@pytest.fixture(scope="module")
def world() -> PlantedWorld:
    return planted_world(households=48, days=10, seed=11)


@pytest.fixture(scope="module")
def snap(world: PlantedWorld) -> Snapshot:
    return snapshot_of(world)


ENGINE = Engine(ServeSettings(), DAYPARTS)


def prime_time(w: PlantedWorld) -> int:
    return w.end_ms + 19 * HOUR_MS  # the day after the data: the schedule goes on


def test_recommend_prime_time_puts_the_favourite_first(world: PlantedWorld, snap: Snapshot) -> None:
    at = prime_time(world)
    firsts = []
    for hh in world.households[:12].tolist():
        a = ENGINE.recommend(snap, hh, k=5, at_ms=at, window_minutes=240)
        assert a.model_version == "v-test" and len(a.request_id) == 32
        contents = [i.content_id for i in a.items]
        assert len(contents) == len(set(contents))           # one airing per content
        assert all(at <= i.start_ms < at + 240 * 60_000 or i.start_ms < at < i.stop_ms for i in a.items)
        firsts.append(contents[0] == world.favourite[hh])
        assert a.items[0].reason == WATCHED_BEFORE
        assert [i.score for i in a.items] == sorted((i.score for i in a.items), reverse=True)
    assert np.mean(firsts) >= 0.9


def test_entitlement_filter_and_window(world: PlantedWorld, snap: Snapshot) -> None:
    at = prime_time(world)
    hh = int(world.households[0])
    a = ENGINE.recommend(snap, hh, k=10, at_ms=at, window_minutes=60, channel_ids=[102, 104])
    assert a.items and {i.channel_id for i in a.items} <= {102, 104}
    assert all(i.start_ms < at + 60 * 60_000 and i.stop_ms > at for i in a.items)
    none = ENGINE.recommend(snap, hh, k=10, at_ms=at, window_minutes=60, channel_ids=[999])
    assert none.items == []


def test_airing_nearly_over_is_not_offered(world: PlantedWorld, snap: Snapshot) -> None:
    at = prime_time(world) + SLOT_MS - 2 * 60_000       # 2 minutes before every slot ends
    a = ENGINE.recommend(snap, int(world.households[1]), k=50, at_ms=at, window_minutes=10)
    assert a.items and all(i.start_ms > at for i in a.items)  # min_remaining_s = 300


def test_exclude_watched_drops_seen_programmes(world: PlantedWorld, snap: Snapshot) -> None:
    s = snap.schedule
    for hh in world.households.tolist():       # find a repeat of an episode the household saw
        seen = snap.watched.of(hh)
        later = np.flatnonzero(np.isin(s.programme_id, seen) & (s.start_ms >= world.end_ms))
        if len(later):
            break
    a = int(later[0])
    at, ch = int(s.start_ms[a]), int(s.channel_id[a])
    full = ENGINE.recommend(snap, hh, k=100, at_ms=at, window_minutes=1, channel_ids=[ch])
    excl = ENGINE.recommend(snap, hh, k=100, at_ms=at, window_minutes=1, channel_ids=[ch], exclude_watched=True)
    assert [i.programme_id for i in full.items] == [int(s.programme_id[a])]
    assert excl.items == []


def test_cold_start_gets_popular(world: PlantedWorld, snap: Snapshot) -> None:
    at = prime_time(world)
    a = ENGINE.recommend(snap, 123_456_789, k=5, at_ms=at)
    p = ENGINE.popular(snap, at_ms=at, k=5)
    assert [i.reason for i in a.items] == [COLD_START] * 5
    assert [i.content_id for i in a.items] == [i.content_id for i in p.items]
    assert all(i.reason == POPULAR for i in p.items)
    assert a.request_id != p.request_id


def test_similar_with_next_airing(world: PlantedWorld, snap: Snapshot) -> None:
    at = prime_time(world)
    fav = world.favourite[int(world.households[0])]
    a = ENGINE.similar(snap, fav, k=4, at_ms=at)
    assert len(a.items) == 4 and fav not in [i.content_id for i in a.items]
    assert all(i.reason == SIMILAR for i in a.items)
    for i in a.items:
        assert i.start_ms == 0 or (i.stop_ms > at and i.programme_id // 1000 == i.content_id)
    with pytest.raises(UnknownContent):
        ENGINE.similar(snap, 4242, at_ms=at)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"household_id": 0}, "household_id"),
    ({"k": 101}, "k"),
    ({"at_ms": 1_767_225_600}, "at_unix_ms"),        # seconds, not milliseconds
    ({"at_ms": -5}, "at_unix_ms"),
    ({"window_minutes": 24 * 60 + 1}, "window_minutes"),
    ({"channel_ids": list(range(10_001))}, "channel_ids"),
])
def test_invalid_arguments(snap: Snapshot, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"household_id": 5001, **kwargs}
    with pytest.raises(InvalidArgument) as err:
        ENGINE.recommend(snap, **args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_defaults_apply(world: PlantedWorld, snap: Snapshot) -> None:
    a = ENGINE.recommend(snap, int(world.households[0]), k=0, at_ms=prime_time(world), window_minutes=0)
    assert len(a.items) == ServeSettings().default_k
    with pytest.raises(InvalidArgument):
        ENGINE.similar(snap, 0)


def test_schedule_window_and_next_airings(world: PlantedWorld, snap: Snapshot) -> None:
    s = snap.schedule
    t = prime_time(world) + 10 * 60_000
    idx = s.window(t, t + HOUR_MS)
    assert len(idx) and np.all((s.start_ms[idx] < t + HOUR_MS) & (s.stop_ms[idx] > t))
    brute = np.flatnonzero((s.start_ms < t + HOUR_MS) & (s.stop_ms > t))
    assert sorted(idx.tolist()) == brute.tolist()
    nxt = s.next_airings(np.array([1000, 9999], np.uint64), t)
    assert nxt[1] == -1 and s.content_id[nxt[0]] == 1000 and s.stop_ms[nxt[0]] > t
    earlier = np.flatnonzero((s.content_id == 1000) & (s.stop_ms > t + 1) & (s.start_ms < s.start_ms[nxt[0]]))
    assert len(earlier) == 0
