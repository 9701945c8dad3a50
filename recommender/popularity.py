"""Popular-now, computed at training time from recent viewing and stored in the artifact.

Three tiers, so the ranking never collapses when recent viewing is thin (a sparse or
long-spread audience, a quiet week): contents watched in the last `popularity.days` by that
audience; then contents watched in the whole training window by their decayed audience
there (taken from the training sums, no extra query); then channel x daypart audience.

Two tables from one query over the last `popularity.days`: audience per content (decayed
share watched, summed over households) and audience per channel x daypart (per hour of the
daypart, so a short daypart is not penalised). `Popular` ranks airings by their content's
audience; contents nobody watched recently come after, ordered by their channel's audience
in the airing's daypart. It answers the Popular RPC and every household the model has
never seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from recommender.dayparts import Dayparts
from recommender.settings import DAY_MS, PopularitySettings
from recommender.signal import decay_sql, programmes_sql, share_sql, views_sql
from warehouse.base import Warehouse


def popularity_sql(t0_ms: int, t1_ms: int, zap_threshold_s: int, half_life_days: float,
                   dayparts: Dayparts, db: str) -> str:
    return (
        f"SELECT content_id, channel_id, daypart, "
        f"sum({share_sql()} * {decay_sql('ts_ms', t1_ms, half_life_days)}) AS audience "
        f"FROM ({views_sql(t0_ms, t1_ms, dayparts, db=db)}) AS v "
        f"ALL INNER JOIN ({programmes_sql(db)}) AS p USING programme_id "
        f"WHERE duration_s >= {int(zap_threshold_s)} "
        f"GROUP BY content_id, channel_id, daypart"
    )


@dataclass(frozen=True)
class Popularity:
    content_ids: np.ndarray       # uint64 sorted
    content_audience: np.ndarray  # float64, share of the total
    channel_ids: np.ndarray       # uint32 sorted
    channel_daypart: np.ndarray   # float64 (channels, dayparts), share of the total per daypart-hour
    history_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # sorted
    history_audience: np.ndarray = field(default_factory=lambda: np.zeros(0))  # training-window share

    def with_history(self, content_ids: np.ndarray, audience: np.ndarray) -> Popularity:
        """The second tier: audience of each content over the whole training window."""
        a = np.asarray(audience, dtype=np.float64)
        return replace(self, history_ids=np.asarray(content_ids, dtype=np.uint64),
                       history_audience=a / max(a.sum(), 1e-12))

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray], dayparts: Dayparts) -> Popularity:
        content = np.asarray(cols["content_id"], dtype=np.uint64)
        channel = np.asarray(cols["channel_id"], dtype=np.uint32)
        dp = np.asarray(cols["daypart"], dtype=np.int64)
        audience = np.asarray(cols["audience"], dtype=np.float64)
        c_ids, c_inv = np.unique(content, return_inverse=True)
        c_aud = np.bincount(c_inv.ravel(), weights=audience, minlength=len(c_ids))
        ch_ids, ch_inv = np.unique(channel, return_inverse=True)
        table = np.zeros((len(ch_ids), dayparts.count))
        np.add.at(table, (ch_inv.ravel(), dp), audience)
        table /= np.maximum(dayparts.hours(), 1.0)[None, :]
        return cls(c_ids, c_aud / max(c_aud.sum(), 1e-12), ch_ids, table / max(table.sum(), 1e-12))

    @classmethod
    def fetch(cls, store: Warehouse, t1_ms: int, s: PopularitySettings, zap_threshold_s: int,
              dayparts: Dayparts) -> Popularity:
        t0_ms = t1_ms - int(s.days * DAY_MS)
        sql = popularity_sql(t0_ms, t1_ms, zap_threshold_s, s.half_life_days, dayparts, store.database)
        return cls.from_columns(store.query_columns(sql), dayparts)

    def content_scores(self, content_ids: np.ndarray) -> np.ndarray:
        return _lookup(self.content_ids, self.content_audience, np.asarray(content_ids, dtype=np.uint64))

    def channel_scores(self, channel_ids: np.ndarray, dayparts: np.ndarray) -> np.ndarray:
        ids = np.asarray(channel_ids, dtype=np.uint32)
        if not len(self.channel_ids):
            return np.zeros(len(ids))
        pos = np.minimum(np.searchsorted(self.channel_ids, ids), len(self.channel_ids) - 1)
        found = self.channel_ids[pos] == ids
        out = self.channel_daypart[pos, np.asarray(dayparts, dtype=np.int64)]
        return np.where(found, out, 0.0)

    def scores(self, content_ids: np.ndarray, channel_ids: np.ndarray, dayparts: np.ndarray) -> np.ndarray:
        """Popular-now: recent content audience first, then audience over the training window,
        then channel x daypart audience (which also breaks ties). In [0, 3): [2, 3) recent,
        [1, 2) watched earlier only, [0, 1) by channel alone."""
        ids = np.asarray(content_ids, dtype=np.uint64)
        content = self.content_scores(ids)
        channel = self.channel_scores(channel_ids, dayparts)
        earlier = _lookup(self.history_ids, self.history_audience, ids)
        return np.where(content > 0, 2.0 + content + 1e-9 * channel,
                        np.where(earlier > 0, 1.0 + earlier + 1e-9 * channel, 0.999 * channel))

    def save(self, path: Path) -> None:
        np.savez(path, content_ids=self.content_ids, content_audience=self.content_audience,
                 channel_ids=self.channel_ids, channel_daypart=self.channel_daypart,
                 history_ids=self.history_ids, history_audience=self.history_audience)

    @classmethod
    def load(cls, path: Path) -> Popularity:
        with np.load(path, allow_pickle=False) as z:
            pop = cls(z["content_ids"], z["content_audience"], z["channel_ids"], z["channel_daypart"])
            if "history_ids" in z.files:  # artifacts before the second tier lack it
                pop = pop.with_history(z["history_ids"], z["history_audience"])
            return pop

    @classmethod
    def empty(cls, dayparts: int) -> Popularity:
        return cls(np.zeros(0, np.uint64), np.zeros(0), np.zeros(0, np.uint32), np.zeros((0, dayparts)))


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    if not len(keys):
        return np.zeros(len(query))
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[pos] == query, values[pos], 0.0)
