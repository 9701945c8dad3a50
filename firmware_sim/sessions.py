"""When each box is on: one day's viewing sessions for a block of households.

A broadcast day `d` runs from 04:00 UTC on day d to 04:00 on day d + 1 (few people watch at
04:00, so cutting there splits almost no session). Each member may start one session per
daypart, with the probability in `Households.presence` (weekday or weekend); the start time
and the length depend on the daypart:

| daypart   | starts (UTC)      | median length |
|-----------|-------------------|---------------|
| morning   | 05:30 - 08:30     | 40 min        |
| daytime   | 09:00 - 15:30     | 75 min        |
| afternoon | 16:00 - 18:30     | 60 min        |
| prime     | 19:00 - 22:00, early starts likelier | 140 min |
| late      | 23:00 - 00:30     | 55 min        |
| night     | 01:00 - 03:30     | 45 min        |

Lengths are log-normal (sigma 0.6) times the member's `session_scale`.

Appointment viewing: when a new episode of one of a member's favourites airs that day (at most
its first two airings), the member switches on for it with probability 0.5, 0-5 minutes
before it starts, until 0-10 minutes after it ends.

Churn (`churn.py`, a `ChurnDay` for the block): households away on holiday or gone have no
sessions; an unhappy household (dissatisfaction s > 0) starts fewer sessions (P x (1 - 0.6 s);
prime time and favourites' premieres x (1 - 0.6 s) more), shorter ones (x (1 - 0.45 s)), and
adds a few 2-8 minute on/off sessions on its first box. With s = 0 every number is what it was
before churn existed (the factors are exactly 1). A leaver's last sessions end by 23:15, so
nothing is recorded on its `ended` day.

Sessions of members
who share a box and overlap (or are less than 2 minutes apart) merge into one, watched by
whoever switched on first. The member then sees what the box shows; who "holds the remote"
is the session's viewer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.special import ndtri

from firmware_sim import rng
from firmware_sim.churn import ChurnDay, power_cycles
from firmware_sim.households import MAX_FAVOURITES, Households
from firmware_sim.schedule import DAY_MS

HOUR_MS: Final = 3_600_000
DAY_START_H: Final = 4
_START_H: Final = np.array([5.5, 9.0, 16.0, 19.0, 23.0, 25.0])
_SPAN_H: Final = np.array([3.0, 6.5, 2.5, 3.0, 1.5, 2.5])
_SKEW: Final = np.array([1.0, 1.0, 1.0, 1.5, 1.5, 1.0])
_MEDIAN_MIN: Final = np.array([40.0, 75.0, 60.0, 140.0, 55.0, 45.0])
_MERGE_GAP_MS: Final = 120_000
_PRIME: Final = 3
APPOINTMENT_P: Final = 0.5


@dataclass(frozen=True, slots=True)
class Premieres:
    """A day's new airings, sorted by (content, start)."""

    content_idx: np.ndarray  # int32 [P]
    start_ms: np.ndarray     # int64 [P]
    stop_ms: np.ndarray      # int64 [P]


@dataclass(frozen=True, slots=True)
class Block:
    """The devices of a block of households (rows into `Households`)."""

    rows: np.ndarray          # int64 [B] household rows
    dev_household: np.ndarray # int64 [D] household row of each device
    dev_k: np.ndarray         # int64 [D] device number within its household
    dev_start: np.ndarray     # int64 [B + 1] first device of each household in the block

    @classmethod
    def of(cls, hh: Households, rows: np.ndarray) -> Block:
        rows = np.asarray(rows, dtype=np.int64)
        n_dev = hh.n_devices[rows].astype(np.int64)
        dev_household = np.repeat(rows, n_dev)
        dev_start = np.concatenate([[0], np.cumsum(n_dev)])
        dev_k = np.arange(len(dev_household)) - np.repeat(dev_start[:-1], n_dev)
        return cls(rows, dev_household, dev_k, dev_start)


