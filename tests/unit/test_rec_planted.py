"""A small viewing world with planted structure, for the recommender's tests (and its checks).

    world = planted_world(households=240, days=21, seed=1)
    world.insert(store)                  # channels, programmes, airings, events
    world.favourite[hh]                  # the series household hh's group follows
    world.truth                          # a TruthScorer: the planted preferences

Structure:
- `groups` household groups; group g follows series `SERIES + g` in prime time (19-23 UTC).
- Every other household is a family: its children watch a kids series (`KIDS + hh % 2`)
  in the afternoon (16-19 UTC). Daypart sub-profiles should tell the two apart.
- Everyone also watches popular fillers (Zipf popularity) when their show is not on, and
  never watches the two fillers its group dislikes: it zaps past them when they are on.
- Each session starts with 1-3 zaps (views of 5-60 s) over whatever is on.

Content ids: series 1000+g, kids 1100-1101, fillers 1200-1211; programme_id = content * 1000
+ episode, and every episode airs twice. Channels 101-106 tile every day with 30-minute slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from warehouse.columns import EVENT_COLUMNS

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SLOT_MS = 30 * 60_000
T0 = 1_767_225_600_000           # 2026-01-01T00:00Z
SERIES, KIDS, FILLER = 1000, 1100, 1200
N_FILLERS = 12
CHANNELS = np.arange(101, 107, dtype=np.uint32)


@dataclass
class PlantedWorld:
    start_ms: int
    days: int
    households: np.ndarray          # uint64 ids
    group: dict[int, int]
    family: dict[int, bool]
    favourite: dict[int, int]       # household -> series content id
    kids: dict[int, int]            # family household -> kids content id
    disliked: dict[int, tuple[int, int]]
    airings: dict[str, np.ndarray]
    programmes: dict[str, np.ndarray]
    channels: dict[str, np.ndarray]
    events: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    def insert(self, store: Any) -> None:
        store.insert_columns("channels", self.channels)
        store.insert_columns("programmes", self.programmes)
        store.insert_columns("airings", self.airings)
        step = 50_000
        n = len(self.events["seq"])
        for lo in range(0, n, step):
            store.insert_columns("events", {k: v[lo:lo + step] for k, v in self.events.items()})

    @property
    def truth(self) -> PlantedTruth:
        return PlantedTruth(self)


class PlantedTruth:
    """TruthScorer of the planted world: the household's show first, disliked fillers last."""

    def __init__(self, world: PlantedWorld) -> None:
        self.w = world
        self.filler_pop = _filler_popularity()

    def score(self, household_id: int, at_ms: int, airings: np.ndarray) -> np.ndarray:
        a = np.asarray(airings, dtype=np.int64).reshape(-1, 3)
        content = a[:, 0] // 1000
        when = np.maximum(a[:, 2], at_ms)
        hour = (when % DAY_MS) // HOUR_MS
        out = np.zeros(len(a))
        filler = (content >= FILLER) & (content < FILLER + N_FILLERS)
        out[filler] = self.filler_pop[np.clip(content[filler] - FILLER, 0, N_FILLERS - 1)]
        out[np.isin(content, self.w.disliked.get(household_id, ()))] = -1.0
        prime = (hour >= 19) & (hour < 23)
        out[content == self.w.favourite.get(household_id, -1)] = np.where(
            prime[content == self.w.favourite.get(household_id, -1)], 3.0, 1.5)
        kid = self.w.kids.get(household_id, -1)
        afternoon = (hour >= 16) & (hour < 19)
        out[content == kid] = np.where(afternoon[content == kid], 3.0, 0.5)
        return out


def _filler_popularity() -> np.ndarray:
    p = 1.0 / np.arange(1, N_FILLERS + 1) ** 0.8
    return p / p.sum()


