"""Churn features and labels, computed in ClickHouse for any set of past days.

    frame = feature_frame(warehouse, [day1, day2, ...], settings, known_by=day)   # FeatureFrame

A *feature day* F uses only events up to the end of F and the subscriber record as of F
(`subscriber_history`): training can look at many past days, scoring at one. That is why the
features are not read from `household_profiles` (which exist only for days someone profiled):
the window's events are aggregated once per household and local day into a temporary
`crm_stage_<random>` table (deduplicated with FINAL), and every feature day is a set of window
sums over it, with the profiles' definitions (a view counts from `credit.min_view_s`, prime time
is the `prime` daypart, the 7/21-day trend is the profile's `trend`). Households: subscribers whose
record as of F is not ended and who were activated by F, with or without viewing.

Label: the subscription's `ended` date is in F+1 .. F+horizon *and* on or before `known_by`
(what was known on the training day); rows whose horizon is not over by `known_by` have no label.

18.16 shapes the SQL: one JOIN per SELECT, USING with two keys, arrayJoin over the feature days
that fall in a row's 8-week reach (a daily row meets at most 19 feature days 3 days apart).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from crm.settings import DAY_MS, MINUTE_MS, CrmSettings
from warehouse import Warehouse

WINDOW_DAYS: Final = 56          # the features look back 8 weeks
PACKAGES: Final = ("basic", "plus", "sports", "films", "full")
# Model inputs, in this order (the artifact records them; a model trained on others is refused).
FEATURES: Final = (
    "minutes_day_7d", "minutes_day_21d", "trend_7_21", "trend_28_28", "sessions_trend", "active_days_7d",
    "active_days_21d", "prime_share_7d", "prime_share_drop", "short_share_7d", "short_share_rise",
    "power_cycles_7d", "power_cycles_rise", "minutes_per_session_7d", "days_since_view", "days_since_event",
    "history_days", "tenure_days", "monthly_fee", "products", "package", "hd", "multiroom", "suspended",
    # against the household's own level a month earlier (days 29-56): a decline older than three weeks
    # has already lowered the 21-day baseline
    "trend_7_usual", "trend_14_usual", "sessions_usual", "prime_drop_usual", "short_rise_usual",
    "power_cycles_rise_usual",
    # per day watched (a holiday empties days, a decline thins them) and the 4-week slope of daily minutes
    "minutes_per_active_day_usual", "slope_28d",
    # sessions of a few minutes (switching on, finding nothing, switching off), programmes watched to their
    # end, zapping and session length: the fragments of viewing that measure dissatisfaction best (docs/CRM.md)
    "short_sessions_7d", "short_sessions_14d", "short_sessions_28d", "short_sessions_prev_28d",
    "short_sessions_day_7d", "short_sessions_day_28d", "full_share_7d", "full_share_14d", "full_share_usual",
    "full_drop_usual", "zaps_session_7d", "zaps_session_14d", "zap_share_14d", "zap_rise_usual",
    "session_minutes_14d", "session_length_usual", "long_sessions_usual", "long_sessions_day_7d",
)
# Kept beside the features: the raw sums reasons are worded from.
EXTRA: Final = ("prime_share_21d", "short_share_21d", "power_cycles_21d", "sessions_7d", "sessions_21d",
                "minutes_7d", "minutes_21d", "minutes_prev_28d", "sessions_prev_28d")
TREND_CAP: Final = 10.0
# A session (switch-on to the device's next power event) this short is a "short session": ordinary ones
# last 3 minutes at the least and 40+ minutes typically; switching on, finding nothing and switching off
# takes a few minutes.
SHORT_SESSION_S: Final = 540
# Undefined before 8 weeks of data. The later shares against the usual level (full_share_usual,
# zap_rise_usual, session_length_usual) stay defined on a partial window - a share of fewer days is still
# fair, a count is not (dev seeds 5 and 9: masking them too cost 0.004 AUC).
USUAL: Final = ("trend_7_usual", "trend_14_usual", "sessions_usual", "prime_drop_usual", "short_rise_usual",
                "power_cycles_rise_usual", "minutes_per_active_day_usual", "short_sessions_prev_28d",
                "long_sessions_usual")
# Least-squares slope of daily minutes over the 28 days to F (x = 0..27, days without a row count as 0):
# (n * sum(x * m) - sum(x) * sum(m)) / (n * sum(x^2) - sum(x)^2) with n = 28, sum(x) = 378, sum(x^2) = 7098.
_SLOPE: Final = "(28 * dm28 - 378 * (m7 + m21)) / (28 * 7098 - 378 * 378)"


@dataclass
class FeatureFrame:
    household_id: np.ndarray     # uint64 [n]
    day: np.ndarray              # int64 [n] feature day, days since 1970-01-01 (local)
    x: np.ndarray                # float64 [n, len(FEATURES)] (nan where undefined)
    extra: dict[str, np.ndarray]
    label: np.ndarray            # int8 [n]: 1 ended within the horizon, 0 not, -1 unknown yet
    ended_day: np.ndarray        # int64 [n] days since 1970 of `ended` (0: not ended as far as known)

    def __len__(self) -> int:
        return len(self.household_id)

    def col(self, name: str) -> np.ndarray:
        return self.x[:, FEATURES.index(name)] if name in FEATURES else self.extra[name]

    def take(self, mask: np.ndarray) -> FeatureFrame:
        return FeatureFrame(self.household_id[mask], self.day[mask], self.x[mask],
                            {k: v[mask] for k, v in self.extra.items()}, self.label[mask], self.ended_day[mask])


def day_number(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def day_of(number: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(number))


def first_event_day(warehouse: Warehouse, settings: CrmSettings) -> int | None:
    """The local day number of the oldest event in the store (None: no events)."""
    off = settings.credit.utc_offset_minutes * MINUTE_MS
    got = warehouse.query_rows(f"SELECT count(), min(ts_ms) FROM {warehouse.database}.events")[0]
    return None if not got[0] else int((int(got[1]) + off) // DAY_MS)


def _ratio(a: str, b: str) -> str:
    """The profiles' trend rule: a / b capped, 1 when both are 0, the cap when only a is."""
    return f"multiIf(({b}) > 0, least(({a}) / ({b}), {TREND_CAP}), ({a}) > 0, {TREND_CAP}, 1)"


