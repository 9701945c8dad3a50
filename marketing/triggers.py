"""Occasions: the moments a campaign may send, from its schedule or trigger.

    for occasion in occasions(warehouse, campaign, now, zone): ...

An occasion has a key unique within its campaign ("once", "daily:2026-12-03",
"airing:12:1764788400000", "alerts:2026-12-03", ...), a time after which it closes (deferred sends
are retried until then), the template values and action fields it brings, and optionally the
households it concerns (a trigger about particular households narrows the segment).

- no schedule and no trigger: one occasion, "once", open while the campaign is;
- `[schedule] daily = "HH:MM"`: today's, from that local time to local midnight;
- guide: each airing that starts within `within_hours` (and, with `starts_between = "18:00-23:00"`,
  at a local time in that window) and matches `category` (case-insensitive equality) and
  `title_contains` (case-insensitive substring); it closes when the airing starts;
- churn_alert: each day's `churn_alerts` since the campaign started, open three days;
- behaviour: `first_vod_play` (households whose first VOD play was in the last 7 days) or
  `days_without_viewing` (households not seen for `days` days), today's, open until midnight;
- birthday: households whose `birth_month` (subscriber extract) is this month, open all month.

Whether a household is contacted at an occasion is the engine's business (waves, states, caps):
at most once per occasion — the next wave waits for the next airing, day, alert or month — except
for a campaign without schedule or trigger, whose one occasion lasts and carries every wave.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from marketing.campaign import Campaign, Trigger
from marketing.caps import parse_quiet_hours
from warehouse import Warehouse

DAY_MS: Final = 86_400_000
ALERT_OPEN_DAYS: Final = 3
NEW_VOD_DAYS: Final = 7


@dataclass(frozen=True)
class Occasion:
    key: str
    closes_ms: int
    context: dict[str, str] = field(default_factory=dict)   # template values: title, channel, start, product
    action: dict[str, Any] = field(default_factory=dict)    # merged into the variant's action
    households: np.ndarray | None = None                    # uint64; None = the whole segment
    waves_here: bool = False                                # later waves may come at this same occasion


def occasions(warehouse: Warehouse, campaign: Campaign, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> list[Occasion]:
    """The campaign's open occasions at `now` (aware datetime)."""
    if not campaign.active_at(now):
        return []
    now_ms = int(now.timestamp() * 1000)
    end_ms = int(campaign.end.timestamp() * 1000) if campaign.end else now_ms + 3650 * DAY_MS
    base = {"product": campaign.product}
    if campaign.schedule is not None:
        local = now.astimezone(zone)
        fire = dt.datetime.combine(local.date(), campaign.schedule.time, zone)
        if local < fire:
            return []
        midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone)
        return [Occasion(f"daily:{local.date().isoformat()}", min(_ms(midnight), end_ms), base)]
    trigger = campaign.trigger
    if trigger is None:
        return [Occasion("once", end_ms, base, waves_here=True)]
    if trigger.kind == "guide":
        return _airings(warehouse, trigger, now_ms, zone, base)
    if trigger.kind == "churn_alert":
        start_ms = int(campaign.start.timestamp() * 1000) if campaign.start else 0
        return _alerts(warehouse, start_ms, now_ms, base)
    local = now.astimezone(zone)
    tonight = _ms(dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone))
    if trigger.kind == "behaviour":
        who = _behaviour(warehouse, trigger, now_ms)
        return [Occasion(f"{trigger.behaviour}:{local.date().isoformat()}", tonight, base, {}, who)]
    month_end = dt.datetime.combine((local.replace(day=28) + dt.timedelta(days=4)).replace(day=1).date(), dt.time(),
                                    zone)
    who = warehouse.query_columns(f"SELECT household_id FROM {warehouse.database}.subscribers FINAL "
                                  "WHERE birth_month = %(m)s", {"m": local.month})["household_id"]
    return [Occasion(f"birthday:{local:%Y-%m}", _ms(month_end), base, {}, np.asarray(who, dtype=np.uint64))]


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


