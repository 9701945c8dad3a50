"""Reasons in words: the features that raised a household's risk most, as sentences.

    reasons(frame, contributions, limit=3)   # -> list of lists of sentences, most important first

Contributions (log-odds, TreeSHAP) are summed per *topic* — the features that say one thing
(viewing volume, silence, sessions, prime time, fragments, power cycles and sessions of a few minutes,
tenure, price, products)
— and the topics that raised the risk (sum > 0.05) are worded from the household's own values,
largest first: "viewing down 62 % on the previous three weeks", "no viewing for 9 days",
"switched the box on for only a few minutes 6 times in two weeks (was 0)".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from crm.churn.features import FEATURES, PACKAGES, FeatureFrame

MIN_CONTRIBUTION: Final = 0.05

TOPICS: Final[dict[str, tuple[str, ...]]] = {
    "viewing": ("minutes_day_7d", "minutes_day_21d", "trend_7_21", "trend_28_28", "minutes_per_session_7d",
                "trend_7_usual", "trend_14_usual", "minutes_per_active_day_usual", "slope_28d",
                "session_minutes_14d", "session_length_usual"),
    "silence": ("days_since_view", "days_since_event"),
    "sessions": ("sessions_trend", "active_days_7d", "active_days_21d", "sessions_usual", "long_sessions_usual",
                 "long_sessions_day_7d"),
    "prime": ("prime_share_7d", "prime_share_drop", "prime_drop_usual"),
    "fragments": ("short_share_7d", "short_share_rise", "short_rise_usual", "full_share_7d", "full_share_14d",
                  "full_share_usual", "full_drop_usual", "zaps_session_7d", "zaps_session_14d", "zap_share_14d",
                  "zap_rise_usual"),
    "cycles": ("power_cycles_7d", "power_cycles_rise", "power_cycles_rise_usual", "short_sessions_7d",
               "short_sessions_14d", "short_sessions_28d", "short_sessions_prev_28d", "short_sessions_day_7d",
               "short_sessions_day_28d"),
    "tenure": ("tenure_days", "history_days"),
    "price": ("monthly_fee",),
    "products": ("products", "package", "hd", "multiroom", "suspended"),
}
_INDEX: Final = {t: [FEATURES.index(f) for f in fs] for t, fs in TOPICS.items()}


def _pct(x: float) -> int:
    return round(100 * x)


def _viewing(r: dict[str, float]) -> str:
    now, before, usual = r["minutes_day_7d"], r["minutes_day_21d"], r["minutes_prev_28d"] / 28
    # the three-week comparison when it shows a clear fall (or the only one); else a month earlier
    if before > 0 and now < before and (now < 0.85 * before or now >= usual):
        return f"viewing down {_pct(1 - now / before)} % on the previous three weeks"
    if usual > 0 and now < usual:
        return f"viewing down {_pct(1 - now / usual)} % on a month earlier"
    return f"little viewing: {now:.0f} minutes a day over the last week"


def _silence(r: dict[str, float]) -> str:
    days = int(r["days_since_view"])
    if days >= 56:
        return "no viewing in the last 8 weeks"
    return f"no viewing for {days} days" if days >= 2 else "watched yesterday, but less"


def _sessions(r: dict[str, float]) -> str:
    now, before, usual = r["sessions_7d"] / 7, r["sessions_21d"] / 21, r["sessions_prev_28d"] / 28
    if before > 0 and now < 0.9 * before:
        return f"switched on {_pct(1 - now / before)} % less often than in the previous three weeks"
    if usual > 0 and now < 0.9 * usual:
        return f"switched on {_pct(1 - now / usual)} % less often than a month earlier"
    if r["active_days_7d"] < 7:
        return f"watched on {int(r['active_days_7d'])} of the last 7 days"
    return f"switched on {int(r['sessions_7d'])} times in the last 7 days"


def _prime(r: dict[str, float]) -> str:
    now, before = r["prime_share_7d"], r["prime_share_21d"]
    if np.isnan(now):
        return "no prime-time viewing last week"
    if not np.isnan(before) and now < before:
        return f"prime-time share of viewing down from {_pct(before)} % to {_pct(now)} %"
    return f"only {_pct(now)} % of viewing in prime time"


def _fragments(r: dict[str, float]) -> str:
    full, usual = r["full_share_14d"], r["full_share_usual"]
    if not np.isnan(full) and not np.isnan(usual) and full < usual - 0.05:
        return f"watched {_pct(full)} % of programmes to the end (was {_pct(usual)} %)"
    now, before = r["short_share_7d"], r["short_share_21d"]
    if not np.isnan(now) and not np.isnan(before) and now > before:
        return f"{_pct(now)} % of views under a minute (was {_pct(before)} %)"
    return f"{_pct(now)} % of views under a minute" if not np.isnan(now) else "no programme watched last week"


def _cycles(r: dict[str, float]) -> str:
    short, short_before = int(r["short_sessions_14d"]), r["short_sessions_prev_28d"]
    if short >= 2:
        was = f" (was {short_before / 2:.0f})" if not np.isnan(short_before) and short_before / 2 < short else ""
        return f"switched the box on for only a few minutes {short} times in two weeks{was}"
    now, before = r["power_cycles_7d"], r["power_cycles_21d"]
    if np.isnan(now):
        return "box not switched on last week"
    if not np.isnan(before) and now > before:
        return f"box switched on {now:.1f} times a viewing day (was {before:.1f})"
    return f"box switched on {now:.1f} times a viewing day"


def _tenure(r: dict[str, float]) -> str:
    days = int(r["tenure_days"])
    return f"subscribed for only {days // 30} months" if days < 365 else f"subscribed for {days / 365:.1f} years"


def _price(r: dict[str, float]) -> str:
    return f"pays {r['monthly_fee']:.2f} a month"


def _products(r: dict[str, float]) -> str:
    pkg = int(r["package"])
    name = PACKAGES[pkg] if 0 <= pkg < len(PACKAGES) else "other"
    if r["suspended"] > 0:
        return "subscription suspended"
    return f"{name} package" + ("" if r["multiroom"] > 0 else ", one box") + ("" if r["hd"] > 0 else ", no HD")


WORDS: Final[dict[str, Callable[[dict[str, float]], str]]] = {
    "viewing": _viewing, "silence": _silence, "sessions": _sessions, "prime": _prime, "fragments": _fragments,
    "cycles": _cycles, "tenure": _tenure, "price": _price, "products": _products}


def topic_contributions(contributions: np.ndarray) -> np.ndarray:
    """[n, topics] summed contributions, topics in TOPICS order."""
    return np.stack([contributions[:, idx].sum(axis=1) for idx in _INDEX.values()], axis=1) \
        if len(contributions) else np.zeros((0, len(TOPICS)))


def reasons(frame: FeatureFrame, contributions: np.ndarray, limit: int = 3,
            rows: np.ndarray | None = None) -> list[list[str]]:
    """Sentences for the households at `rows` (default all), most important first."""
    topics = list(TOPICS)
    by_topic = topic_contributions(contributions)
    rows_ = np.arange(len(frame)) if rows is None else rows
    names = list(FEATURES) + list(frame.extra)
    cols = [frame.x[:, i] for i in range(len(FEATURES))] + list(frame.extra.values())
    out = []
    for i in rows_.tolist():
        order = np.argsort(-by_topic[i], kind="stable")
        picked = [topics[t] for t in order[:limit] if by_topic[i, t] > MIN_CONTRIBUTION]
        if picked:
            r = {n: float(c[i]) for n, c in zip(names, cols, strict=True)}
            out.append([WORDS[t](r) for t in picked])
        else:
            out.append([])
    return out
