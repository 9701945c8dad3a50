"""The simulated guide: tiling, daypart structure, series slots, ids, lookups, determinism."""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import pytest

from firmware_sim.epg import DAY_MS, MINUTE_MS, Epg
from firmware_sim.schedule import PROGRAMME_ID_STRIDE

START = dt.date(2025, 3, 3)  # a Monday


@cache
def epg(days: int = 7, seed: int = 1, size: str | int = "small") -> Epg:
    return Epg.generate(START, days, seed, size)


def hour_of(ts_ms: np.ndarray) -> np.ndarray:
    return (ts_ms % DAY_MS) / 3_600_000


def genre_channels(e: Epg, genre: str) -> list[int]:
    return [c.channel_id for c in e.channels if c.genre == genre]


def test_sizes_and_numbering() -> None:
    assert len(epg(1, 1, "small").channels) == 40
    assert len(epg(1, 1, "medium").channels) == 80
    assert len(epg(1, 1, "large").channels) == 120
    assert len(epg(1, 1, 57).channels) == 57
    e = epg()
    ids = [c.channel_id for c in e.channels]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(c.xmltv_id == f"ch{c.channel_id}.sim" for c in e.channels)
    assert {c.genre for c in e.channels} >= {"general", "news", "sport", "kids", "films", "documentary",
                                              "music", "regional", "lifestyle"}
    with pytest.raises(ValueError):
        Epg.generate(START, 1, 1, 5)


def test_airings_tile_every_channel_without_gaps_or_overlaps() -> None:
    e = epg()
    assert np.all(np.diff(e.airings["channel_idx"]) >= 0)
    for c in e.channels:
        a = e.channel_airings(c.channel_id)
        assert a["start_ms"][0] == e.start_ms and a["stop_ms"][-1] == e.end_ms
        assert np.array_equal(a["stop_ms"][:-1], a["start_ms"][1:]), c
        assert np.all(a["stop_ms"] > a["start_ms"])
    assert np.all(e.airings["start_ms"] % MINUTE_MS == 0)
    minutes = (e.airings["stop_ms"] - e.airings["start_ms"]) // MINUTE_MS
    assert set(np.unique(minutes).tolist()) <= {30, 60, 90, 120, 150, 180}


