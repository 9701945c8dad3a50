"""Implicit feedback from viewing: the aggregation queries and the confidence transform.

One query per purpose, the heavy work in ClickHouse, results fetched as columns:

- `fetch_viewing`: household x content x daypart sums of the decayed share watched
  (views of at least `zap_threshold_s`), plus zap counts (shorter views: the household
  saw the programme on air and moved on). Joined to `programmes` for content ids.
- `fetch_watched`: household x programme pairs watched past the threshold (to leave out
  episodes a household has seen when asked to).

`Viewing.confidences` turns the raw sums into the matrices ALS learns from. Every SQL text
here runs on ClickHouse 18.16 (one JOIN per SELECT, `USING`, no window functions) and on
chdb's current engine.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.dayparts import Dayparts
from recommender.settings import DAY_MS, SignalSettings
from warehouse.base import Warehouse


def programmes_sql(db: str) -> str:
    """Latest version of every programme: content id and running time."""
    return (f"SELECT programme_id, argMax(content_id, updated_ms) AS content_id, "
            f"argMax(duration_s, updated_ms) AS p_duration_s FROM {db}.programmes GROUP BY programme_id")


Shard = tuple[int, int]  # household ids in [lo, hi): one query of a sharded read


def views_sql(t0_ms: int, t1_ms: int, dayparts: Dayparts, db: str, households: Shard | None = None) -> str:
    """Live views that began in [t0, t1) with their content id, share watched and daypart."""
    return (
        f"SELECT household_id, channel_id, programme_id, duration_s, ts_ms, "
        f"{dayparts.sql('ts_ms')} AS daypart "
        f"FROM {db}.events FINAL WHERE kind = 'view' AND ts_ms >= {int(t0_ms)} AND ts_ms < {int(t1_ms)} "
        f"AND programme_id != 0{shard_sql(households)}"
    )


# Views per query: clickhouse-driver (0.2.11) reads a column of a block by appending its 1 MiB
# buffer to a bytes object, quadratic in the block's size, and 18.16 returned this GROUP BY in
# one block. 1M households, 30M views (27M result rows): 27 s in the server, 99 s in all; in
# household ranges of ~2M views (16 queries) 42 s (4M: 57 s, 1M: 48 s; noisy 2-core machine).
# A household never spans two ranges, so every aggregate is exact.
SHARD_VIEWS = 2_000_000


def shard_sql(households: Shard | None) -> str:
    if households is None:
        return ""
    return f" AND household_id >= {int(households[0])} AND household_id < {int(households[1])}"


def household_shards(store: Warehouse, t0_ms: int, t1_ms: int,
                     views_per_shard: int = SHARD_VIEWS) -> list[Shard | None]:
    """Household id ranges with about `views_per_shard` views each ([None]: one query does)."""
    rows = store.query_rows(f"SELECT count(), min(household_id), max(household_id) FROM {store.database}.events "
                            f"WHERE kind = 'view' AND ts_ms >= {int(t0_ms)} AND ts_ms < {int(t1_ms)}")
    count, lo, hi = (int(v) for v in rows[0]) if rows else (0, 0, 0)
    n = -(-count // views_per_shard)
    if n <= 1:
        return [None]
    edges = sorted({lo + (hi + 1 - lo) * i // n for i in range(n)} | {hi + 1})
    return list(itertools.pairwise(edges))


def query_sharded(store: Warehouse, sql: Callable[[Shard | None], str],
                  shards: list[Shard | None]) -> dict[str, np.ndarray]:
    """One query per shard, columns concatenated."""
    parts = [store.query_columns(sql(shard)) for shard in shards]
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def share_sql() -> str:
    """Share of the programme watched, capped at 1 (running time unknown: 30 minutes)."""
    return "least(duration_s / if(p_duration_s > 0, greatest(p_duration_s, 60), 1800), 1.0)"


def decay_sql(ts_column: str, ref_ms: int, half_life_days: float) -> str:
    if half_life_days <= 0:
        return "1.0"
    return f"exp2(({ts_column} - {int(ref_ms)}) / {float(half_life_days) * DAY_MS!r})"


def viewing_sql(t0_ms: int, t1_ms: int, s: SignalSettings, dayparts: Dayparts, db: str,
                households: Shard | None = None) -> str:
    zap = int(s.zap_threshold_s)
    return (
        f"SELECT household_id, content_id, daypart, "
        f"sum(if(duration_s >= {zap}, {share_sql()} * {decay_sql('ts_ms', t1_ms, s.half_life_days)}, 0)) "
        f"AS raw, sum(if(duration_s < {zap}, 1, 0)) AS zaps "
        f"FROM ({views_sql(t0_ms, t1_ms, dayparts, db=db, households=households)}) AS v "
        f"ALL INNER JOIN ({programmes_sql(db)}) AS p USING programme_id "
        f"WHERE content_id != 0 GROUP BY household_id, content_id, daypart"
    )


def watched_sql(t0_ms: int, t1_ms: int, zap_threshold_s: int, db: str, households: Shard | None = None) -> str:
    return (
        f"SELECT household_id, programme_id FROM {db}.events FINAL "
        f"WHERE kind = 'view' AND ts_ms >= {int(t0_ms)} AND ts_ms < {int(t1_ms)} AND programme_id != 0 "
        f"AND duration_s >= {int(zap_threshold_s)}{shard_sql(households)} GROUP BY household_id, programme_id"
    )


def data_end_ms(store: Warehouse) -> int:
    """Start time of the latest view in the store (0 when there is none)."""
    rows = store.query_rows(f"SELECT count(), max(ts_ms) FROM {store.database}.events WHERE kind = 'view'")
    return int(rows[0][1]) if rows and int(rows[0][0]) else 0


@dataclass(frozen=True)
class Viewing:
    """Raw viewing sums, rows keyed by household, columns by content.

    raw:  (households * dayparts) x contents, row h * D + d: sum of decayed shares watched
          by household h in daypart d (decayed to `ref_ms`).
    zaps: households x contents: views shorter than the zap threshold.
    """

    household_ids: np.ndarray  # uint64, sorted
    content_ids: np.ndarray    # uint64, sorted
    dayparts: int
    raw: sp.csr_matrix
    zaps: sp.csr_matrix
    ref_ms: int

    @property
    def households(self) -> int:
        return len(self.household_ids)

    def without(self, drop: np.ndarray) -> Viewing:
        """The same viewing minus the households where `drop` (bool per household) is set."""
        keep = np.flatnonzero(~np.asarray(drop, dtype=bool))
        rows = (keep[:, None] * self.dayparts + np.arange(self.dayparts)[None, :]).ravel()
        return Viewing(self.household_ids[keep], self.content_ids, self.dayparts, self.raw[rows].tocsr(),
                       self.zaps[keep].tocsr(), self.ref_ms)

    def household_raw(self) -> sp.csr_matrix:
        """households x contents: raw sums over every daypart."""
        return fold_dayparts(self.raw, self.dayparts)

    def confidences(self, s: SignalSettings) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(households x contents, (households*dayparts) x contents) values for ALS.

        Positives: log1p(raw) (or raw); with `zap_negatives`, contents only ever zapped past
        get -zap_negative_weight (implicit reads a negative value as "not liked" with
        confidence |alpha * value|)."""
        raw = self.household_raw()
        lift = strength_lift(raw, s.min_strength)
        if lift is not None:
            raw = (sp.diags(lift) @ raw).tocsr()
        household = _transform(raw, s.log_scale)
        if s.zap_negatives and self.zaps.nnz:
            only_zapped = self.zaps - self.zaps.multiply(household > 0)
            only_zapped.eliminate_zeros()
            negatives = only_zapped.astype(bool).astype(np.float32) * -float(s.zap_negative_weight)
            household = (household + negatives).tocsr()
        household.sort_indices()
        per_daypart = self.raw if lift is None else (sp.diags(np.repeat(lift, self.dayparts)) @ self.raw).tocsr()
        return household, _transform(per_daypart, s.log_scale)


