"""Credited viewing: the rules ratings and profiles share, as SQL subqueries.

A `view` event is credited when it lasted at least `min_view_s`. Its credited stretch is
[ts_ms, ts_ms + duration) cut at `idle_cut_minutes` after the household's last interaction
(`tune`, `epg_click` or `power`) at or before the view's start — a box left on with the TV
off. A view with no interaction before it in the preceding day counts from its own start.
Since the last interaction is never after the start, a credited stretch never extends more
than `idle_cut_minutes` past its start: a window's views are exactly those starting in
[t0 - idle cut, t1).

ClickHouse 18.16 has no ASOF JOIN: each view is joined to the household's interaction times
of its own (local) day and the day before, an array per household-day, and picks the last
one at or before its start with arrayFilter. The cost is views x interactions of two days,
per household: small.

Every value the SQL needs is a %(name)s parameter or an integer from typed settings; the
optional household filter is SQL produced by crm.segments from a parsed AST (never user text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crm.settings import DAY_MS, MINUTE_MS, CreditSettings

INTERACTIONS = "('tune', 'epg_click', 'power')"


@dataclass(frozen=True)
class HouseholdFilter:
    """`household_id IN (sql)`: a subquery selecting household ids, and its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)

    def clause(self, column: str = "household_id") -> str:
        return f" AND {column} IN ({self.sql})"


def shard_clause(shard: tuple[int, int] | None) -> str:
    """` AND modulo(household_id, n) = i` for shard (i, n): big jobs run one shard of households at a time."""
    return f" AND modulo(household_id, {int(shard[1])}) = {int(shard[0])}" if shard else ""


def pieces_sql(db: str, credit: CreditSettings, t0_ms: int, t1_ms: int,
               households: HouseholdFilter | None = None, shard: tuple[int, int] | None = None,
               source: str = "") -> str:
    """Credited stretches of views that may overlap [t0_ms, t1_ms): columns household_id,
    channel_id, programme_id, start_ms, stop_ms (stop > start; zero-length ones are dropped).
    `source`: where the events are read (default `db.events FINAL`; profiles read a staged copy)."""
    source = source or f"{db}.events FINAL"
    cut = credit.idle_cut_minutes * MINUTE_MS
    off = credit.utc_offset_minutes * MINUTE_MS
    v0, v1 = int(t0_ms) - cut, int(t1_ms)
    hh = (households.clause() if households else "") + shard_clause(shard)
    local_day = f"intDiv(ts_ms + {off}, {DAY_MS})"
    return f"""
SELECT household_id, channel_id, programme_id, start_ms,
       least(start_ms + toInt64(duration_s) * 1000, if(last_ms > 0, last_ms, start_ms) + {cut}) AS stop_ms
FROM (
    SELECT household_id, channel_id, programme_id, start_ms, duration_s,
           arrayReduce('max', arrayFilter(x -> x <= start_ms, its)) AS last_ms
    FROM (
        SELECT household_id, channel_id, programme_id, ts_ms AS start_ms, duration_s, {local_day} AS dayn
        FROM {source}
        WHERE kind = 'view' AND duration_s >= {int(credit.min_view_s)} AND ts_ms >= {v0} AND ts_ms < {v1}{hh}
    ) AS v ANY LEFT JOIN (
        SELECT household_id, dayn, groupArray(ts_ms) AS its
        FROM (
            SELECT household_id, ts_ms, arrayJoin([{local_day}, {local_day} + 1]) AS dayn
            FROM {source}
            WHERE kind IN {INTERACTIONS} AND ts_ms >= {v0 - DAY_MS} AND ts_ms < {v1}{hh}
        )
        GROUP BY household_id, dayn
    ) AS i USING household_id, dayn
)
WHERE stop_ms > start_ms"""


def lookback_ms(credit: CreditSettings) -> int:
    """How far before t0 pieces_sql reads events (views: the idle cut; interactions: a day more)."""
    return credit.idle_cut_minutes * MINUTE_MS + DAY_MS


def minutes_sql(pieces: str, base_ms: int, lo_ms: int, hi_ms: int) -> str:
    """Pieces clipped to [lo_ms, hi_ms) and split by minute (minute m covers base + [m, m+1) minutes):
    columns household_id, channel_id, minute, ms. 18.16 has no range(a, b): arrayMap over range(n)."""
    base = int(base_ms)
    return f"""
SELECT household_id, channel_id, minute,
       least(s1, {base} + (minute + 1) * {MINUTE_MS}) - greatest(s0, {base} + minute * {MINUTE_MS}) AS ms
FROM (
    SELECT household_id, channel_id, s0, s1,
           arrayJoin(arrayMap(i -> m0 + i, range(toUInt32(m1 - m0 + 1)))) AS minute
    FROM (
        SELECT household_id, channel_id, greatest(start_ms, {int(lo_ms)}) AS s0, least(stop_ms, {int(hi_ms)}) AS s1,
               intDiv(s0 - {int(base_ms)}, {MINUTE_MS}) AS m0, intDiv(s1 - 1 - {int(base_ms)}, {MINUTE_MS}) AS m1
        FROM ({pieces})
        WHERE s1 > s0
    )
)"""


def universe_sql(db: str, t0_ms: int, t1_ms: int, households: HouseholdFilter | None = None) -> str:
    """Households with any event in [t0_ms, t1_ms)."""
    hh = households.clause() if households else ""
    return (f"SELECT uniqExact(household_id) AS universe FROM {db}.events FINAL "
            f"WHERE ts_ms >= {int(t0_ms)} AND ts_ms < {int(t1_ms)}{hh}")
