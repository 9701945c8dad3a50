"""Audience measurement for one day: ratings, reach and share by airing, channel or daypart.

    r = compute_ratings(warehouse, date(2026, 12, 1), "programme", CrmSettings())
    store_ratings(warehouse, r)                 # -> ratings_daily
    r.rows[0]["title"], r.rows[0]["rating"]

Definitions (docs/CRM.md; credited viewing is crm.credit's):
- universe: households with any event in the (local) day;
- airing (by programme; airings starting in the day) rating % = credited household-minutes in
  the airing / airing minutes / universe x 100 (a household's minutes in an airing are capped at
  its length: two boxes on the same airing count once); reach % = households with >= reach_s
  credited in the airing / universe x 100; share % = the airing's credited minutes / all credited
  minutes (every channel) in its time span x 100 (the span in whole minutes);
- channel-day: the same over the day's 24 hours, plus average minutes per viewer (credited
  minutes / households with any credited time on the channel);
- daypart: every channel together in each daypart of the day (rating = the average share of the
  universe viewing, i.e. households using TV); share = the daypart's part of the day's minutes.
The aggregations run in ClickHouse; Python only divides the sums and joins the labels.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from crm.credit import HouseholdFilter, minutes_sql, pieces_sql, universe_sql
from crm.errors import NoData
from crm.settings import DAY_MS, MINUTE_MS, CrmSettings
from warehouse import Warehouse

BY: Final = ("programme", "channel", "daypart")


@dataclass
class Ratings:
    day: dt.date
    by: str
    segment: str
    universe: int
    rows: list[dict[str, Any]] = field(default_factory=list)   # sorted by rating, highest first

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "by": self.by, "segment": self.segment, "universe": self.universe,
                "rows": self.rows}


def day_bounds(day: dt.date, settings: CrmSettings) -> tuple[int, int]:
    """[start, end) of the local day in unix ms."""
    t0 = (day - dt.date(1970, 1, 1)).days * DAY_MS - settings.credit.utc_offset_minutes * MINUTE_MS
    return t0, t0 + DAY_MS


def compute_ratings(warehouse: Warehouse, day: dt.date, by: str, settings: CrmSettings, *,
                    households: HouseholdFilter | None = None, segment: str = "") -> Ratings:
    if by not in BY:
        raise ValueError(f"by: one of {', '.join(BY)}")
    t0, t1 = day_bounds(day, settings)
    params = households.params if households else {}
    universe = int(warehouse.query_rows(universe_sql(warehouse.database, t0, t1, households), params)[0][0])
    if universe == 0:
        raise NoData(f"no events on {day.isoformat()}" + (" in the segment" if households else ""))
    compute = {"programme": _airings, "channel": _channels, "daypart": _dayparts}[by]
    rows = compute(warehouse, t0, t1, universe, settings, households)
    rows.sort(key=lambda r: (-r["rating"], r.get("channel_id", 0), r.get("start_ms", 0)))
    return Ratings(day, by, segment, universe, rows)


def _airings(wh: Warehouse, t0: int, t1: int, universe: int, settings: CrmSettings,
             households: HouseholdFilter | None) -> list[dict[str, Any]]:
    db = wh.database
    params = households.params if households else {}
    guide = wh.query_columns(f"""
        SELECT channel_id, start_ms, stop_ms, programme_id, title, category, name AS channel
        FROM (SELECT channel_id, start_ms, stop_ms, programme_id, title, category
              FROM (SELECT channel_id, start_ms, stop_ms, programme_id FROM {db}.airings FINAL
                    WHERE start_ms >= {t0} AND start_ms < {t1} AND stop_ms > start_ms) AS a
              ANY LEFT JOIN (SELECT programme_id, title, category FROM {db}.programmes FINAL) AS p USING programme_id
             ) AS ap
        ANY LEFT JOIN (SELECT channel_id, name FROM {db}.channels FINAL) AS c USING channel_id
        ORDER BY channel_id, start_ms""")  # one JOIN per SELECT on 18.16
    if not len(guide["channel_id"]):
        return []
    hi = int(guide["stop_ms"].max())
    # The credited stretches are needed twice (per airing, and per minute for the shares): computed
    # once into a temporary table (reading `events FINAL` is the costly part), dropped at the end.
    stage = f"{db}.crm_stage_{uuid.uuid4().hex[:12]}"
    wh.execute(f"CREATE TABLE {stage} (household_id UInt64, channel_id UInt32, start_ms Int64, stop_ms Int64) "
               "ENGINE = MergeTree() ORDER BY (channel_id, household_id)")
    try:
        wh.query_rows(f"INSERT INTO {stage} SELECT household_id, channel_id, start_ms, stop_ms "
                      f"FROM ({pieces_sql(db, settings.credit, t0, hi, households)})", params)
        per_airing, totals = _per_airing(wh, stage, t0, t1, hi, settings)
    finally:
        wh.execute(f"DROP TABLE IF EXISTS {stage}")
    key = {(int(c), int(s)): i for i, (c, s) in enumerate(zip(per_airing["channel_id"], per_airing["a_start"],
                                                                strict=True))}
    cum = np.concatenate([[0.0], np.cumsum(totals)])
    rows = []
    for j in range(len(guide["channel_id"])):
        ch, start, stop = int(guide["channel_id"][j]), int(guide["start_ms"][j]), int(guide["stop_ms"][j])
        i = key.get((ch, start))
        credited = float(per_airing["credited_ms"][i]) if i is not None else 0.0
        reached = int(per_airing["reached"][i]) if i is not None else 0
        m0, m1 = (start - t0) // MINUTE_MS, (stop - 1 - t0) // MINUTE_MS + 1
        span = float(cum[min(m1, len(totals))] - cum[min(m0, len(totals))])
        rows.append({"channel_id": ch, "channel": str(guide["channel"][j]), "start_ms": start, "stop_ms": stop,
                     "programme_id": int(guide["programme_id"][j]), "title": str(guide["title"][j]),
                     "category": str(guide["category"][j]),
                     **_figures(credited, stop - start, universe, reached, span)})
    return rows


def _per_airing(wh: Warehouse, stage: str, t0: int, t1: int, hi: int,
                settings: CrmSettings) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Credited ms and reached households per airing, and every channel's credited ms per minute."""
    db = wh.database
    pieces = f"SELECT household_id, channel_id, start_ms, stop_ms FROM {stage}"
    per_airing = wh.query_columns(f"""
        SELECT channel_id, a_start, sum(hh_ms) AS credited_ms, countIf(hh_ms >= {settings.credit.reach_s * 1000})
               AS reached
        FROM (
            SELECT channel_id, a_start, household_id,
                   least(sum(least(stop_ms, a_stop) - greatest(start_ms, a_start)), a_stop - a_start) AS hh_ms
            FROM (SELECT household_id, channel_id, start_ms, stop_ms FROM ({pieces})) AS v
            ALL INNER JOIN (SELECT channel_id, start_ms AS a_start, stop_ms AS a_stop FROM {db}.airings FINAL
                            WHERE start_ms >= {t0} AND start_ms < {t1} AND stop_ms > start_ms) AS a USING channel_id
            WHERE start_ms < a_stop AND stop_ms > a_start
            GROUP BY channel_id, a_start, a_stop, household_id
        )
        GROUP BY channel_id, a_start""")
    return per_airing, _minute_totals(wh, pieces, t0, hi, {})