def _airings(warehouse: Warehouse, trigger: Trigger, now_ms: int, zone: zoneinfo.ZoneInfo,
             base: dict[str, str]) -> list[Occasion]:
    db = warehouse.database
    # One JOIN per SELECT: ClickHouse 18.16 has no multiple JOINs.
    rows = warehouse.query_rows(
        f"SELECT a.channel_id, a.start_ms, a.programme_id, a.title, a.category, c.name FROM ("
        f"  SELECT channel_id, start_ms, programme_id, p.title AS title, p.category AS category FROM ("
        f"    SELECT channel_id, start_ms, programme_id FROM {db}.airings FINAL"
        f"    WHERE start_ms > %(now)s AND start_ms <= %(until)s) AS x"
        f"  ANY LEFT JOIN (SELECT programme_id, title, category FROM {db}.programmes FINAL) AS p USING programme_id"
        f") AS a ANY LEFT JOIN (SELECT channel_id, name FROM {db}.channels FINAL) AS c USING channel_id "
        f"ORDER BY a.start_ms, a.channel_id",
        {"now": now_ms, "until": now_ms + int(trigger.within_hours * 3_600_000)})
    window = parse_quiet_hours(trigger.starts_between)
    out = []
    for channel_id, start_ms, programme_id, title, category, name in rows:
        if trigger.category and str(category).casefold() != trigger.category.casefold():
            continue
        if trigger.title_contains and trigger.title_contains.casefold() not in str(title).casefold():
            continue
        start = dt.datetime.fromtimestamp(int(start_ms) / 1000, zone)
        if window is not None and not _within(window, start.hour * 60 + start.minute):
            continue
        out.append(Occasion(
            f"airing:{int(channel_id)}:{int(start_ms)}", int(start_ms),
            {**base, "title": str(title), "channel": str(name or channel_id), "start": f"{start:%H:%M}"},
            {"channel_id": int(channel_id), "programme_id": int(programme_id), "start": int(start_ms)}))
    return out


def _within(window: tuple[int, int], minute: int) -> bool:
    begin, end = window
    return begin <= minute < end if begin < end else (minute >= begin or minute < end)


def _alerts(warehouse: Warehouse, start_ms: int, now_ms: int, base: dict[str, str]) -> list[Occasion]:
    db = warehouse.database
    since = max(start_ms, now_ms - ALERT_OPEN_DAYS * DAY_MS)
    got = warehouse.query_columns(
        f"SELECT household_id, toString(day) AS day FROM {db}.churn_alerts FINAL "
        "WHERE created_ms >= %(since)s ORDER BY day, household_id", {"since": since})
    if len(got["household_id"]) == 0:
        return []
    days = np.asarray(got["day"], dtype=object)
    ids = np.asarray(got["household_id"], dtype=np.uint64)
    out = []
    for day in sorted(set(days.tolist())):
        opened = _ms(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC))
        closes = opened + (ALERT_OPEN_DAYS + 1) * DAY_MS
        out.append(Occasion(f"alerts:{day}", closes, base, {}, ids[days == day]))
    return out


def _behaviour(warehouse: Warehouse, trigger: Trigger, now_ms: int) -> np.ndarray:
    db = warehouse.database
    if trigger.behaviour == "first_vod_play":
        got = warehouse.query_columns(
            f"SELECT household_id FROM {db}.events WHERE kind = 'vod_play' GROUP BY household_id "
            "HAVING min(ts_ms) >= %(since)s", {"since": now_ms - NEW_VOD_DAYS * DAY_MS})
    else:  # days_without_viewing, as of the newest profiled day
        got = warehouse.query_columns(
            f"SELECT household_id FROM {db}.household_profiles FINAL WHERE day = "
            f"(SELECT max(day) FROM {db}.household_profiles) AND days_since_view >= %(days)s",
            {"days": trigger.days})
    return np.asarray(got["household_id"], dtype=np.uint64)