def stage_sql(db: str, stage: str, settings: CrmSettings, lo_day: int, hi_day: int) -> list[str]:
    """CREATE and INSERT of the per household and local day aggregates of days lo_day..hi_day."""
    c = settings.credit
    off = c.utc_offset_minutes * MINUTE_MS
    names = settings.dayparts.names
    prime = names.index("prime") + 1 if "prime" in names else 0
    hours = "[" + ", ".join(str(i + 1) for i in settings.dayparts.hour_table()) + "]"
    credited = f"kind = 'view' AND duration_s >= {int(c.min_view_s)}"
    secs = f"toFloat64(least(duration_s, {int(c.idle_cut_minutes) * 60}))"
    part = f"arrayElement({hours}, toUInt32(intDiv(modulo(ts_ms + {off}, {DAY_MS}), 3600000) + 1))"
    dev = (f"SELECT household_id, device_id, toInt64(intDiv(ts_ms + {off}, {DAY_MS})) AS d, "
           f"sumIf({secs}, {credited}) AS view_s, countIf({credited}) AS views, "
           f"countIf(kind = 'view' AND duration_s < {int(c.min_view_s)}) AS short_views, "
           f"sumIf({secs}, {credited} AND {part} = {prime}) AS prime_s, "
           f"countIf(kind = 'power' AND power_state = 1) AS power_ons, count() AS events, "
           f"countIf({credited} AND end_reason = 2) AS full_views, countIf(kind = 'tune') AS tunes, "
           f"countIf(kind = 'tune' AND tune_method = 1) AS zaps, "
           # sessions: each switch-on paired with the device's next power event of the day (its end)
           f"arraySort(groupArrayIf(ts_ms * 4 + power_state, kind = 'power')) AS p, "
           f"arrayFilter(i -> p[i] % 4 = 1 AND i < length(p) AND p[i + 1] % 4 != 1, arrayEnumerate(p)) AS ons, "
           f"arrayMap(i -> intDiv(p[i + 1], 4) - intDiv(p[i], 4), ons) AS lengths, "
           f"toUInt64(length(ons)) AS sessions, toFloat64(arraySum(lengths)) / 1000 AS session_s, "
           f"toUInt64(length(arrayFilter(x -> x <= {SHORT_SESSION_S * 1000}, lengths))) AS short_sessions "
           f"FROM {db}.events FINAL WHERE ts_ms >= {lo_day * DAY_MS - off} AND ts_ms < {(hi_day + 1) * DAY_MS - off} "
           f"GROUP BY household_id, device_id, d")
    return [
        f"CREATE TABLE {stage} (household_id UInt64, d Int64, view_s Float64, views UInt64, short_views UInt64, "
        f"prime_s Float64, power_ons UInt64, events UInt64, full_views UInt64, tunes UInt64, zaps UInt64, "
        f"sessions UInt64, session_s Float64, short_sessions UInt64) ENGINE = MergeTree() ORDER BY (household_id, d)",
        f"INSERT INTO {stage} SELECT household_id, d, sum(view_s), sum(views), sum(short_views), sum(prime_s), "
        f"sum(power_ons), sum(events), sum(full_views), sum(tunes), sum(zaps), sum(sessions), sum(session_s), "
        f"sum(short_sessions) FROM ({dev}) GROUP BY household_id, d",
    ]


