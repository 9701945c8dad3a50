"""The campaign file (../shared/CONTRACTS.md, "Marketing"): parse, validate, keep as text.

    campaign = parse_campaign(Path("euro-final.toml").read_text())
    campaign.trigger.kind            # "guide"
    campaign.variants[0].render(context)

Every problem in a file is reported at once (`CampaignError` with one line per problem); the
store keeps the file's text as written, so `show` prints what the operator wrote.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import tomllib
from dataclasses import dataclass, field
from typing import Any, Final

from marketing.caps import parse_quiet_hours
from marketing.errors import CampaignError

ID: Final = re.compile(r"[a-z0-9-]{1,64}")
VARIANT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
ACTIONS: Final = ("tune", "record", "offer", "info")
TRIGGERS: Final = ("guide", "churn_alert", "behaviour", "birthday")
BEHAVIOURS: Final = ("first_vod_play", "days_without_viewing")
PLACEHOLDERS: Final = frozenset({"title", "channel", "start", "product"})
_DAILY: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_KEYS: Final = {"id", "name", "product", "segment", "holdout", "priority", "start", "end", "attribution_days",
                "waves", "schedule", "trigger", "variants", "expires_hours"}


@dataclass(frozen=True)
class Variant:
    id: str
    title: str
    body: str
    action: dict[str, Any]

    def render(self, context: dict[str, str]) -> tuple[str, str]:
        """(title, body) with `{title} {channel} {start} {product}` filled ('' where unknown)."""
        values = {k: context.get(k, "") for k in PLACEHOLDERS}
        return self.title.format_map(values), self.body.format_map(values)


@dataclass(frozen=True)
class Waves:
    count: int = 1
    after_hours: float = 24.0


@dataclass(frozen=True)
class Schedule:
    daily: str  # "HH:MM", local time of the settings' time zone

    @property
    def time(self) -> dt.time:
        hour, minute = self.daily.split(":")
        return dt.time(int(hour), int(minute))


@dataclass(frozen=True)
class Trigger:
    kind: str
    category: str = ""          # guide
    title_contains: str = ""    # guide
    within_hours: float = 6.0   # guide
    starts_between: str = ""    # guide: "18:00-23:00", airings starting in this local window ("" = any)
    behaviour: str = ""         # behaviour: first_vod_play | days_without_viewing
    days: int = 7               # behaviour days_without_viewing


@dataclass(frozen=True)
class Campaign:
    id: str
    segment: str
    variants: tuple[Variant, ...]
    product: str = ""
    name: str = ""
    holdout: float = 0.10
    priority: int = 0
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    attribution_days: float = 7.0
    expires_hours: float = 24.0     # a message not shown by then is never shown (MQTT expiry too)
    waves: Waves = field(default_factory=Waves)
    schedule: Schedule | None = None
    trigger: Trigger | None = None
    source: str = ""                # the file's text

    def active_at(self, at: dt.datetime) -> bool:
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)

    def variant(self, variant_id: str) -> Variant:
        return next(v for v in self.variants if v.id == variant_id)


def parse_campaign(text: str) -> Campaign:
    """A campaign from its TOML text; CampaignError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"campaign file: {exc}") from None
    problems: list[str] = []
    campaign = _build(data, problems)
    if problems or campaign is None:
        cid = data.get("id", "") if isinstance(data.get("id"), str) else ""
        raise CampaignError("campaign file: " + "; ".join(problems), campaign=cid)
    return campaign if not text else _with_source(campaign, text)


def _with_source(campaign: Campaign, text: str) -> Campaign:
    from dataclasses import replace

    return replace(campaign, source=text)


def _build(data: dict[str, Any], problems: list[str]) -> Campaign | None:
    for key in sorted(set(data) - _KEYS):
        problems.append(f"unknown key {key!r}")
    cid = data.get("id")
    if not isinstance(cid, str) or not ID.fullmatch(cid):
        problems.append("id: required, 1-64 of a-z 0-9 -")
    segment = data.get("segment")
    if not isinstance(segment, str) or not segment.strip():
        problems.append("segment: required (an expression, or @name of a saved segment)")
    product = _typed(data, "product", str, "", problems)
    holdout = float(_typed(data, "holdout", (int, float), 0.10, problems))
    if not 0.0 <= holdout < 1.0:
        problems.append("holdout: a share in [0, 1)")
    priority = int(_typed(data, "priority", int, 0, problems))
    attribution = float(_typed(data, "attribution_days", (int, float), 7, problems))
    expires = float(_typed(data, "expires_hours", (int, float), 24, problems))
    if attribution <= 0 or expires <= 0:
        problems.append("attribution_days and expires_hours: > 0")
    start, end = _when(data, "start", problems), _when(data, "end", problems)
    if start and end and end <= start:
        problems.append("end: after start")
    waves = _waves(data.get("waves", {}), problems)
    schedule, trigger = _schedule(data.get("schedule"), problems), _trigger(data.get("trigger"), problems)
    if schedule and trigger:
        problems.append("[schedule] and [trigger]: one or the other")
    variants = _variants(data.get("variants"), problems)
    if problems:
        return None
    assert isinstance(cid, str) and isinstance(segment, str)
    return Campaign(id=cid, segment=segment.strip(), variants=variants, product=str(product),
                    name=str(data.get("name", "")), holdout=holdout, priority=priority, start=start, end=end,
                    attribution_days=attribution, expires_hours=expires, waves=waves, schedule=schedule,
                    trigger=trigger)