def _schedule(rng: np.random.Generator, start_ms: int, days: int, groups: int) -> dict[str, np.ndarray]:
    slots = days * 48
    starts = start_ms + np.arange(slots, dtype=np.int64) * SLOT_MS
    hour = (starts % DAY_MS) // HOUR_MS
    rows: list[tuple[int, int, int]] = []
    episode: dict[int, int] = {}
    pop = _filler_popularity()
    for c in CHANNELS.tolist():
        for n, (s, h) in enumerate(zip(starts.tolist(), hour.tolist(), strict=True)):
            u = rng.random()
            if 16 <= h < 19:
                kind = "kids" if u < 0.4 else ("series" if u < 0.6 else "filler")
            elif 19 <= h < 23:
                kind = "series" if u < 0.6 else "filler"
            else:
                kind = "filler" if u < 0.6 else ("series" if u < 0.9 else "kids")
            if kind == "series":
                content = SERIES + (c + n) % groups   # each series on a different channel each slot
            elif kind == "kids":
                content = KIDS + (c + n) % 2
            else:
                content = FILLER + int(rng.choice(N_FILLERS, p=pop))
            episode[content] = episode.get(content, 0) + 1
            rows.append((c, s, content * 1000 + (episode[content] + 1) // 2))  # every episode airs twice
    ch, st, pr = (np.asarray(x) for x in zip(*rows, strict=True))
    return {"channel_id": ch.astype(np.uint32), "start_ms": st.astype(np.int64),
            "stop_ms": (st + SLOT_MS).astype(np.int64), "programme_id": pr.astype(np.uint64),
            "updated_ms": np.full(len(ch), start_ms, dtype=np.int64)}


def planted_world(households: int = 240, days: int = 21, seed: int = 1, groups: int = 6,
                  start_ms: int = T0, schedule_extra_days: int = 4) -> PlantedWorld:
    rng = np.random.default_rng(seed)
    air = _schedule(rng, start_ms, days + schedule_extra_days, groups)
    pids = np.unique(air["programme_id"])
    content = (pids // 1000).astype(np.uint64)
    programmes = {
        "programme_id": pids, "content_id": content,
        "title": np.array([f"Show {c}" for c in content.tolist()], dtype=object),
        "episode_title": np.array([f"Episode {p % 1000}" for p in pids.tolist()], dtype=object),
        "category": np.array(["Drama" if c < KIDS else "Children" if c < FILLER else "Entertainment"
                              for c in content.tolist()], dtype=object),
        "series_id": np.array([str(c) for c in content.tolist()], dtype=object),
        "episode_num": np.array([f"E{p % 1000}" for p in pids.tolist()], dtype=object),
        "duration_s": np.full(len(pids), SLOT_MS // 1000, dtype=np.uint32),
        "updated_ms": np.full(len(pids), start_ms, dtype=np.int64)}
    channels = {"channel_id": CHANNELS, "xmltv_id": np.array([f"ch{c}.test" for c in CHANNELS], dtype=object),
                "name": np.array([f"Channel {c}" for c in CHANNELS], dtype=object),
                "genre": np.array(["general"] * len(CHANNELS), dtype=object),
                "updated_ms": np.full(len(CHANNELS), start_ms, dtype=np.int64)}
    hh_ids = np.arange(1, households + 1, dtype=np.uint64) + 5000
    world = PlantedWorld(start_ms, days, hh_ids, {}, {}, {}, {}, {}, air, programmes, channels)
    for i, hh in enumerate(hh_ids.tolist()):
        g = i % groups
        world.group[hh] = g
        world.family[hh] = (i // groups) % 2 == 0
        world.favourite[hh] = SERIES + g
        if world.family[hh]:
            world.kids[hh] = KIDS + (hh % 2)
        world.disliked[hh] = (FILLER + g % N_FILLERS, FILLER + (g + 1) % N_FILLERS)
    world.events = _viewing(world, rng)
    return world


def _viewing(w: PlantedWorld, rng: np.random.Generator) -> dict[str, np.ndarray]:
    air = w.airings
    order = np.argsort(air["start_ms"], kind="stable")
    a_start, a_ch, a_pr = air["start_ms"][order], air["channel_id"][order], air["programme_id"][order]
    a_content = a_pr // 1000
    pop = _filler_popularity()
    rows: list[tuple[int, int, int, int, int]] = []  # household, ts, channel, programme, duration

    def on_air(t: int) -> np.ndarray:
        return np.flatnonzero((a_start <= t) & (a_start + SLOT_MS > t))

    for hh in w.households.tolist():
        for day in range(w.days):
            base = w.start_ms + day * DAY_MS
            sessions = []
            if rng.random() < 0.85:
                sessions.append((base + 19 * HOUR_MS + int(rng.integers(0, 2 * HOUR_MS)), w.favourite[hh]))
            if w.family[hh] and rng.random() < 0.8:
                sessions.append((base + 16 * HOUR_MS + int(rng.integers(0, 90 * 60_000)), w.kids[hh]))
            for t, target in sessions:
                now = on_air(t)
                for z in range(int(rng.integers(1, 4))):
                    disliked = now[np.isin(a_content[now], w.disliked[hh])]
                    pick = disliked[0] if len(disliked) and rng.random() < 0.7 else rng.choice(now)
                    rows.append((hh, t + z * 40_000, int(a_ch[pick]), int(a_pr[pick]), int(rng.integers(5, 60))))
                t += 150_000
                upcoming = np.flatnonzero((a_content == target) & (a_start >= t - 10 * 60_000)
                                          & (a_start <= t + 2 * HOUR_MS))
                if len(upcoming) and rng.random() < 0.85:
                    i = upcoming[0]
                    begin = max(t, int(a_start[i]))
                    left = int(a_start[i]) + SLOT_MS - begin
                    rows.append((hh, begin, int(a_ch[i]), int(a_pr[i]), int(left * rng.uniform(0.7, 1.0) / 1000)))
                else:
                    now = on_air(t)
                    fill = now[(a_content[now] >= FILLER) & ~np.isin(a_content[now], w.disliked[hh])]
                    if len(fill):
                        weights = pop[(a_content[fill] - FILLER).astype(np.int64)]
                        i = rng.choice(fill, p=weights / weights.sum())
                        rows.append((hh, t, int(a_ch[i]), int(a_pr[i]), int(rng.integers(900, 1500))))
    return event_columns(rows)


def event_columns(views: list[tuple[int, int, int, int, int]], kind: int = 1,
                  extra: dict[str, list[Any]] | None = None, seq0: int = 0) -> dict[str, np.ndarray]:
    """`events` columns for (household, ts_ms, channel, programme, duration_s) rows; sequence
    numbers from `seq0` (a device's (device_id, seq) must be unique, or FINAL merges them)."""
    n = len(views)
    hh, ts, ch, pr, dur = (np.asarray(x) for x in zip(*views, strict=True)) if n else ([],) * 5
    cols: dict[str, np.ndarray] = {}
    for name, ctype in EVENT_COLUMNS.items():
        cols[name] = np.array([""] * n, dtype=object) if ctype == "String" else np.zeros(n, dtype=np.int64)
    order = np.lexsort((np.asarray(ts), np.asarray(hh))) if n else np.zeros(0, np.int64)
    hh_s = np.asarray(hh, dtype=np.uint64)[order]
    cols["household_id"] = hh_s
    cols["device_id"] = np.array([f"stb-{h}" for h in hh_s.tolist()], dtype=object)
    cols["seq"] = np.arange(seq0, seq0 + n, dtype=np.uint64)
    cols["kind"] = np.full(n, kind, dtype=np.int8)
    cols["device_ts_ms"] = cols["ts_ms"] = cols["received_ms"] = np.asarray(ts, dtype=np.int64)[order]
    cols["region"] = np.array(["north"] * n, dtype=object)
    cols["firmware"] = np.array(["1.0.0"] * n, dtype=object)
    cols["channel_id"] = np.asarray(ch, dtype=np.uint32)[order]
    cols["programme_id"] = np.asarray(pr, dtype=np.uint64)[order]
    cols["duration_s"] = np.asarray(dur, dtype=np.uint32)[order]
    for name, values in (extra or {}).items():
        cols[name] = np.asarray(values, dtype=cols[name].dtype)[order]
    for name, ctype in EVENT_COLUMNS.items():
        if ctype.startswith("UInt") and name not in ("household_id", "seq", "programme_id"):
            cols[name] = cols[name].astype(np.dtype(ctype.lower()))
    return cols


def reference_viewing(w: PlantedWorld, t0_ms: int, t1_ms: int, signal: Any, dayparts: Any) -> dict[str, np.ndarray]:
    """What `recommender.signal.viewing_sql` must return for this world, computed with numpy."""
    ev = w.events
    ok = (ev["kind"] == 1) & (ev["ts_ms"] >= t0_ms) & (ev["ts_ms"] < t1_ms) & (ev["programme_id"] != 0)
    hh, ts, pr = ev["household_id"][ok], ev["ts_ms"][ok], ev["programme_id"][ok]
    dur = ev["duration_s"][ok].astype(np.float64)
    pos = np.searchsorted(w.programmes["programme_id"], pr)
    content = w.programmes["content_id"][pos]
    share = np.minimum(dur / np.maximum(w.programmes["duration_s"][pos], 60), 1.0)
    decay = 2.0 ** ((ts - t1_ms) / (signal.half_life_days * DAY_MS)) if signal.half_life_days else 1.0
    watched = dur >= signal.zap_threshold_s
    raw = np.where(watched, share * decay, 0.0)
    dp = dayparts.of_ms(ts).astype(np.int64)
    keys, inverse = np.unique(np.stack([hh.astype(np.int64), content.astype(np.int64), dp]), axis=1,
                              return_inverse=True)
    inverse = inverse.ravel()
    return {"household_id": keys[0].astype(np.uint64), "content_id": keys[1].astype(np.uint64),
            "daypart": keys[2].astype(np.uint8),
            "raw": np.bincount(inverse, weights=raw, minlength=keys.shape[1]),
            "zaps": np.bincount(inverse, weights=(~watched).astype(np.float64), minlength=keys.shape[1])}


# --- sanity of the generator itself ---------------------------------------------------------

def test_world_has_the_planted_structure() -> None:
    w = planted_world(households=36, days=4, seed=3)
    ev = w.events
    assert len(ev["seq"]) > 36 * 4
    watched = ev["duration_s"] >= 180
    content = ev["programme_id"] // 1000
    prime = ((ev["ts_ms"] % DAY_MS) // HOUR_MS >= 19) & watched
    favourite = np.array([w.favourite[h] for h in ev["household_id"].tolist()])
    assert (content[prime] == favourite[prime]).mean() > 0.6
    for hh in w.households[:6].tolist():
        mine = watched & (ev["household_id"] == hh)
        assert not np.isin(content[mine], w.disliked[hh]).any()
    zaps = ~watched
    assert zaps.sum() > 36 * 4
    assert set(EVENT_COLUMNS) == set(ev)
    assert (np.diff(w.airings["start_ms"][w.airings["channel_id"] == 101]) == SLOT_MS).all()


def test_truth_prefers_the_favourite_in_prime_time() -> None:
    w = planted_world(households=12, days=2, seed=3)
    hh = int(w.households[0])
    fav, dis = w.favourite[hh], w.disliked[hh][0]
    at = T0 + 20 * HOUR_MS
    cand = np.array([[fav * 1000 + 1, 101, at], [dis * 1000 + 1, 102, at], [(FILLER + 5) * 1000 + 7, 103, at]])
    s = w.truth.score(hh, at, cand)
    assert s[0] > s[2] > s[1]