def strength_lift(household_raw: sp.csr_matrix, min_strength: float) -> np.ndarray | None:
    """Per household, the factor that lifts its strongest content sum to `min_strength`
    (1 where it is already there; None when nobody needs it). Decay orders a household's
    viewing by recency; without this, a household that watched nothing lately would have
    every confidence decayed to ~0 (weaker than an unobserved cell's) and a vector of noise."""
    if min_strength <= 0 or household_raw.shape[0] == 0:
        return None
    strongest = household_raw.max(axis=1).toarray().ravel().astype(np.float64)
    weak = (strongest > 0) & (strongest < min_strength)
    if not weak.any():
        return None
    return np.where(weak, min_strength / np.where(weak, strongest, 1.0), 1.0).astype(np.float32)


def holdout_mask(household_ids: np.ndarray, fraction: float) -> np.ndarray:
    """A fixed pseudo-random `fraction` of households (the same ones on every run)."""
    h = (np.asarray(household_ids, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return np.asarray(h.astype(np.float64) / float(1 << 24) < fraction)


def fold_dayparts(raw: sp.csr_matrix, dayparts: int) -> sp.csr_matrix:
    rows = raw.shape[0] // dayparts
    fold = sp.csr_matrix((np.ones(raw.shape[0], dtype=np.float32),
                          (np.arange(raw.shape[0]) // dayparts, np.arange(raw.shape[0]))),
                         shape=(rows, raw.shape[0]))
    out = (fold @ raw).tocsr()
    out.sort_indices()
    return out


def _transform(raw: sp.csr_matrix, log_scale: bool) -> sp.csr_matrix:
    out = raw.astype(np.float32).tocsr(copy=True)
    if log_scale:
        out.data = np.log1p(out.data)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def build_viewing(cols: dict[str, np.ndarray], dayparts: int, ref_ms: int,
                  household_ids: np.ndarray | None = None,
                  content_ids: np.ndarray | None = None) -> Viewing:
    """Viewing from the columns of `viewing_sql`. Fixed id lists keep an existing model's
    row/column order (fold-in); ids outside them are dropped."""
    hh = np.asarray(cols["household_id"], dtype=np.uint64)
    ct = np.asarray(cols["content_id"], dtype=np.uint64)
    dp = np.asarray(cols["daypart"], dtype=np.int64)
    raw = np.asarray(cols["raw"], dtype=np.float64)
    zaps = np.asarray(cols["zaps"], dtype=np.float64)
    h_ids = unique_ids(hh) if household_ids is None else household_ids
    c_ids = unique_ids(ct) if content_ids is None else content_ids
    h_idx, h_ok = _index_of(h_ids, hh)
    c_idx, c_ok = _index_of(c_ids, ct)
    ok = h_ok & c_ok & (dp >= 0) & (dp < dayparts)
    h_idx, c_idx, dp, raw, zaps = h_idx[ok], c_idx[ok], dp[ok], raw[ok], zaps[ok]
    pos = raw > 0
    raw_m = sp.csr_matrix((raw[pos].astype(np.float32), (h_idx[pos] * dayparts + dp[pos], c_idx[pos])),
                          shape=(len(h_ids) * dayparts, len(c_ids)))
    zap_m = sp.csr_matrix((zaps[zaps > 0].astype(np.float32), (h_idx[zaps > 0], c_idx[zaps > 0])),
                          shape=(len(h_ids), len(c_ids)))
    raw_m.sum_duplicates()
    zap_m.sum_duplicates()
    return Viewing(h_ids, c_ids, dayparts, raw_m, zap_m, ref_ms)


def unique_ids(values: np.ndarray) -> np.ndarray:
    """np.unique of a uint64 id column, fast: numpy 2's hash-based unique took 16 s for 27M rows
    of 1M households here; a presence table (dense ids) or a sort takes 0.1-2.5 s."""
    values = np.asarray(values, dtype=np.uint64)
    if len(values) <= 1024:
        return np.unique(values)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo <= 4 * len(values):
        present = np.zeros(hi - lo + 1, dtype=bool)
        present[values - np.uint64(lo)] = True
        return np.flatnonzero(present).astype(np.uint64) + np.uint64(lo)
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _index_of(sorted_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `values` in `sorted_ids` and a mask of those present."""
    if len(sorted_ids) == 0:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
    if len(values) > 1024 and hi < 2**62 and hi - lo <= 4 * len(values):
        # Dense ids (households, contents): a lookup table is O(n), binary search was O(n log m)
        # with a cache miss a step (1M households x 20M rows: 0.5 s instead of 5.7 s). Same answer.
        table = np.full(hi - lo + 2, -1, dtype=np.int64)  # the last slot: every value out of range
        table[(sorted_ids - sorted_ids.dtype.type(lo)).astype(np.int64)] = np.arange(len(sorted_ids))
        offset = np.asarray(values).astype(np.int64, copy=False) - lo  # ids >= 2^63 wrap negative: out
        offset[(offset < 0) | (offset > hi - lo)] = hi - lo + 1
        pos = table[offset]
        ok = pos >= 0
        return np.where(ok, pos, 0), ok
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return pos.astype(np.int64), sorted_ids[pos] == values


def query_viewing(store: Warehouse, t0_ms: int, t1_ms: int, s: SignalSettings, dayparts: Dayparts,
                  shards: list[Shard | None] | None = None) -> dict[str, np.ndarray]:
    """The viewing aggregation's columns (`shards`: from `household_shards`, computed if None)."""
    return query_sharded(store, lambda h: viewing_sql(t0_ms, t1_ms, s, dayparts, store.database, h),
                         shards if shards is not None else household_shards(store, t0_ms, t1_ms))


def fetch_viewing(store: Warehouse, t0_ms: int, t1_ms: int, s: SignalSettings, dayparts: Dayparts,
                  household_ids: np.ndarray | None = None, content_ids: np.ndarray | None = None) -> Viewing:
    cols = query_viewing(store, t0_ms, t1_ms, s, dayparts)
    return build_viewing(cols, dayparts.count, t1_ms, household_ids, content_ids)


def decay_to(viewing: Viewing, ref_ms: int, half_life_days: float) -> Viewing:
    """The same sums decayed further to a later reference time."""
    if half_life_days <= 0 or ref_ms == viewing.ref_ms:
        return viewing
    factor = math.pow(2.0, -(ref_ms - viewing.ref_ms) / (half_life_days * DAY_MS))
    return Viewing(viewing.household_ids, viewing.content_ids, viewing.dayparts,
                   (viewing.raw * np.float32(factor)).tocsr(), viewing.zaps, ref_ms)


@dataclass(frozen=True)
class Watched:
    """Programmes each household watched past the zap threshold: CSR rows by household."""

    household_ids: np.ndarray  # uint64, sorted
    indptr: np.ndarray         # int64
    programme_ids: np.ndarray  # uint64, sorted within each row

    def of(self, household_id: int) -> np.ndarray:
        i, ok = _index_of(self.household_ids, np.asarray([household_id], dtype=np.uint64))
        if not ok[0]:
            return self.programme_ids[:0]
        return self.programme_ids[self.indptr[i[0]]:self.indptr[i[0] + 1]]

    @classmethod
    def from_pairs(cls, household: np.ndarray, programme: np.ndarray) -> Watched:
        hh = np.asarray(household, dtype=np.uint64)
        pr = np.asarray(programme, dtype=np.uint64)
        hh, pr = _sorted_pairs(hh, pr)
        starts = np.flatnonzero(np.concatenate(([True], hh[1:] != hh[:-1]))) if len(hh) else np.zeros(0, np.int64)
        indptr = np.append(starts, len(hh)).astype(np.int64)
        return cls(hh[starts], indptr, pr)


def _sorted_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) pairs sorted by a then b. One sort of a packed uint64 key when both ranges fit in
    it (22M household x programme pairs: ~2 s here, np.lexsort ~18 s), else lexsort."""
    if len(a) == 0:
        return a, b
    a_lo, b_lo = int(a.min()), int(b.min())
    a_span, b_span = int(a.max()) - a_lo + 1, int(b.max()) - b_lo + 1
    if a_span * b_span >= 2**64:
        order = np.lexsort((b, a))
        return a[order], b[order]
    key = (a - np.uint64(a_lo)) * np.uint64(b_span) + (b - np.uint64(b_lo))
    key.sort()
    return key // np.uint64(b_span) + np.uint64(a_lo), key % np.uint64(b_span) + np.uint64(b_lo)


def fetch_watched(store: Warehouse, t0_ms: int, t1_ms: int, zap_threshold_s: int,
                  shards: list[Shard | None] | None = None) -> Watched:
    cols = query_sharded(store, lambda h: watched_sql(t0_ms, t1_ms, zap_threshold_s, store.database, h),
                         shards if shards is not None else household_shards(store, t0_ms, t1_ms))
    return Watched.from_pairs(cols["household_id"], cols["programme_id"])
