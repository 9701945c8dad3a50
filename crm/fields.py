"""The household fields segments and tag rules may name: a whitelist, each with its SQL.

`base_sql(db)` is one row per profiled household of a day (`%(day)s`): its profile joined with
its subscriber record. Field names are the only identifiers user text can select, and only by
looking them up here; values always travel as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Field:
    sql: str
    kind: str          # "number" or "text"
    doc: str
    subscriber: bool = False   # from the subscriber record: meaningless for households without one


FIELDS: Final[dict[str, Field]] = {
    "minutes_7d": Field("minutes_7d", "number", "credited minutes, last 7 days"),
    "minutes_28d": Field("minutes_28d", "number", "credited minutes, last 28 days"),
    "minutes_90d": Field("minutes_90d", "number", "credited minutes, last 90 days"),
    "active_days_28d": Field("active_days_28d", "number", "days with any event, last 28 days"),
    "vod_plays_28d": Field("vod_plays_28d", "number", "VOD plays, last 28 days"),
    "rec_clicks_28d": Field("rec_clicks_28d", "number", "recommendation clicks, last 28 days"),
    "zap_share_28d": Field("zap_share_28d", "number", "share of views under the credit threshold"),
    "prime_share_28d": Field("prime_share_28d", "number", "share of minutes in prime time"),
    "trend": Field("trend", "number", "last 7 days' daily minutes / previous 21 days'"),
    "days_since_view": Field("days_since_view", "number", "days since the last credited view (9999: none)"),
    "monthly_fee": Field("monthly_fee_cents / 100", "number", "monthly fee from the subscriber extract", True),
    "tenure_days": Field("tenure_days", "number", "days since activation", True),
    "birth_month": Field("birth_month", "number", "1-12, 0 = unknown", True),
    "value_score": Field("value_score", "number", "monthly fee x minutes_28d", True),
    "region": Field("region", "text", "from the subscriber extract"),
    "status": Field("status", "text", "active, suspended, ended ('' without a subscriber record)"),
}


def base_sql(db: str) -> str:
    """Profiles of day %(day)s: each row carries its subscriber record as of that day, so this is one
    table read (no join: at 1M households a join with `subscribers` was most of a segment count)."""
    return f"""
        SELECT household_id, minutes_7d, minutes_28d, minutes_90d, active_days_28d, vod_plays_28d,
               rec_clicks_28d, zap_share_28d, prime_share_28d, trend, days_since_view, monthly_fee_cents,
               tenure_days, birth_month, monthly_fee_cents / 100 * minutes_28d AS value_score, region, status,
               products
        FROM {db}.household_profiles FINAL WHERE day = toDate(%(day)s)"""
