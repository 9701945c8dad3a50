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
from firmware_sim.households import MAX_FAVOURITES, Households
from firmware_sim.schedule import DAY_MS

HOUR_MS: Final = 3_600_000
DAY_START_H: Final = 4
_START_H: Final = np.array([5.5, 9.0, 16.0, 19.0, 23.0, 25.0])
_SPAN_H: Final = np.array([3.0, 6.5, 2.5, 3.0, 1.5, 2.5])
_SKEW: Final = np.array([1.0, 1.0, 1.0, 1.5, 1.5, 1.0])
_MEDIAN_MIN: Final = np.array([40.0, 75.0, 60.0, 140.0, 55.0, 45.0])
_MERGE_GAP_MS: Final = 120_000
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
                 seed: int, premieres: Premieres | None = None) -> Sessions:
    weekend = int((dt.datetime.fromtimestamp(epg_start_ms / 1000, dt.UTC).date()
                   + dt.timedelta(days=day)).weekday() >= 5)
    n_mem = hh.n_members[block.rows]
    members = np.repeat(hh.member_start[block.rows], n_mem) + (
        np.arange(n_mem.sum()) - np.repeat(np.cumsum(n_mem) - n_mem, n_mem))
    member_k = members - np.repeat(hh.member_start[block.rows], n_mem)
    household = np.repeat(block.rows, n_mem)
    k = rng.key(rng.seed_key(seed, rng.TAG_SESSIONS), hh.household_id[household], member_k, day)
    u_all = rng.stream(k, 18 + 6 * MAX_FAVOURITES)
    u = u_all[:, :18].reshape(-1, 6, 3)
    watch = u[:, :, 0] < hh.presence[members, weekend, :]
    m_idx, dp = np.nonzero(watch)
    day0 = broadcast_day_start(epg_start_ms, day) - DAY_START_H * HOUR_MS
    start_h = _START_H[dp] + _SPAN_H[dp] * u[m_idx, dp, 1] ** _SKEW[dp]
    start = day0 + np.round(start_h * 3600).astype(np.int64) * 1000
    minutes = _MEDIAN_MIN[dp] * hh.session_scale[members[m_idx]] * np.exp(0.6 * ndtri(u[m_idx, dp, 2]))
    length = np.round(np.maximum(minutes, 3.0) * 60).astype(np.int64) * 1000
    end = start + length
    if premieres is not None and len(premieres.content_idx):
        a_m, a_start, a_end = _appointments(hh.tastes.favourites[members], premieres,
                                            u_all[:, 18:].reshape(-1, MAX_FAVOURITES, 2, 3))
        m_idx, start, end = np.concatenate([m_idx, a_m]), np.concatenate([start, a_start]), \
            np.concatenate([end, a_end])
    limit = min(day0 + (24 + DAY_START_H) * HOUR_MS, epg_end_ms - 120_000)
    start = np.maximum(start, max(epg_start_ms, day0 + DAY_START_H * HOUR_MS))
    end = np.minimum(end, limit)
    keep = end - start >= 60_000
    m_idx, start, end = m_idx[keep], start[keep], end[keep]
    viewer = members[m_idx]
    hh_in_block = np.searchsorted(block.rows, household[m_idx]) if _sorted(block.rows) else \
        _positions(block.rows, household[m_idx])
    device = block.dev_start[hh_in_block] + hh.device[viewer].astype(np.int64)
    return _merge(device, start, end, viewer, len(block.dev_household))


def _appointments(fav: np.ndarray, p: Premieres, u: np.ndarray) -> tuple[np.ndarray, ...]:
    """(member position, start, end) of sessions for favourites' premieres; u is [m, F, 2, 3]."""
    lo = np.searchsorted(p.content_idx, fav, side="left")
    hi = np.searchsorted(p.content_idx, fav, side="right")
    idx = lo[:, :, None] + np.arange(2)[None, None, :]               # first two airings
    go = (idx < hi[:, :, None]) & (fav[:, :, None] >= 0) & (u[..., 0] < APPOINTMENT_P)
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