def features_sql(db: str, stage: str, days: Sequence[int], horizon: int, known_by: int, data_start: int = 0) -> str:
    fs = "[" + ", ".join(str(int(f)) for f in days) + "]"
    w7, w14, w21, p28 = "d > f - 7", "d > f - 14", "d > f - 28 AND d <= f - 7", "d <= f - 28"
    viewing = f"""
        SELECT household_id, f,
               sumIf(view_s, {w7}) / 60 AS m7, sumIf(view_s, {w21}) / 60 AS m21, sumIf(view_s, {p28}) / 60 AS mp28,
               sumIf(view_s, {w14}) / 60 AS m14, countIf({w14}) AS act14,
               sumIf(view_s * (d - f + 27), d > f - 28) / 60 AS dm28,
               sumIf(power_ons, {w7}) AS on7, sumIf(power_ons, {w21}) AS on21, sumIf(power_ons, {p28}) AS onp28,
               countIf({w7}) AS act7, countIf({w21}) AS act21, countIf({p28}) AS actp28,
               sumIf(prime_s, {w7}) / 60 AS pr7, sumIf(prime_s, {w21}) / 60 AS pr21,
               sumIf(prime_s, {p28}) / 60 AS prp28,
               sumIf(short_views, {w7}) AS sh7, sumIf(short_views, {w21}) AS sh21, sumIf(short_views, {p28}) AS shp28,
               sumIf(views, {w7}) AS vw7, sumIf(views, {w21}) AS vw21, sumIf(views, {p28}) AS vwp28,
               sumIf(short_sessions, {w7}) AS ss7, sumIf(short_sessions, {w14}) AS ss14,
               sumIf(short_sessions, {w21}) AS ss21, sumIf(short_sessions, {p28}) AS ssp28,
               sumIf(full_views, {w7}) AS fv7, sumIf(full_views, {w14}) AS fv14, sumIf(full_views, {p28}) AS fvp28,
               sumIf(views, {w14}) AS vw14, sumIf(zaps, {w7}) AS zp7, sumIf(zaps, {w14}) AS zp14,
               sumIf(zaps, {p28}) AS zpp28, sumIf(tunes, {w14}) AS tn14, sumIf(tunes, {p28}) AS tnp28,
               sumIf(sessions, {w7}) AS se7, sumIf(sessions, {w14}) AS se14, sumIf(sessions, {p28}) AS sep28,
               sumIf(session_s, {w14}) / 60 AS sm14,
               maxIf(d, view_s > 0) AS last_view, max(d) AS last_event, min(d) AS first_event
        FROM (SELECT household_id, d, view_s, views, short_views, prime_s, power_ons, short_sessions, full_views,
                     zaps, tunes, sessions, session_s,
                     arrayJoin(arrayFilter(x -> x >= d AND x < d + {WINDOW_DAYS}, {fs})) AS f
              FROM {stage})
        GROUP BY household_id, f"""
    as_of = f"""
        SELECT household_id, f, argMax(status, day) AS status_f, argMax(products, day) AS products_f,
               argMax(monthly_fee_cents, day) AS fee_f
        FROM (SELECT household_id, day, status, products, monthly_fee_cents, arrayJoin({fs}) AS f
              FROM {db}.subscriber_history FINAL)
        WHERE toInt64(toUInt16(day)) <= f
        GROUP BY household_id, f"""
    record = f"""
        SELECT household_id, toInt64(toUInt16(activated)) AS act_d,
               if(status = 'ended', toInt64(toUInt16(ended)), toInt64(0)) AS end_d
        FROM {db}.subscribers FINAL"""
    pkg = "multiIf(" + ", ".join(f"has(codes, '{p}'), {i}" for i, p in enumerate(PACKAGES)) + f", {len(PACKAGES)})"
    nan = "toFloat64(nan)"
    sql = f"""
        SELECT household_id, f, end_d,
               multiIf(end_d > f AND end_d <= f + {horizon} AND end_d <= {known_by}, 1,
                       f + {horizon} <= {known_by}, 0, -1) AS label,
               m7 / 7 AS minutes_day_7d, m21 / 21 AS minutes_day_21d,
               {_ratio('m7 / 7', 'm21 / 21')} AS trend_7_21, {_ratio('m7 + m21', 'mp28')} AS trend_28_28,
               {_ratio('on7 / 7', 'on21 / 21')} AS sessions_trend,
               toFloat64(act7) AS active_days_7d, act21 / 3 AS active_days_21d,
               if(m7 > 0, pr7 / m7, {nan}) AS prime_share_7d, if(m21 > 0, pr21 / m21, {nan}) AS prime_share_21d,
               prime_share_21d - prime_share_7d AS prime_share_drop,
               if(sh7 + vw7 > 0, sh7 / (sh7 + vw7), {nan}) AS short_share_7d,
               if(sh21 + vw21 > 0, sh21 / (sh21 + vw21), {nan}) AS short_share_21d,
               short_share_7d - short_share_21d AS short_share_rise,
               if(act7 > 0, on7 / act7, {nan}) AS power_cycles_7d,
               if(act21 > 0, on21 / act21, {nan}) AS power_cycles_21d,
               power_cycles_7d - power_cycles_21d AS power_cycles_rise,
               if(on7 > 0, m7 / on7, {nan}) AS minutes_per_session_7d,
               toFloat64(if(last_view > 0, f - last_view, {WINDOW_DAYS})) AS days_since_view,
               toFloat64(if(last_event > 0, f - last_event, {WINDOW_DAYS})) AS days_since_event,
               toFloat64(if(first_event > 0, f - first_event + 1, 0)) AS history_days,
               toFloat64(f - act_d) AS tenure_days, fee_f / 100 AS monthly_fee,
               toFloat64(length(codes)) AS products, toFloat64({pkg}) AS package,
               toFloat64(has(codes, 'hd')) AS hd, toFloat64(has(codes, 'multiroom')) AS multiroom,
               toFloat64(status_f = 'suspended') AS suspended,
               {_ratio('m7 / 7', 'mp28 / 28')} AS trend_7_usual, {_ratio('m14 / 14', 'mp28 / 28')} AS trend_14_usual,
               {_ratio('on7 / 7', 'onp28 / 28')} AS sessions_usual,
               if(mp28 > 0, prp28 / mp28, {nan}) - prime_share_7d AS prime_drop_usual,
               short_share_7d - if(shp28 + vwp28 > 0, shp28 / (shp28 + vwp28), {nan}) AS short_rise_usual,
               power_cycles_7d - if(actp28 > 0, onp28 / actp28, {nan}) AS power_cycles_rise_usual,
               {_ratio('if(act14 > 0, m14 / act14, 0)', 'if(actp28 > 0, mp28 / actp28, 0)')}
                   AS minutes_per_active_day_usual,
               if(m7 + m21 > 0, ({_SLOPE}) / ((m7 + m21) / 28), {nan}) AS slope_28d,
               toFloat64(ss7) AS short_sessions_7d, toFloat64(ss14) AS short_sessions_14d,
               toFloat64(ss7 + ss21) AS short_sessions_28d, toFloat64(ssp28) AS short_sessions_prev_28d,
               if(act7 > 0, ss7 / act7, {nan}) AS short_sessions_day_7d,
               if(act7 + act21 > 0, (ss7 + ss21) / (act7 + act21), {nan}) AS short_sessions_day_28d,
               if(vw7 > 0, fv7 / vw7, {nan}) AS full_share_7d, if(vw14 > 0, fv14 / vw14, {nan}) AS full_share_14d,
               if(vwp28 > 0, fvp28 / vwp28, {nan}) AS full_share_usual,
               full_share_usual - full_share_14d AS full_drop_usual,
               if(se7 > 0, zp7 / se7, {nan}) AS zaps_session_7d, if(se14 > 0, zp14 / se14, {nan}) AS zaps_session_14d,
               if(tn14 > 0, zp14 / tn14, {nan}) AS zap_share_14d,
               zap_share_14d - if(tnp28 > 0, zpp28 / tnp28, {nan}) AS zap_rise_usual,
               if(se14 > 0, sm14 / se14, {nan}) AS session_minutes_14d,
               if(se14 > ss14 AND sep28 > ssp28 AND mp28 > 0,
                  (m14 / (se14 - ss14)) / (mp28 / (sep28 - ssp28)), {nan}) AS session_length_usual,
               if(sep28 > ssp28, ((se14 - ss14) / 14) / ((sep28 - ssp28) / 28), {nan}) AS long_sessions_usual,
               if(act7 > 0, (se7 - ss7) / act7, {nan}) AS long_sessions_day_7d,
               toFloat64(on7) AS sessions_7d, toFloat64(on21) AS sessions_21d, m7 AS minutes_7d,
               m21 AS minutes_21d, mp28 AS minutes_prev_28d, toFloat64(onp28) AS sessions_prev_28d
        FROM (
            SELECT *, arrayFilter(x -> x != '', splitByChar(';', products_f)) AS codes
            FROM (SELECT * FROM ({as_of}) AS s ANY LEFT JOIN ({record}) AS r USING household_id)
            WHERE status_f != 'ended' AND act_d <= f
        ) AS sr ANY LEFT JOIN ({viewing}) AS v USING (household_id, f)
        ORDER BY f, household_id"""
    # Before 8 weeks of data the "usual level" window is partly empty: undefined, not a fall to zero
    # (training's early feature days would otherwise teach the model a pattern test days never show).
    full = f"f >= {int(data_start) + WINDOW_DAYS - 1}"
    for name in USUAL:
        sql = sql.replace(f" AS {name},", f" AS {name}_raw, if({full}, {name}_raw, toFloat64(nan)) AS {name},", 1)
    return sql