def _channels(wh: Warehouse, t0: int, t1: int, universe: int, settings: CrmSettings,
              households: HouseholdFilter | None) -> list[dict[str, Any]]:
    db = wh.database
    pieces = pieces_sql(db, settings.credit, t0, t1, households)
    got = wh.query_columns(f"""
        SELECT channel_id, name AS channel, credited_ms, reached, viewers
        FROM (
            SELECT channel_id, sum(hh_ms) AS credited_ms, countIf(hh_ms >= {settings.credit.reach_s * 1000}) AS reached,
                   count() AS viewers
            FROM (SELECT channel_id, household_id,
                         least(sum(least(stop_ms, {t1}) - greatest(start_ms, {t0})), {t1 - t0}) AS hh_ms
                  FROM ({pieces}) WHERE start_ms < {t1} AND stop_ms > {t0} GROUP BY channel_id, household_id)
            GROUP BY channel_id
        ) AS v ANY LEFT JOIN (SELECT channel_id, name FROM {db}.channels FINAL) AS c USING channel_id""",
        households.params if households else {})
    total = float(got["credited_ms"].sum())
    return [{"channel_id": int(got["channel_id"][i]), "channel": str(got["channel"][i]),
             **_figures(float(got["credited_ms"][i]), t1 - t0, universe, int(got["reached"][i]), total,
                        int(got["viewers"][i]))} for i in range(len(got["channel_id"]))]


