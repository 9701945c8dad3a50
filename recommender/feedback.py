"""The feedback loop: impressions, clicks and click-through per model version.

STBs log one `rec_impression` per item shown (request_id, model_version, programme, rank)
and a `rec_click` (request_id, programme, rank) when the viewer picks one. Clicks carry no
model version: they are joined to their impressions by request_id (impressions from a day
before `since` count, so a click just after the boundary still finds its request).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.settings import DAY_MS, HOUR_MS
from warehouse.base import Warehouse


def feedback_sql(since_ms: int, until_ms: int, db: str) -> str:
    window = f"ts_ms >= {int(since_ms)} AND ts_ms < {int(until_ms)}"
    return (
        f"SELECT model_version, impressions, requests, households, clicks, clicked_requests, mean_click_rank "
        f"FROM (SELECT model_version, count() AS impressions, uniqExact(request_id) AS requests, "
        f"uniqExact(household_id) AS households FROM {db}.events FINAL "
        f"WHERE kind = 'rec_impression' AND {window} GROUP BY model_version) AS i "
        f"ALL LEFT JOIN (SELECT model_version, count() AS clicks, uniqExact(request_id) AS clicked_requests, "
        f"avg(rank) AS mean_click_rank FROM (SELECT request_id, rank FROM {db}.events FINAL "
        f"WHERE kind = 'rec_click' AND {window}) AS c "
        f"ALL INNER JOIN (SELECT request_id, any(model_version) AS model_version FROM {db}.events FINAL "
        f"WHERE kind = 'rec_impression' AND ts_ms >= {int(since_ms) - DAY_MS} AND ts_ms < {int(until_ms)} "
        f"GROUP BY request_id) AS r USING request_id GROUP BY model_version) AS k USING model_version "
        f"ORDER BY model_version"
    )


@dataclass(frozen=True)
class VersionFeedback:
    model_version: str
    impressions: int
    requests: int
    households: int
    clicks: int
    clicked_requests: int
    mean_click_rank: float

    @property
    def ctr(self) -> float:
        """Clicks per impression (per item shown)."""
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def request_ctr(self) -> float:
        """Share of recommendation lists that got a click."""
        return self.clicked_requests / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "ctr": round(self.ctr, 5), "request_ctr": round(self.request_ctr, 5)}


def feedback(store: Warehouse, since_ms: int, until_ms: int) -> list[VersionFeedback]:
    c = store.query_columns(feedback_sql(since_ms, until_ms, store.database))
    if not c or not len(next(iter(c.values()))):
        return []
    rank = np.nan_to_num(np.asarray(c["mean_click_rank"], dtype=np.float64))
    return [VersionFeedback(str(v), int(i), int(r), int(h), int(k), int(kr), float(mr))
            for v, i, r, h, k, kr, mr in zip(c["model_version"], c["impressions"], c["requests"],
                                             c["households"], np.nan_to_num(c["clicks"].astype(np.float64)),
                                             np.nan_to_num(c["clicked_requests"].astype(np.float64)), rank,
                                             strict=True)]


def table(rows: list[VersionFeedback], since_ms: int, until_ms: int) -> str:
    lines = [f"recommendation feedback {_iso(since_ms)} .. {_iso(until_ms)}",
             f"{'model_version':<28}{'impr':>9}{'lists':>8}{'hh':>7}{'clicks':>8}{'CTR':>8}{'list CTR':>9}"
             f"{'rank':>6}"]
    for r in rows:
        lines.append(f"{r.model_version:<28}{r.impressions:>9}{r.requests:>8}{r.households:>7}{r.clicks:>8}"
                     f"{r.ctr:>8.4f}{r.request_ctr:>9.4f}{r.mean_click_rank:>6.2f}")
    if not rows:
        lines.append("(no rec_impression events in the period)")
    return "\n".join(lines)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([dh])")


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Unix ms from '1767225600000', '7d' / '36h' (before now) or an ISO date/time (UTC if naive)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    text = text.strip()
    if text.isdigit():
        return int(text)
    m = _RELATIVE.fullmatch(text)
    if m:
        return now_ms - int(float(m.group(1)) * (DAY_MS if m.group(2) == "d" else HOUR_MS))
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not unix ms, 7d/36h or an ISO date/time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)
