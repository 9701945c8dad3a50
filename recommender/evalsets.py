"""Evaluation data: the test period's views, cut into viewing sessions, and what each needs.

Split by time, never at random: the model and the baselines see views before the cut-off;
the test period follows it. A viewing session is a household's run of views with pauses
under `session_gap_minutes`; at its start t the question is "what will they watch in
[t, t + window]?" and the answer (relevant set) is every content the household watched past
the zap threshold in views starting in that window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.dayparts import Dayparts
from recommender.foldin import decay_factor, history_rows
from recommender.settings import EvaluateSettings, SignalSettings
from recommender.signal import Viewing, programmes_sql, share_sql, views_sql
from warehouse.base import Warehouse


def eval_views_sql(t0_ms: int, t1_ms: int, dayparts: Dayparts, db: str) -> str:
    return (f"SELECT household_id, ts_ms, channel_id, programme_id, content_id, duration_s, daypart, "
            f"{share_sql()} AS share FROM ({views_sql(t0_ms, t1_ms, dayparts, db=db)}) AS v "
            f"ALL INNER JOIN ({programmes_sql(db)}) AS p USING programme_id "
            f"WHERE content_id != 0 ORDER BY household_id, ts_ms")


def last_watched_sql(t0_ms: int, t1_ms: int, zap_threshold_s: int, db: str) -> str:
    """Each household's last view past the threshold before t1: its content and channel."""
    return (f"SELECT household_id, argMax(content_id, ts_ms) AS content_id, "
            f"argMax(channel_id, ts_ms) AS channel_id FROM ("
            f"SELECT household_id, programme_id, channel_id, ts_ms FROM {db}.events FINAL "
            f"WHERE kind = 'view' AND ts_ms >= {int(t0_ms)} AND ts_ms < {int(t1_ms)} AND programme_id != 0 "
            f"AND duration_s >= {int(zap_threshold_s)}) AS v "
            f"ALL INNER JOIN ({programmes_sql(db)}) AS p USING programme_id GROUP BY household_id")


@dataclass(frozen=True)
class EvalViews:
    household_id: np.ndarray  # uint64; rows sorted by (household, ts)
    ts_ms: np.ndarray
    channel_id: np.ndarray
    programme_id: np.ndarray
    content_id: np.ndarray
    duration_s: np.ndarray
    daypart: np.ndarray
    share: np.ndarray

    @classmethod
    def fetch(cls, store: Warehouse, t0_ms: int, t1_ms: int, dayparts: Dayparts) -> EvalViews:
        c = store.query_columns(eval_views_sql(t0_ms, t1_ms, dayparts, store.database))
        hh = np.asarray(c["household_id"], dtype=np.uint64)
        ts = np.asarray(c["ts_ms"], dtype=np.int64)
        order = np.lexsort((ts, hh))
        return cls(hh[order], ts[order], np.asarray(c["channel_id"], np.uint32)[order],
                   np.asarray(c["programme_id"], np.uint64)[order], np.asarray(c["content_id"], np.uint64)[order],
                   np.asarray(c["duration_s"], np.int64)[order], np.asarray(c["daypart"], np.int64)[order],
                   np.asarray(c["share"], np.float64)[order])


@dataclass(frozen=True)
class Sessions:
    household_id: np.ndarray  # uint64
    start_ms: np.ndarray      # int64
    first_view: np.ndarray    # index into EvalViews of the session's first view
    household_lo: np.ndarray  # EvalViews rows of the household: [lo, hi)
    household_hi: np.ndarray
    total: int                # sessions before sampling

    def __len__(self) -> int:
        return len(self.start_ms)

    def relevant(self, v: EvalViews, i: int, window_ms: int, zap_threshold_s: int) -> np.ndarray:
        """Contents session i's household watched past the threshold in [t, t + window)."""
        lo, hi = int(self.household_lo[i]), int(self.household_hi[i])
        t = int(self.start_ms[i])
        a = lo + int(np.searchsorted(v.ts_ms[lo:hi], t, side="left"))
        b = lo + int(np.searchsorted(v.ts_ms[lo:hi], t + window_ms, side="left"))
        ok = v.duration_s[a:b] >= zap_threshold_s
        return np.unique(v.content_id[a:b][ok])


def sessions(v: EvalViews, s: EvaluateSettings) -> Sessions:
    n = len(v.ts_ms)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Sessions(np.zeros(0, np.uint64), z, z, z, z, 0)
    end = v.ts_ms + v.duration_s * 1000
    new = np.ones(n, dtype=bool)
    new[1:] = (v.household_id[1:] != v.household_id[:-1]) | \
              (v.ts_ms[1:] - end[:-1] > s.session_gap_minutes * 60_000)
    first = np.flatnonzero(new)
    total = len(first)
    if total > s.max_sessions:
        rng = np.random.default_rng(s.seed)
        first = np.sort(rng.choice(first, s.max_sessions, replace=False))
    hh = v.household_id[first]
    lo = np.searchsorted(v.household_id, hh, side="left")
    hi = np.searchsorted(v.household_id, hh, side="right")
    return Sessions(hh, v.ts_ms[first], first, lo, hi, total)


def session_viewing(history: Viewing, v: EvalViews, ses: Sessions, signal: SignalSettings) -> Viewing:
    """Per-session viewing for fold-in: the household's training sums decayed to the session
    start plus its test-period views before it. Row "households" are session numbers."""
    d, n_c = history.dayparts, len(history.content_ids)
    scale = decay_factor(history.ref_ms, ses.start_ms, signal.half_life_days)
    raw_hist, zap_hist = history_rows(history, ses.household_id, scale)
    rows, cols, vals, zrows, zcols = [], [], [], [], []
    c_pos = np.minimum(np.searchsorted(history.content_ids, v.content_id), max(n_c - 1, 0))
    c_ok = (n_c > 0) & (history.content_ids[c_pos] == v.content_id) if n_c else np.zeros(len(v.ts_ms), bool)
    for i in range(len(ses)):
        lo = int(ses.household_lo[i])
        b = int(ses.first_view[i])
        sl = slice(lo, b)
        ok = c_ok[sl]
        if not ok.any():
            continue
        watched = ok & (v.duration_s[sl] >= signal.zap_threshold_s)
        zapped = ok & ~watched
        w = v.share[sl] * decay_factor(v.ts_ms[sl], ses.start_ms[i], signal.half_life_days)
        rows.append(i * d + v.daypart[sl][watched])
        cols.append(c_pos[sl][watched])
        vals.append(w[watched])
        zrows.append(np.full(int(zapped.sum()), i))
        zcols.append(c_pos[sl][zapped])
    shape = (len(ses) * d, n_c)
    if rows:
        fresh = sp.csr_matrix((np.concatenate(vals).astype(np.float32),
                               (np.concatenate(rows), np.concatenate(cols))), shape=shape)
        fresh_z = sp.csr_matrix((np.ones(sum(len(z) for z in zrows), np.float32),
                                 (np.concatenate(zrows), np.concatenate(zcols))), shape=(len(ses), n_c))
    else:
        fresh, fresh_z = sp.csr_matrix(shape, dtype=np.float32), sp.csr_matrix((len(ses), n_c), dtype=np.float32)
    return Viewing(np.arange(len(ses), dtype=np.uint64), history.content_ids, d,
                   (raw_hist + fresh).tocsr(), (zap_hist + fresh_z).tocsr(), 0)