def feature_frame(warehouse: Warehouse, days: Sequence[int], settings: CrmSettings, *, known_by: int,
                  on_step: Callable[[str], None] | None = None) -> FeatureFrame:
    """Features (and labels as known on day `known_by`) of every subscriber on each feature day."""
    db = warehouse.database
    stage = f"{db}.crm_stage_{uuid.uuid4().hex[:12]}"
    lo, hi = min(days) - WINDOW_DAYS + 1, max(days)
    try:
        for sql in stage_sql(db, stage, settings, lo, hi):
            warehouse.execute(sql)
        if on_step:
            on_step("staged")
        start = first_event_day(warehouse, settings) or 0
        cols = warehouse.query_columns(features_sql(db, stage, days, settings.churn.horizon_days, known_by, start))
    finally:
        warehouse.execute(f"DROP TABLE IF EXISTS {stage}")
    if on_step:
        on_step("features")
    n = len(cols["household_id"])
    x = np.column_stack([np.asarray(cols[name], dtype=np.float64) for name in FEATURES]) if n else \
        np.zeros((0, len(FEATURES)))
    return FeatureFrame(np.asarray(cols["household_id"], dtype=np.uint64), np.asarray(cols["f"], dtype=np.int64), x,
                        {k: np.asarray(cols[k], dtype=np.float64) for k in EXTRA},
                        np.asarray(cols["label"], dtype=np.int8), np.asarray(cols["end_d"], dtype=np.int64))