def test_dayparts_are_present() -> None:
    e = epg()
    a = e.airings
    f = e.features
    kind = np.array([c.kind for c in e.contents])[f.content_idx]
    genre = np.array([c.genre for c in e.contents])[f.content_idx]
    h = hour_of(a["start_ms"])
    general = np.isin(a["channel_id"], genre_channels(e, "general"))
    weekday = ((a["start_ms"] - e.start_ms) // DAY_MS) % 7 < 5  # the guide starts on a Monday
    # breakfast at 06:00 on weekdays, evening news at 18:00 every day on general channels
    assert np.all(genre[general & weekday & (h == 6.0)] == "News")
    assert np.all(kind[general & (h == 18.0)] == "bulletin")
    # prime time: premieres of series (and films) on general channels
    prime = general & (h >= 19) & (h < 23)
    assert a["is_new"][prime].mean() > 0.7
    # daytime on general channels is mostly repeats
    assert a["is_new"][general & (h >= 12.5) & (h < 16)].mean() < 0.2
    # kids channels: new episodes after school, repeats late
    kids = np.isin(a["channel_id"], genre_channels(e, "kids"))
    assert np.all(genre[kids] == "Children")
    assert a["is_new"][kids & (h >= 15) & (h < 19)].mean() > 0.7
    assert not a["is_new"][kids & (h >= 20)].any()
    # film channels show films of 1.5 to 3 hours
    films = np.isin(a["channel_id"], genre_channels(e, "films")) & (kind == "film")
    assert films.sum() > 50
    assert np.all((a["stop_ms"] - a["start_ms"])[films] >= 90 * MINUTE_MS)


def test_series_air_in_fixed_slots_with_new_episodes() -> None:
    e = epg()
    a = e.airings
    f = e.features
    new = a["is_new"]
    for k in np.unique(f.content_idx[new]):
        c = e.contents[int(k)]
        if c.kind != "series":
            continue
        rows = np.flatnonzero(new & (f.content_idx == k))
        eps = e.programmes["episode_index"][a["programme_idx"][rows]]
        assert np.all(np.diff(eps) == 1), c.title  # a new episode each time, in order
        assert len(set(hour_of(a["start_ms"][rows]).tolist())) <= 3, c.title  # fixed slot(s)
        assert len(set(a["channel_id"][rows].tolist())) == 1


def test_ids_and_repeats() -> None:
    e = epg()
    p = e.programmes
    assert np.all(np.diff(p["programme_id"].astype(np.int64)) > 0)  # unique, sorted
    assert np.array_equal(p["programme_id"], (e.content_ids[p["content_idx"]] * PROGRAMME_ID_STRIDE
                                              + p["episode_index"].astype(np.uint64)))
    counts = np.bincount(e.airings["programme_idx"], minlength=len(p))
    assert (counts > 1).sum() > 100  # repeats share the programme id
    films = np.array([e.contents[int(k)].kind == "film" for k in p["content_idx"]])
    assert np.all(p["duration_s"][films] < 180 * 60) and np.all(p["season"][films] == 0)
    series = np.array([e.contents[int(k)].episodes_per_season > 0 for k in p["content_idx"]])
    assert np.all(p["season"][series] >= 1) and np.all(p["episode"][series] >= 1)
    info = e.programme_info(int(np.flatnonzero(series)[0]))
    assert info.title and info.episode_title and info.season >= 1


def test_lookups_agree_with_brute_force() -> None:
    e = epg()
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = e.channels[int(rng.integers(len(e.channels)))]
        ts = int(rng.integers(e.start_ms, e.end_ms))
        i = e.airing_at(c.channel_id, ts)
        assert i is not None
        assert e.airings["channel_id"][i] == c.channel_id
        assert e.airings["start_ms"][i] <= ts < e.airings["stop_ms"][i]
    assert e.airing_at(101, e.end_ms) is None and e.airing_at(101, e.start_ms - 1) is None
    assert e.airing_at(999_999, e.start_ms) is None
    t0 = e.start_ms + 20 * 3_600_000 + 7 * MINUTE_MS
    now = e.airings_between(t0, t0 + 1)
    assert len(now) == len(e.channels)
    assert all(e.airing_at(int(r["channel_id"]), t0) is not None for r in now)
    grid = e.minute_grid(t0 - 30_000, 90)
    for m in (0, 1, 45, 89):
        for ci, ch in enumerate(e.channels):
            assert grid[m, ci] == e.airing_at(ch.channel_id, t0 - 30_000 + m * MINUTE_MS)
    some = e.airings[::97]
    q = np.stack([some["programme_id"].astype(np.int64), some["channel_id"].astype(np.int64),
                  some["start_ms"]], axis=1)
    assert np.array_equal(e.find_airings(q), np.arange(0, len(e.airings), 97))
    q[0, 0] += 1  # wrong programme
    q[1, 2] += MINUTE_MS  # not a start
    q[2, 1] = 999_999  # no such channel
    assert e.find_airings(q)[:4].tolist() == [-1, -1, -1, 3 * 97]
    rows = e.programme_rows(np.array([e.programmes["programme_id"][5], 12345], dtype=np.uint64))
    assert rows.tolist() == [5, -1]


def test_deterministic_under_seed_and_prefix_stable() -> None:
    a, b, c = epg(7, 1), Epg.generate(START, 7, 1, "small"), epg(7, 2)
    assert a is not b
    assert np.array_equal(a.airings, b.airings) and np.array_equal(a.programmes, b.programmes)
    assert [x.title for x in a.contents] == [x.title for x in b.contents]
    assert not np.array_equal(a.airings["programme_id"], c.airings["programme_id"])
    short = epg(3, 1)
    head = a.airings["start_ms"] < short.end_ms
    assert np.array_equal(short.airings["programme_id"], a.airings["programme_id"][head])