@dataclass(frozen=True, slots=True)
class Sessions:
    """Merged sessions sorted by (device, start); `first[d]:first[d + 1]` are device d's."""

    device: np.ndarray   # int64 [S] device index in the block
    start_ms: np.ndarray # int64 [S]
    end_ms: np.ndarray   # int64 [S]
    viewer: np.ndarray   # int64 [S] member row
    first: np.ndarray    # int64 [D + 1]


def broadcast_day_start(epg_start_ms: int, day: int) -> int:
    return epg_start_ms + day * DAY_MS + DAY_START_H * HOUR_MS


def day_sessions(hh: Households, block: Block, epg_start_ms: int, epg_end_ms: int, day: int,
                 seed: int, premieres: Premieres | None = None, churn: ChurnDay | None = None) -> Sessions:
    weekend = int((dt.datetime.fromtimestamp(epg_start_ms / 1000, dt.UTC).date()
                   + dt.timedelta(days=day)).weekday() >= 5)
    n_mem = hh.n_members[block.rows]
    members = np.repeat(hh.member_start[block.rows], n_mem) + (
        np.arange(n_mem.sum()) - np.repeat(np.cumsum(n_mem) - n_mem, n_mem))
    member_k = members - np.repeat(hh.member_start[block.rows], n_mem)
    household = np.repeat(block.rows, n_mem)
    pos = np.repeat(np.arange(len(block.rows)), n_mem)          # the member's household in the block
    k = rng.key(rng.seed_key(seed, rng.TAG_SESSIONS), hh.household_id[household], member_k, day)
    u_all = rng.stream(k, 18 + 6 * MAX_FAVOURITES)
    u = u_all[:, :18].reshape(-1, 6, 3)
    presence = hh.presence[members, weekend, :]
    if churn is not None:
        presence = presence * _presence_factor(churn, pos)
    watch = u[:, :, 0] < presence
    m_idx, dp = np.nonzero(watch)
    day0 = broadcast_day_start(epg_start_ms, day) - DAY_START_H * HOUR_MS
    start_h = _START_H[dp] + _SPAN_H[dp] * u[m_idx, dp, 1] ** _SKEW[dp]
    start = day0 + np.round(start_h * 3600).astype(np.int64) * 1000
    minutes = _MEDIAN_MIN[dp] * hh.session_scale[members[m_idx]] * np.exp(0.6 * ndtri(u[m_idx, dp, 2]))
    if churn is not None:
        minutes = minutes * (1.0 - churn.params.length_drop * churn.s[pos[m_idx]])
    length = np.round(np.maximum(minutes, 3.0) * 60).astype(np.int64) * 1000
    end = start + length
    if premieres is not None and len(premieres.content_idx):
        keen = np.ones(len(members)) if churn is None else _presence_factor(churn, pos)[:, _PRIME].astype(np.float64)
        a_m, a_start, a_end = _appointments(hh.tastes.favourites[members], premieres,
                                            u_all[:, 18:].reshape(-1, MAX_FAVOURITES, 2, 3), keen)
        m_idx, start, end = np.concatenate([m_idx, a_m]), np.concatenate([start, a_start]), \
            np.concatenate([end, a_end])
    limit = min(day0 + (24 + DAY_START_H) * HOUR_MS, epg_end_ms - 120_000)
    if churn is not None:
        m_idx, start, end = _churn_sessions(hh, block, churn, day, seed, day0, n_mem, m_idx, start, end)
    start = np.maximum(start, max(epg_start_ms, day0 + DAY_START_H * HOUR_MS))
    end = np.minimum(end, limit)
    if churn is not None:   # a leaver's boxes report nothing on its `ended` day
        end = np.minimum(end, _leave_ms(churn, pos[m_idx], day, day0))
    keep = end - start >= 60_000
    if churn is not None:
        keep &= churn.present[pos[m_idx]]
    m_idx, start, end = m_idx[keep], start[keep], end[keep]
    viewer = members[m_idx]
    hh_in_block = np.searchsorted(block.rows, household[m_idx]) if _sorted(block.rows) else \
        _positions(block.rows, household[m_idx])
    device = block.dev_start[hh_in_block] + hh.device[viewer].astype(np.int64)
    return _merge(device, start, end, viewer, len(block.dev_household))