def _typed(data: dict[str, Any], key: str, kinds: Any, default: Any, problems: list[str]) -> Any:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, kinds):
        problems.append(f"{key}: wrong type {type(value).__name__}")
        return default
    return value


def _when(data: dict[str, Any], key: str, problems: list[str]) -> dt.datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{key}: not an ISO date-time")
            return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        problems.append(f"{key}: not a date-time")
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _waves(raw: Any, problems: list[str]) -> Waves:
    if not isinstance(raw, dict) or set(raw) - {"count", "after_hours"}:
        problems.append("[waves]: only count and after_hours")
        return Waves()
    count, after = raw.get("count", 1), raw.get("after_hours", 24)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 20:
        problems.append("waves.count: 1..20")
        count = 1
    if isinstance(after, bool) or not isinstance(after, int | float) or after <= 0:
        problems.append("waves.after_hours: > 0")
        after = 24
    return Waves(int(count), float(after))


def _schedule(raw: Any, problems: list[str]) -> Schedule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"daily"} or not isinstance(raw["daily"], str) \
            or not _DAILY.fullmatch(raw["daily"]):
        problems.append('[schedule]: daily = "HH:MM"')
        return None
    return Schedule(raw["daily"])


def _trigger(raw: Any, problems: list[str]) -> Trigger | None:
    if raw is None:
        return None
    allowed = {"kind", "category", "title_contains", "within_hours", "starts_between", "behaviour", "days"}
    if not isinstance(raw, dict) or raw.get("kind") not in TRIGGERS or set(raw) - allowed:
        problems.append(f"[trigger]: kind one of {', '.join(TRIGGERS)}; keys {', '.join(sorted(allowed))}")
        return None
    kind = raw["kind"]
    within = raw.get("within_hours", 6)
    if isinstance(within, bool) or not isinstance(within, int | float) or not 0 < within <= 168:
        problems.append("trigger.within_hours: (0, 168]")
        within = 6
    behaviour, days = raw.get("behaviour", ""), raw.get("days", 7)
    if kind == "behaviour" and behaviour not in BEHAVIOURS:
        problems.append(f"trigger.behaviour: one of {', '.join(BEHAVIOURS)}")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        problems.append("trigger.days: 1..365")
        days = 7
    for key in ("category", "title_contains", "starts_between"):
        if not isinstance(raw.get(key, ""), str):
            problems.append(f"trigger.{key}: a string")
    try:
        parse_quiet_hours(str(raw.get("starts_between", "")))
    except ValueError as exc:
        problems.append(f"trigger.starts_between: {exc}")
    return Trigger(kind=kind, category=str(raw.get("category", "")), title_contains=str(raw.get("title_contains", "")),
                   within_hours=float(within), starts_between=str(raw.get("starts_between", "")),
                   behaviour=str(behaviour), days=int(days))


def _variants(raw: Any, problems: list[str]) -> tuple[Variant, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append("[[variants]]: at least one")
        return ()
    out: list[Variant] = []
    for i, v in enumerate(raw, 1):
        where = f"variant {i}"
        if not isinstance(v, dict) or set(v) - {"id", "title", "body", "action"}:
            problems.append(f"{where}: keys id, title, body, action")
            continue
        vid, title, body, action = v.get("id"), v.get("title", ""), v.get("body", ""), v.get("action", {"type": "info"})
        if not isinstance(vid, str) or not VARIANT_ID.fullmatch(vid):
            problems.append(f"{where}: id required, 1-32 of A-Z a-z 0-9 _ -")
            continue
        if not isinstance(title, str) or not isinstance(body, str) or not title:
            problems.append(f"variant {vid}: title (required) and body are strings")
            continue
        for text in (title, body):
            bad = _bad_placeholders(text)
            if bad:
                problems.append(f"variant {vid}: unknown placeholder(s) {', '.join(bad)} (use title, channel, start, "
                                f"product)")
        if not isinstance(action, dict) or action.get("type") not in ACTIONS:
            problems.append(f"variant {vid}: action.type one of {', '.join(ACTIONS)}")
            continue
        out.append(Variant(vid, title, body, dict(action)))
    if len({v.id for v in out}) != len(out):
        problems.append("[[variants]]: ids must differ")
    return tuple(out)


def _bad_placeholders(text: str) -> list[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return ["(unbalanced braces)"]
    return sorted(names - PLACEHOLDERS)
