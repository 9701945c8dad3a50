"""The simulated programme guide: channels, contents, programmes and their airings.

    epg = Epg.generate(datetime.date(2025, 3, 3), days=7, seed=1, size="medium")
    i = epg.airing_at(101, ts_ms)            # index into epg.airings, or None
    now = epg.airings_between(t0, t1)        # structured array of airings overlapping [t0, t1)

Identifiers:
- `channel_id` is the STB's logical channel number (general 101.., news 201.., sport 301..,
  kids 401.., films 501.., documentary 601.., music 701.., regional 801.., lifestyle 901..);
  its XMLTV id is `ch{channel_id}.sim`.
- `content_id` (a series, a bulletin brand, a sport competition or a film) counts from 1000.
- `programme_id = content_id * 1_000_000 + episode index` (one episode, film, bulletin or
  match); repeats of an episode share it.

`programmes` (`schedule.PROGRAMME_DTYPE`) is sorted by programme_id: programme_id,
content_id, content_idx (row in `contents`), episode_index, season and episode (1-based, 0
when not numbered) and duration_s (running time).

`airings` is sorted by (channel, start) and tiles every channel's day without gaps or
overlaps; starts and stops fall on whole minutes. Its fields are those of
`schedule.AIRING_DTYPE`: channel_id, start_ms, stop_ms, programme_id, plus channel_idx and
programme_idx (row numbers into `channels` and `programmes`) and is_new (a premiere: a new
episode, a bulletin or a live event).

Contents also carry hidden "style" factors (`content_latent`): part of the ground truth,
not of the guide.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from firmware_sim import catalogue as cat
from firmware_sim import rng
from firmware_sim.choice import LATENT_DIM, AiringFeatures
from firmware_sim.schedule import (
    AIRING_DTYPE,
    DAY_MS,
    MINUTE_MS,
    PROGRAMME_DTYPE,
    Channel,
    Content,
    build,
)

__all__ = ["AIRING_DTYPE", "DAY_MS", "MINUTE_MS", "PROGRAMME_DTYPE", "Channel", "Content", "Epg",
           "ProgrammeInfo"]


@dataclass(frozen=True, slots=True)
class ProgrammeInfo:
    programme_id: int
    content_id: int
    title: str
    episode_title: str   # "" when none (news, films)
    category: str
    season: int          # 1-based, 0 when not numbered
    episode: int         # 1-based, 0 when not numbered
    duration_s: int      # running time (airings of films are longer: breaks)
    kind: str


class Epg:
    """A generated guide. Build it with `Epg.generate`; everything else is read-only."""

    def __init__(self, channels: list[Channel], contents: list[Content], programmes: np.ndarray,
                 airings: np.ndarray, *, start_ms: int, days: int, seed: int) -> None:
        self.channels = channels
        self.contents = contents
        self.programmes = programmes
        self.airings = airings
        self.start_ms = start_ms
        self.end_ms = start_ms + days * DAY_MS
        self.days = days
        self.seed = seed
        self.channel_ids = np.array([c.channel_id for c in channels], dtype=np.uint32)
        self.channel_index = {c.channel_id: i for i, c in enumerate(channels)}
        self.content_ids = np.array([c.content_id for c in contents], dtype=np.uint64)
        self.content_genre = np.array([cat.GENRE_INDEX[c.genre] for c in contents], dtype=np.int16)
        log_pop = np.log(np.array([c.popularity for c in contents], dtype=np.float64))
        self.content_pop_z = ((log_pop - log_pop.mean()) / max(log_pop.std(), 1e-9)).astype(np.float32)
        k = rng.key(rng.seed_key(seed, rng.TAG_EPG), self.content_ids)
        self.content_latent = rng.normal(k[:, None], np.arange(LATENT_DIM)[None, :]).astype(np.float32)
        self.content_football = np.array([c.kind == "event" and cat.FOOTBALL in c.title for c in contents], dtype=bool)
        counts = np.bincount(airings["channel_idx"], minlength=len(channels))
        self._bounds = np.concatenate([[0], np.cumsum(counts)])
        self._key = airings["channel_idx"].astype(np.int64) * (1 << 44) + airings["start_ms"]

    @classmethod
    def generate(cls, start_day: dt.date, days: int, seed: int, size: str | int = "medium") -> Epg:
        """A guide of `days` days from `start_day` 00:00 UTC. `size`: small (40 channels),
        medium (80), large (120) or a channel count (at least 20)."""
        n = cat.SIZES[size] if isinstance(size, str) else int(size)
        if n < 20:
            raise ValueError(f"at least 20 channels, not {n}")
        if days < 1:
            raise ValueError("days must be at least 1")
        built = build(start_day, days, seed, n)
        start_ms = int(dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=dt.UTC)
                       .timestamp()) * 1000
        return cls(built.channels, built.contents, built.programmes, built.airings, start_ms=start_ms,
                   days=days, seed=seed)

    # --- lookups ---------------------------------------------------------------------------

    def channel_airings(self, channel_id: int) -> np.ndarray:
        i = self.channel_index[channel_id]
        result: np.ndarray = self.airings[self._bounds[i]:self._bounds[i + 1]]
        return result

    def airing_at(self, channel_id: int, ts_ms: int) -> int | None:
        """Index (into `airings`) of what `channel_id` shows at `ts_ms`, or None."""
        i = self.channel_index.get(channel_id)
        if i is None:
            return None
        lo, hi = int(self._bounds[i]), int(self._bounds[i + 1])
        j = lo + int(np.searchsorted(self.airings["start_ms"][lo:hi], ts_ms, side="right")) - 1
        if j < lo or ts_ms >= self.airings["stop_ms"][j]:
            return None
        return j

    def airings_between(self, t0_ms: int, t1_ms: int) -> np.ndarray:
        """Airings overlapping [t0_ms, t1_ms), in (channel, start) order."""
        a = self.airings
        result: np.ndarray = a[(a["start_ms"] < t1_ms) & (a["stop_ms"] > t0_ms)]
        return result

    def find_airings(self, rows: np.ndarray) -> np.ndarray:
        """Indices of (programme_id, channel_id, start_ms) rows in `airings`, -1 where absent."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        known = np.isin(r[:, 1], self.channel_ids)
        ch = np.searchsorted(self.channel_ids, r[:, 1].astype(np.uint32))
        key = np.minimum(ch, len(self.channels) - 1).astype(np.int64) * (1 << 44) + r[:, 2]
        pos = np.minimum(np.searchsorted(self._key, key), len(self.airings) - 1)
        ok = known & (self._key[pos] == key)
        ok &= self.airings["programme_id"][pos] == r[:, 0].astype(np.uint64)
        return np.where(ok, pos, -1)

    def programme_rows(self, programme_ids: np.ndarray) -> np.ndarray:
        """Row numbers into `programmes` for programme ids (-1 where unknown)."""
        ids = np.asarray(programme_ids, dtype=np.uint64)
        pos = np.searchsorted(self.programmes["programme_id"], ids)
        pos = np.minimum(pos, len(self.programmes) - 1)
        return np.where(self.programmes["programme_id"][pos] == ids, pos, -1)

    def content_of(self, programme_id: int) -> Content:
        row = int(self.programme_rows(np.array([programme_id]))[0])
        if row < 0:
            raise KeyError(programme_id)
        return self.contents[int(self.programmes["content_idx"][row])]

    def programme_info(self, row: int) -> ProgrammeInfo:
        p = self.programmes[row]
        c = self.contents[int(p["content_idx"])]
        return ProgrammeInfo(int(p["programme_id"]), c.content_id, c.title,
                             episode_title(c, int(p["episode_index"])), c.genre, int(p["season"]),
                             int(p["episode"]), int(p["duration_s"]), c.kind)

    def minute_grid(self, t0_ms: int, minutes: int) -> np.ndarray:
        """int32 [minutes, channels]: the airing index on each channel at t0 + m minutes (-1: none).

        Exact at any time, not only on minute marks, because airings start on whole minutes.
        """
        times = t0_ms + np.arange(minutes, dtype=np.int64) * MINUTE_MS
        grid = np.full((minutes, len(self.channels)), -1, dtype=np.int32)
        starts, stops = self.airings["start_ms"], self.airings["stop_ms"]
        for c in range(len(self.channels)):
            lo, hi = int(self._bounds[c]), int(self._bounds[c + 1])
            if lo == hi:
                continue
            j = np.searchsorted(starts[lo:hi], times, side="right") - 1 + lo
            ok = (j >= lo) & (times < stops[np.maximum(j, lo)])
            grid[:, c] = np.where(ok, j, -1)
        return grid

    @cached_property
    def features(self) -> AiringFeatures:
        """Per-airing and per-content arrays the choice model reads."""
        content_idx = self.programmes["content_idx"][self.airings["programme_idx"]].astype(np.int32)
        return AiringFeatures(
            channel_idx=self.airings["channel_idx"].astype(np.int32),
            content_idx=content_idx,
            is_new=self.airings["is_new"].copy(),
            start_ms=self.airings["start_ms"].copy(),
            content_genre=self.content_genre,
            content_pop_z=self.content_pop_z,
            content_latent=self.content_latent,
            content_football=self.content_football,
        )

    @cached_property
    def channel_genre_mix(self) -> np.ndarray:
        """float32 [channels, genres]: each channel's airtime share per content genre."""
        f = self.features
        g = self.content_genre[f.content_idx]
        minutes = (self.airings["stop_ms"] - self.airings["start_ms"]) / MINUTE_MS
        mix = np.zeros((len(self.channels), cat.G), dtype=np.float64)
        np.add.at(mix, (f.channel_idx, g), minutes)
        return (mix / np.maximum(mix.sum(axis=1, keepdims=True), 1.0)).astype(np.float32)


def episode_title(content: Content, episode_index: int) -> str:
    """A stable made-up episode title ("" for bulletins and films)."""
    if content.kind in ("bulletin", "film"):
        return ""
    h = int(rng.key(content.content_id, episode_index)[0])
    if content.kind == "event":
        n = len(cat.TOWNS)
        home, away = h % n, (h >> 8) % (n - 1)
        away += away >= home
        return f"{cat.TOWNS[home]} v {cat.TOWNS[away]}"
    return f"The {cat.ADJECTIVES[h % len(cat.ADJECTIVES)]} {cat.NOUNS[(h >> 16) % len(cat.NOUNS)]}"