def _presence_factor(churn: ChurnDay, pos: np.ndarray) -> np.ndarray:
    """float32 [members, 6]: exactly 1 where s = 0, so unaffected households draw as before."""
    s = churn.s[pos].astype(np.float32)[:, None]
    f = np.ones((len(pos), 6), dtype=np.float32) - np.float32(churn.params.presence_drop) * s
    f[:, _PRIME] *= 1 - np.float32(churn.params.prime_drop) * s[:, 0]
    return f


def _leave_ms(churn: ChurnDay, pos: np.ndarray, day: int, day0: int) -> np.ndarray:
    """Per session: when its household's boxes stop (far away unless it leaves tomorrow): 45 minutes
    before midnight, since a viewer may stay up to 40 minutes past a session's end to finish a programme."""
    return np.where(churn.leave_day[pos] == day + 1, day0 + 24 * HOUR_MS - 45 * 60_000, np.iinfo(np.int64).max // 2)


def _churn_sessions(hh: Households, block: Block, churn: ChurnDay, day: int, seed: int, day0: int,
                    n_mem: np.ndarray, m_idx: np.ndarray, start: np.ndarray,
                    end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add unhappy households' short on/off sessions (on their first member's box)."""
    unhappy = np.flatnonzero((churn.s > 0) & churn.present)
    if not len(unhappy):
        return m_idx, start, end
    i, at_s, length_s = power_cycles(hh.household_id[block.rows[unhappy]], day, seed, churn.s[unhappy],
                                     churn.params.power_cycles)
    first_member = (np.cumsum(n_mem) - n_mem)[unhappy[i]]
    c_start = day0 + at_s * 1000
    return (np.concatenate([m_idx, first_member]), np.concatenate([start, c_start]),
            np.concatenate([end, c_start + length_s * 1000]))


def _appointments(fav: np.ndarray, p: Premieres, u: np.ndarray, keen: np.ndarray) -> tuple[np.ndarray, ...]:
    """(member position, start, end) of sessions for favourites' premieres; u is [m, F, 2, 3]; keen
    (1 but for unhappy households) scales the probability of switching on for them."""
    lo = np.searchsorted(p.content_idx, fav, side="left")
    hi = np.searchsorted(p.content_idx, fav, side="right")
    idx = lo[:, :, None] + np.arange(2)[None, None, :]               # first two airings
    go = (idx < hi[:, :, None]) & (fav[:, :, None] >= 0) & (u[..., 0] < APPOINTMENT_P * keen[:, None, None])
    m, f, j = np.nonzero(go)
    a = idx[m, f, j]
    start = p.start_ms[a] - _seconds(u[m, f, j, 1] * 300)
    end = p.stop_ms[a] + _seconds(u[m, f, j, 2] * 600)
    return m, start, end


def _seconds(x: np.ndarray) -> np.ndarray:
    return np.round(x).astype(np.int64) * 1000


def _sorted(a: np.ndarray) -> bool:
    return bool(np.all(a[1:] > a[:-1]))


def _positions(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    order = np.argsort(rows, kind="stable")
    return np.asarray(order[np.searchsorted(rows[order], values)])


def _merge(device: np.ndarray, start: np.ndarray, end: np.ndarray, viewer: np.ndarray,
           n_devices: int) -> Sessions:
    order = np.lexsort((viewer, start, device))
    device, start, end, viewer = device[order], start[order], end[order], viewer[order]
    if len(device):
        big = np.int64(1) << np.int64(42)
        reach = np.maximum.accumulate(device * big + end) - device * big  # running max end per device
        new = np.ones(len(device), dtype=bool)
        new[1:] = (device[1:] != device[:-1]) | (start[1:] > reach[:-1] + _MERGE_GAP_MS)
        firsts = np.flatnonzero(new)
        end = np.maximum.reduceat(end, firsts)
        device, start, viewer = device[firsts], start[firsts], viewer[firsts]
    first = np.searchsorted(device, np.arange(n_devices + 1))
    return Sessions(device, start, end, viewer, first)
