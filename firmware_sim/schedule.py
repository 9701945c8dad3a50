"""Build the line-up, the content catalogue and the airings from the day templates.

Two passes, both driven by one `random.Random` seeded from the world seed (only `random()`
is used: its Mersenne Twister output is stable across Python versions):

1. a weekly template per channel: for each weekday, slots of (start, length, what) where
   "what" is a new episode of a fixed content (strips, weekly series, bulletins, live
   events), a repeat, or a film block; series get their fixed slots here;
2. day by day, every slot becomes an airing of a programme: new episodes advance their
   content's episode counter, repeats pick an earlier episode of one of the channel's
   contents of the same slot length, film blocks pick films from a shared library.

Days are generated in order from the same stream, so the first N days of a longer schedule
equal an N-day schedule.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from firmware_sim import catalogue as cat

DAY_MS = 86_400_000
MINUTE_MS = 60_000
PROGRAMME_ID_STRIDE = 1_000_000  # programme_id = content_id * stride + episode index
FIRST_CONTENT_ID = 1000

PROGRAMME_DTYPE = np.dtype([("programme_id", np.uint64), ("content_id", np.uint64), ("content_idx", np.int32),
                            ("episode_index", np.int32), ("season", np.uint16), ("episode", np.uint16),
                            ("duration_s", np.uint32)])
AIRING_DTYPE = np.dtype([("channel_id", np.uint32), ("start_ms", np.int64), ("stop_ms", np.int64),
                         ("programme_id", np.uint64), ("channel_idx", np.int16),
                         ("programme_idx", np.int32), ("is_new", np.bool_)])


@dataclass(frozen=True, slots=True)
class Channel:
    channel_id: int      # the STB's logical channel number
    xmltv_id: str
    name: str
    genre: str           # channel genre: general, news, sport, ...
    tier: str            # basic, plus, sports, films
    region: str          # "" for national channels
    reach: float         # channel prestige: multiplies its contents' popularity


@dataclass(frozen=True, slots=True)
class Content:
    content_id: int
    kind: str            # series, bulletin, event (sport competition), film
    title: str
    genre: str           # one of catalogue.GENRES
    popularity: float    # relative audience appeal (> 0), log-normal across contents
    channel_id: int      # home channel, 0 for films
    slot_minutes: int    # airing length (films: their slot, runtime + breaks)
    episodes_per_season: int
    runtime_minutes: int


@dataclass(slots=True)
class _Draft:
    kind: str
    title: str
    genre: str
    popularity: float
    channel_idx: int
    slot: int
    eps_per_season: int
    runtime: int
    next_ep: int         # episodes [0, next_ep) exist; new airings take next_ep


@dataclass(slots=True)
class Built:
    channels: list[Channel]
    contents: list[Content]
    programmes: np.ndarray
    airings: np.ndarray


@dataclass(slots=True)
class _Builder:
    rnd: random.Random
    drafts: list[_Draft] = field(default_factory=list)
    titles: set[str] = field(default_factory=set)
    programme_rows: dict[tuple[int, int], int] = field(default_factory=dict)

    def pick(self, seq: list[str] | tuple[str, ...]) -> str:
        return seq[int(self.rnd.random() * len(seq))]

    def lognormal(self, sigma: float) -> float:
        return math.exp(sigma * self.rnd.gauss(0.0, 1.0))

    def unique(self, title: str) -> str:
        base, n = title, 2
        while title in self.titles:
            title = f"{base} {n}"
            n += 1
        self.titles.add(title)
        return title

    def title_for(self, genre: str, channel_name: str) -> str:
        words = cat.SHOW_WORDS.get(genre)
        r = self.rnd.random()
        if genre == "Children":
            t = f"{self.pick(cat.KIDS_HEROES)} and {self.pick(cat.KIDS_HEROES)}" if r < 0.6 else \
                f"The {self.pick(cat.ADJECTIVES)} {self.pick(cat.KIDS_HEROES)}"
        elif genre == "News":
            t = f"{channel_name.split()[0]} {self.pick(words or ('Today',))}"
        elif genre == "Regional":
            t = f"{self.pick(cat.TOWNS)} {self.pick(words or ('Today',))}"
        elif words is not None and r < 0.6:
            t = f"{self.pick(cat.ADJECTIVES)} {self.pick(words)}"
        elif r < 0.8:
            t = f"The {self.pick(cat.ADJECTIVES)} {self.pick(cat.NOUNS)}"
        elif r < 0.9:
            t = f"{self.pick(cat.TOWNS)} {self.pick(cat.NOUNS)}"
        else:
            t = f"{self.pick(cat.NOUNS)} of {self.pick(cat.TOWNS)}"
        return self.unique(t)

    def new(self, kind: str, genre: str, channel_idx: int, channel_name: str, slot: int, appeal: float,
            back_catalogue: bool = True, sport: str = "") -> int:
        eps = cat.EPISODES_PER_SEASON[genre] if kind == "series" else 0
        if kind == "event":
            league, drawn = self.pick(cat.LEAGUES), self.pick(cat.SPORTS)  # drawn either way: same stream
            title = self.unique(f"{league} {sport or drawn}")
        elif kind == "bulletin":
            suffix = {"News": "News", "Sport": "News", "Music": "Hits"}.get(genre, "News")
            title = self.unique(f"{channel_name} {'Bulletin' if channel_name.endswith(' News') else suffix}")
        else:
            title = self.title_for(genre, channel_name)
        start = int(self.rnd.random() * 3 * max(eps, 8)) if back_catalogue else 0
        self.drafts.append(_Draft(kind, title, genre, appeal * self.lognormal(0.8), channel_idx, slot,
                                  eps, slot, start))
        return len(self.drafts) - 1


def _channel_counts(n: int) -> list[int]:
    """Channels per channel genre: regional fixed (one per region), the rest by share."""
    rest = n - len(cat.REGIONS)
    shares = [cg.share for cg in cat.CHANNEL_GENRES]
    raw = [s * rest / sum(shares) for s in shares]
    counts = [max(1, int(r)) if s > 0 else 0 for r, s in zip(raw, shares, strict=True)]
    order = sorted(range(len(raw)), key=lambda i: (int(raw[i]) - raw[i], i))
    i = 0
    while sum(counts) < rest:
        if shares[order[i % len(order)]] > 0:
            counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts) > rest:
        j = max(range(len(counts)), key=lambda k: (counts[k], -k))
        counts[j] -= 1
    counts[cat.CHANNEL_GENRE_INDEX["regional"]] = len(cat.REGIONS)
    return counts


def _channels(n: int, b: _Builder) -> list[Channel]:
    out: list[Channel] = []
    for cg, count in zip(cat.CHANNEL_GENRES, _channel_counts(n), strict=True):
        for i in range(count):
            lcn = cg.lcn_base + i
            if cg.name == "regional":
                region = cat.REGIONS[i]
                name = f"{region.title()} Today"
            else:
                region = ""
                brand = cg.brands[i % len(cg.brands)]
                suffix = "" if i < len(cg.brands) else f" {i // len(cg.brands) + 1}"
                label = {"general": "", "news": " News", "sport": " Sport", "kids": " Kids", "films": "",
                         "documentary": "", "music": " Music", "lifestyle": ""}[cg.name]
                name = f"{brand}{label}{suffix}"
            tier = cg.tiers[min(i, len(cg.tiers) - 1)]
            reach = math.exp(0.6 - 0.25 * min(i, 4) + 0.3 * b.rnd.gauss(0.0, 1.0))
            out.append(Channel(lcn, f"ch{lcn}.sim", name, cg.name, tier, region, round(reach, 4)))
    return out


_PRESTIGE = ((0, 0.3), (6, 0.7), (9, 0.6), (16, 1.0), (19, 2.2), (23, 0.8))


def _prestige(hour: float) -> float:
    return [p for h, p in _PRESTIGE if h <= hour][-1]


def _film_slot(runtime: int) -> int:
    return int(math.ceil((runtime + 12) / 30.0) * 30)


Slot = tuple[int, int, str, int]  # start minute, length minutes, op (new|repeat|films), content or -1


def _templates(ch_idx: int, ch: Channel, b: _Builder) -> list[list[Slot]]:
    """Seven day plans (Monday first) for one channel."""
    plan = cat.TEMPLATES[ch.genre]
    brands: dict[str, int] = {}
    strips: dict[tuple[float, int], int] = {}
    # Every sport channel's first competition is football, so football fans (households.py) always
    # have matches to follow; the other two are drawn from catalogue.SPORTS.
    events = [b.new("event", "Sport", ch_idx, ch.name, 120, ch.reach * 2.0, sport=cat.FOOTBALL if i == 0 else "")
              for i in range(3)] if ch.genre == "sport" else []
    previous: dict[tuple[float, int], int] = {}
    week: list[list[Slot]] = []
    for weekday in range(7):
        blocks = plan["weekday" if weekday < 5 else "weekend"]
        day: list[Slot] = []
        for start_h, end_h, rule, genres, length in blocks:
            start, end = int(start_h * 60), int(end_h * 60)
            options = genres.split("|")
            appeal = ch.reach * _prestige(start_h)
            if rule == "films" or (rule == "weekly" and b.pick(options) == "Film"):
                day.append((start, end - start, "films", -1))
                continue
            for i, m in enumerate(range(start, end, length)):
                if rule == "repeat":
                    day.append((m, length, "repeat", -1))
                elif rule == "bulletin":
                    g = options[0]
                    if g not in brands:
                        brands[g] = b.new("bulletin", g, ch_idx, ch.name, length, appeal,
                                          back_catalogue=False)
                    day.append((m, length, "new", brands[g]))
                elif rule == "strip":
                    k = strips.get((start_h, i))
                    if k is None:
                        k = strips[(start_h, i)] = b.new("series", b.pick(options), ch_idx, ch.name, length,
                                                         appeal)
                    day.append((m, length, "new", k))
                elif rule == "live":
                    if b.rnd.random() < 0.6:
                        day.append((m, length, "new", events[int(b.rnd.random() * len(events))]))
                    else:
                        day.append((m, length, "repeat", -1))
                else:  # weekly
                    prev = previous.get((start_h, i))
                    if prev is not None and b.rnd.random() < 0.25:
                        k = prev
                    else:
                        g = b.pick([o for o in options if o != "Film"] or ["Drama"])
                        k = b.new("series", g, ch_idx, ch.name, length, appeal)
                    previous[(start_h, i)] = k
                    day.append((m, length, "new", k))
        week.append(day)
    # Back catalogue that only ever repeats, for every repeat length this channel uses.
    lengths = sorted({s[1] for d in week for s in d if s[2] == "repeat"} | {30, 60})
    for length in lengths:
        for _ in range(3):
            g = b.pick(cat.ARCHIVE_GENRES[ch.genre].split("|"))
            k = b.new("series", g, ch_idx, ch.name, length, ch.reach * 0.5)
            b.drafts[k].next_ep = 20 + int(b.rnd.random() * 120)
    return week


def _weighted(b: _Builder, items: list[int], cumulative: list[float]) -> int:
    return items[bisect.bisect_right(cumulative, b.rnd.random() * cumulative[-1])]


def build(start_day: dt.date, days: int, seed: int, n_channels: int) -> Built:
    b = _Builder(random.Random(seed * 1_000_003 + 17))
    channels = _channels(n_channels, b)
    n_film_channels = sum(1 for c in channels if c.genre == "films")
    films = []
    for _ in range(80 + 60 * n_film_channels):
        runtime = int(min(175, max(78, b.rnd.gauss(108, 20))))
        k = b.new("film", "Film", -1, "", _film_slot(runtime), 1.5)
        b.drafts[k].runtime = runtime
        films.append(k)
    week = [_templates(i, c, b) for i, c in enumerate(channels)]

    # Repeat pools: contents of the channel with a given slot length (news never repeats).
    pools: dict[tuple[int, int], list[int]] = {}
    for k, d in enumerate(b.drafts):
        if d.kind in ("series", "event") and d.channel_idx >= 0:
            pools.setdefault((d.channel_idx, d.slot), []).append(k)
    pool_cum = {key: list(accumulate(b.drafts[k].popularity for k in ks)) for key, ks in pools.items()}
    film_cum = list(accumulate(b.drafts[k].popularity for k in films))

    prog_rows: list[tuple[int, int]] = []
    rows: dict[tuple[int, int], int] = {}

    def programme(k: int, ep: int) -> int:
        r = rows.get((k, ep))
        if r is None:
            r = rows[(k, ep)] = len(prog_rows)
            prog_rows.append((k, ep))
        return r

    airing_cols: list[tuple[int, int, int, int, bool]] = []  # channel idx, start ms, length min, row, new
    epoch0 = int(dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=dt.UTC).timestamp())
    epoch0 *= 1000

    def repeat(ch_idx: int, length: int) -> int:
        key = (ch_idx, length)
        ks = pools.get(key)
        if not ks:
            raise AssertionError(f"no repeat pool for channel {ch_idx} length {length}")
        for _ in range(20):
            k = _weighted(b, ks, pool_cum[key])
            if b.drafts[k].next_ep > 0:
                break
        d = b.drafts[k]
        lo = max(0, d.next_ep - 60)
        return programme(k, lo + int(b.rnd.random() * (d.next_ep - lo)))

    for day in range(days):
        weekday = (start_day + dt.timedelta(days=day)).weekday()
        day0 = epoch0 + day * DAY_MS
        for ch_idx in range(len(channels)):
            for start, length, op, k in week[ch_idx][weekday]:
                t = day0 + start * MINUTE_MS
                if op == "new":
                    d = b.drafts[k]
                    airing_cols.append((ch_idx, t, length, programme(k, d.next_ep), True))
                    d.next_ep += 1
                elif op == "repeat":
                    airing_cols.append((ch_idx, t, length, repeat(ch_idx, length), False))
                else:  # films, then repeats for what is left
                    left = length
                    while left >= 90:
                        for _ in range(30):
                            f = _weighted(b, films, film_cum)
                            if b.drafts[f].slot <= left:
                                break
                        else:
                            break
                        slot = b.drafts[f].slot
                        airing_cols.append((ch_idx, t, slot, programme(f, 0), False))
                        t, left = t + slot * MINUTE_MS, left - slot
                    while left > 0:
                        piece = 60 if left >= 60 else 30
                        airing_cols.append((ch_idx, t, piece, repeat(ch_idx, piece), False))
                        t, left = t + piece * MINUTE_MS, left - piece
    return _assemble(b, channels, prog_rows, airing_cols)


def _assemble(b: _Builder, channels: list[Channel], prog_rows: list[tuple[int, int]],
              airing_cols: list[tuple[int, int, int, int, bool]]) -> Built:
    contents = [
        Content(cat_id, d.kind, d.title, d.genre, round(d.popularity, 6),
                channels[d.channel_idx].channel_id if d.channel_idx >= 0 else 0, d.slot, d.eps_per_season,
                d.runtime)
        for cat_id, d in zip(range(FIRST_CONTENT_ID, FIRST_CONTENT_ID + len(b.drafts)), b.drafts, strict=True)
    ]
    programmes = np.zeros(len(prog_rows), PROGRAMME_DTYPE)
    if prog_rows:
        ks, eps = (np.array(c, dtype=np.int64) for c in zip(*prog_rows, strict=True))
        programmes["programme_id"] = ((ks + FIRST_CONTENT_ID) * PROGRAMME_ID_STRIDE + eps).astype(np.uint64)
        programmes["content_idx"] = ks
        programmes["content_id"] = (ks + FIRST_CONTENT_ID).astype(np.uint64)
        programmes["episode_index"] = eps
        per_season = np.array([d.eps_per_season for d in b.drafts], dtype=np.int64)[ks]
        numbered = per_season > 0
        programmes["season"] = np.where(numbered, eps // np.maximum(per_season, 1) + 1, 0)
        programmes["episode"] = np.where(numbered, eps % np.maximum(per_season, 1) + 1, 0)
        programmes["duration_s"] = np.array([b.drafts[k].runtime * 60 for k in ks.tolist()], dtype=np.uint32)
    # Order programmes by id, and renumber airings' rows accordingly.
    order = np.argsort(programmes["programme_id"], kind="stable")
    programmes = programmes[order]
    new_row = np.empty_like(order)
    new_row[order] = np.arange(len(order))

    airings = np.zeros(len(airing_cols), AIRING_DTYPE)
    if airing_cols:
        ch, start, length, row, new = (np.array(c) for c in zip(*airing_cols, strict=True))
        airings["channel_idx"] = ch
        airings["channel_id"] = np.array([c.channel_id for c in channels], dtype=np.uint32)[ch]
        airings["start_ms"] = start
        airings["stop_ms"] = start + length.astype(np.int64) * MINUTE_MS
        airings["programme_idx"] = new_row[row]
        airings["programme_id"] = programmes["programme_id"][new_row[row]]
        airings["is_new"] = new
        airings = airings[np.lexsort((airings["start_ms"], airings["channel_idx"]))]
    return Built(channels, contents, programmes, airings)