def _dayparts(wh: Warehouse, t0: int, t1: int, universe: int, settings: CrmSettings,
              households: HouseholdFilter | None) -> list[dict[str, Any]]:
    parts = settings.dayparts
    table = parts.hour_table()
    lookup = "[" + ", ".join(str(i + 1) for i in table) + "]"   # daypart number (1-based) of each local hour
    minutes = minutes_sql(pieces_sql(wh.database, settings.credit, t0, t1, households), t0, t0, t1)
    got = wh.query_columns(f"""
        SELECT part, sum(hh_ms) AS credited_ms, countIf(hh_ms >= {settings.credit.reach_s * 1000}) AS reached,
               count() AS viewers
        FROM (SELECT arrayElement({lookup}, toUInt32(modulo(intDiv(minute, 60), 24) + 1)) AS part, household_id,
                     sum(ms) AS hh_ms
              FROM ({minutes}) GROUP BY part, household_id)
        GROUP BY part ORDER BY part""", households.params if households else {})
    found = {int(p): i for i, p in enumerate(got["part"])}
    total = float(got["credited_ms"].sum())
    rows = []
    for p, name in enumerate(parts.names):
        hours = table.count(p)
        i = found.get(p + 1)
        credited = float(got["credited_ms"][i]) if i is not None else 0.0
        rows.append({"daypart": name, "hours": hours,
                     **_figures(credited, hours * 3_600_000, universe, int(got["reached"][i]) if i is not None else 0,
                                total, int(got["viewers"][i]) if i is not None else 0)})
    return rows


def _minute_totals(wh: Warehouse, pieces: str, t0: int, hi: int, params: dict[str, Any]) -> np.ndarray:
    """Credited ms of every channel together in each minute from t0 to hi."""
    got = wh.query_columns(f"SELECT minute, sum(ms) AS ms FROM ({minutes_sql(pieces, t0, t0, hi)}) "
                           "GROUP BY minute", params)
    out = np.zeros((hi - t0) // MINUTE_MS + 1)
    out[got["minute"].astype(np.int64)] = got["ms"].astype(np.float64)
    return out


def _figures(credited_ms: float, length_ms: int, universe: int, reached: int, total_ms: float,
             viewers: int | None = None) -> dict[str, Any]:
    out = {"rating": 100.0 * credited_ms / length_ms / universe if length_ms > 0 else 0.0,
           "reach": 100.0 * reached / universe,
           "share": 100.0 * credited_ms / total_ms if total_ms > 0 else 0.0,
           "credited_minutes": credited_ms / MINUTE_MS, "reached": reached}
    if viewers is not None:
        out["viewers"] = viewers
        out["avg_minutes"] = credited_ms / MINUTE_MS / viewers if viewers else 0.0
    return out


def store_ratings(warehouse: Warehouse, r: Ratings, *, now_ms: int | None = None) -> int:
    """Write the rows to ratings_daily (a re-run for the same day, grouping and segment replaces them)."""
    n = len(r.rows)
    if n == 0:
        return 0

    def col(name: str, default: Any, dtype: Any) -> np.ndarray:
        values = [row.get(name, default) for row in r.rows]
        if dtype is object:
            out = np.empty(n, dtype=object)
            out[:] = [str(v) for v in values]
            return out
        return np.asarray(values, dtype=dtype)

    text = np.empty(n, dtype=object)
    text[:] = [r.segment] * n
    warehouse.insert_columns("ratings_daily", {
        "day": np.full(n, np.datetime64(r.day, "s")), "by": col("_", r.by, object), "segment": text,
        "channel_id": col("channel_id", 0, np.uint32), "start_ms": col("start_ms", 0, np.int64),
        "stop_ms": col("stop_ms", 0, np.int64), "programme_id": col("programme_id", 0, np.uint64),
        "daypart": col("daypart", "", object), "title": col("title", "", object),
        "rating": col("rating", 0.0, np.float64), "reach": col("reach", 0.0, np.float64),
        "share": col("share", 0.0, np.float64), "avg_minutes": col("avg_minutes", 0.0, np.float64),
        "credited_minutes": col("credited_minutes", 0.0, np.float64), "reached": col("reached", 0, np.uint64),
        "universe": np.full(n, r.universe, dtype=np.uint64),
        "computed_ms": np.full(n, int(time.time() * 1000) if now_ms is None else now_ms, dtype=np.int64)})
    return n
