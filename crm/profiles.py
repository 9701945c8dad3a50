"""Household profiles: one row per household and day in `household_profiles`, built in ClickHouse.

    build_profiles(warehouse, date(2026, 12, 1), settings, catalogue)   # INSERT ... SELECT, idempotent

For the (local) day D, from credited viewing (crm.credit) in the 90 days ending with D:
minutes over 7/28/90 days; over 28 days: minutes by daypart (`dayparts.names` order) and by
guide category, the top channels and series (content ids), minutes on programmes matching each
catalogue match rule (`match_minutes`, catalogue order), VOD plays, active days (days with any
event), zap share (views shorter than the credit threshold / all views), recommendation clicks;
`trend` = last 7 days' daily mean / the previous 21 days' (1 when both are 0, 10 when only the
last week has viewing, capped at 10); `days_since_view` since the last credited view (9999: none
in 90 days). Windows are assigned by a stretch's start. Households: those with any event in the
90 days and every subscriber not ended (so a silent subscriber is profiled, as dormant). The
subscriber record (region, status, products, fee, tenure, birth month) is copied into the row, so
segments and tags read one table.

The build stages the window's events once (deduplicated with FINAL, sorted by shard) in a
temporary `crm_stage_<random>` table, then runs one INSERT ... SELECT per shard of households
(`profile.shard_households`): bounded memory and statement time, and each shard reads only its
own rows. The stage is dropped at the end (a crash can leave one behind: it is safe to drop).

18.16 shapes the SQL: one JOIN per SELECT, no sumMap over String keys (categories are a grouping
level of their own, channels and series are numeric sumMaps).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any

from crm.catalogue import Catalogue
from crm.credit import lookback_ms, pieces_sql, shard_clause
from crm.ratings import day_bounds
from crm.settings import DAY_MS, MINUTE_MS, CrmSettings
from warehouse import Warehouse
from warehouse.columns import KIND_ENUM

NO_VIEW_DAYS = 9999
TREND_CAP = 10.0


def profile_sql(db: str, day: dt.date, settings: CrmSettings, catalogue: Catalogue,
                shard: tuple[int, int] | None = None, source: str = "") -> tuple[str, dict[str, Any]]:
    """The INSERT ... SELECT that writes the day's profiles (of one shard of households), and its
    parameters. `source`: the events (default `db.events FINAL`; build_profiles stages a copy)."""
    source = source or f"{db}.events FINAL"
    part = shard_clause(shard)
    _, t_end = day_bounds(day, settings)
    t90, t28, t7 = t_end - 90 * DAY_MS, t_end - 28 * DAY_MS, t_end - 7 * DAY_MS
    off = settings.credit.utc_offset_minutes * MINUTE_MS
    hours = "[" + ", ".join(str(i + 1) for i in settings.dayparts.hour_table()) + "]"
    n_parts = len(settings.dayparts.names)
    params: dict[str, Any] = {"day": day.isoformat()}
    matches = []
    for i, rule in enumerate(catalogue.matches):
        conds = []
        for j, word in enumerate(rule.title_contains):
            params[f"m{i}t{j}"] = word
            conds.append(f"positionCaseInsensitiveUTF8(title, %(m{i}t{j})s) > 0")
        for j, word in enumerate(rule.category_equals):
            params[f"m{i}c{j}"] = word.lower()
            conds.append(f"lowerUTF8(category) = %(m{i}c{j})s")
        matches.append(" OR ".join(conds) or "0")
    inner_parts = ", ".join(f"sumIf(ms, in28 AND part = {p + 1}) AS d{p}" for p in range(n_parts))
    inner_matches = "".join(f", sumIf(ms, in28 AND ({m})) AS x{i}" for i, m in enumerate(matches))
    outer_parts = "[" + ", ".join(f"sum(d{p}) / {MINUTE_MS}" for p in range(n_parts)) + "]"
    outer_matches = "[" + ", ".join(f"sum(x{i}) / {MINUTE_MS}" for i in range(len(matches))) + "]"
    if not matches:
        outer_matches = "emptyArrayFloat64()"
    top = settings.profile.top_n
    pieces = pieces_sql(db, settings.credit, t90, t_end, shard=shard, source=source)
    minutes = f"""
        SELECT household_id, sum(m90) / {MINUTE_MS} AS minutes_90d, sum(m28) / {MINUTE_MS} AS minutes_28d,
               sum(m7) / {MINUTE_MS} AS minutes_7d, {outer_parts} AS daypart_minutes_28d,
               groupArrayIf(category, m28 > 0) AS category_names,
               groupArrayIf(m28 / {MINUTE_MS}, m28 > 0) AS category_minutes,
               sumMap(chm.1, chm.2) AS channels, sumMap(com.1, com.2) AS contents,
               {outer_matches} AS match_minutes, max(last_ms) AS last_view_ms
        FROM (
            SELECT household_id, category, sum(ms) AS m90, sumIf(ms, in28) AS m28, sumIf(ms, start_ms >= {t7}) AS m7,
                   {inner_parts}{inner_matches},
                   sumMapIf([channel_id], [toFloat64(ms)], in28) AS chm,
                   sumMapIf([content_id], [toFloat64(ms)], in28 AND content_id > 0) AS com,
                   max(start_ms) AS last_ms
            FROM (
                SELECT household_id, channel_id, content_id, category, title, start_ms, ms, start_ms >= {t28} AS in28,
                       arrayElement({hours}, toUInt32(intDiv(modulo(start_ms + {off}, {DAY_MS}), 3600000) + 1)) AS part
                FROM (
                    SELECT household_id, channel_id, programme_id, start_ms,
                           least(stop_ms, {t_end}) - greatest(start_ms, {t90}) AS ms
                    FROM ({pieces})
                    WHERE start_ms < {t_end} AND stop_ms > {t90}
                ) AS v ANY LEFT JOIN (
                    SELECT programme_id, content_id, category, title FROM {db}.programmes FINAL
                ) AS p USING programme_id
            )
            GROUP BY household_id, category
        )
        GROUP BY household_id"""
    activity = f"""
        SELECT household_id, sum(vod) AS vod_plays_28d, sum(days) AS active_days_28d, sum(zaps) AS zaps,
               sum(views) AS views, sum(clicks) AS rec_clicks_28d
        FROM (
            SELECT household_id, countIf(kind = 'vod_play' AND ts_ms >= {t28}) AS vod,
                   uniqExactIf(intDiv(ts_ms + {off}, {DAY_MS}), ts_ms >= {t28}) AS days,
                   countIf(kind = 'view' AND duration_s < {int(settings.credit.min_view_s)} AND ts_ms >= {t28}) AS zaps,
                   countIf(kind = 'view' AND ts_ms >= {t28}) AS views,
                   countIf(kind = 'rec_click' AND ts_ms >= {t28}) AS clicks
            FROM {source} WHERE ts_ms >= {t90} AND ts_ms < {t_end}{part}
            GROUP BY household_id
            UNION ALL
            SELECT household_id, toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0)
            FROM {db}.subscribers FINAL WHERE (status != 'ended' OR ended >= toDate(%(day)s)){part}
        )
        GROUP BY household_id"""
    sql = f"""
        INSERT INTO {db}.household_profiles (household_id, day, minutes_7d, minutes_28d, minutes_90d,
            daypart_minutes_28d, category_names, category_minutes, top_channels, top_series, match_minutes,
            vod_plays_28d, active_days_28d, zap_share_28d, rec_clicks_28d, prime_share_28d, trend,
            days_since_view, computed_ms, region, status, products, monthly_fee_cents, tenure_days, birth_month)
        SELECT household_id, toDate(%(day)s), minutes_7d, minutes_28d, minutes_90d, daypart_minutes_28d,
               category_names, category_minutes,
               arraySlice(arraySort((k, v) -> -v, channels.1, channels.2), 1, {top}),
               arraySlice(arraySort((k, v) -> -v, contents.1, contents.2), 1, {top}),
               match_minutes, toUInt32(vod_plays_28d), toUInt16(active_days_28d),
               if(views > 0, zaps / views, 0), toUInt32(rec_clicks_28d),
               if(minutes_28d > 0, {_prime(settings)} / minutes_28d, 0),
               multiIf(minutes_28d - minutes_7d > 0, least((minutes_7d / 7) / ((minutes_28d - minutes_7d) / 21),
                       {TREND_CAP}), minutes_7d > 0, {TREND_CAP}, 1),
               toUInt16(if(last_view_ms > 0, intDiv({t_end} - 1 - last_view_ms, {DAY_MS}), {NO_VIEW_DAYS})),
               {int(time.time() * 1000)}, region, status, products, monthly_fee_cents,
               toInt32(if(activated_days > 0, toInt64(toUInt16(toDate(%(day)s))) - activated_days, 0)), birth_month
        FROM (
            SELECT * FROM ({activity}) AS a
            ANY LEFT JOIN ({minutes}) AS m USING household_id
        ) AS am
        ANY LEFT JOIN (
            SELECT household_id, region, status, products, monthly_fee_cents, birth_month,
                   toInt64(toUInt16(activated)) AS activated_days
            FROM {db}.subscribers FINAL WHERE 1{part}
        ) AS s USING household_id"""
    return sql, params


def _prime(settings: CrmSettings) -> str:
    """Minutes of the 'prime' daypart (19-23 by default) in daypart_minutes_28d, or 0 without one."""
    names = settings.dayparts.names
    return f"daypart_minutes_28d[{names.index('prime') + 1}]" if "prime" in names else "0"


def shard_count(warehouse: Warehouse, day: dt.date, settings: CrmSettings) -> int:
    """Shards of about `profile.shard_households` households (an approximate count of the window's)."""
    _, t_end = day_bounds(day, settings)
    n = int(warehouse.query_rows(f"SELECT uniq(household_id) FROM {warehouse.database}.events "
                                 f"WHERE ts_ms >= {t_end - 90 * DAY_MS} AND ts_ms < {t_end}")[0][0] or 0)
    return max(1, -(-n // settings.profile.shard_households))


def build_profiles(warehouse: Warehouse, day: dt.date, settings: CrmSettings, catalogue: Catalogue,
                   on_shard: Callable[[int, int], None] | None = None) -> int:
    """Write the day's profiles (re-running replaces them), one shard of households per statement
    (bounded memory and statement time; `on_shard(done, total)` after each); returns how many
    households were profiled."""
    db = warehouse.database
    shards = shard_count(warehouse, day, settings)
    stage = f"{db}.crm_stage_{uuid.uuid4().hex[:12]}"
    _, t_end = day_bounds(day, settings)
    # The window's events, deduplicated once (FINAL is the costly part of reading `events`) and
    # sorted by shard, so each shard's statement reads only its own households, without FINAL.
    warehouse.execute(f"CREATE TABLE {stage} (household_id UInt64, kind {KIND_ENUM}, ts_ms Int64, "
                      f"channel_id UInt32, programme_id UInt64, duration_s UInt32) ENGINE = MergeTree() "
                      f"ORDER BY (modulo(household_id, {shards}), household_id, ts_ms)")
    try:
        warehouse.execute(f"INSERT INTO {stage} SELECT household_id, kind, ts_ms, channel_id, programme_id, "
                          f"duration_s FROM {db}.events FINAL WHERE ts_ms >= "
                          f"{t_end - 90 * DAY_MS - lookback_ms(settings.credit)} AND ts_ms < {t_end}")
        params: dict[str, Any] = {}
        for i in range(shards):
            sql, params = profile_sql(db, day, settings, catalogue, (i, shards) if shards > 1 else None, stage)
            warehouse.query_rows(sql, params)  # INSERT ... SELECT with parameters (execute() takes none)
            if on_shard:
                on_shard(i + 1, shards)
    finally:
        warehouse.execute(f"DROP TABLE IF EXISTS {stage}")
    return int(warehouse.query_rows(f"SELECT count() FROM {warehouse.database}.household_profiles FINAL "
                                    "WHERE day = toDate(%(day)s)", params)[0][0])
