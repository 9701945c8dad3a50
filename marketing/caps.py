"""Frequency caps and quiet hours: which of this cycle's wanted sends may go out.

    decisions = decide(settings.caps, history, candidates, now_ms, zone)   # status and reason per candidate

A rule (`CapRule`) caps the messages *sent* to a household in a rolling window of `days` ending
now, counted by scope:

- "channel": every message on the candidate's channel, all campaigns (the box, "stb", is the
  only channel today);
- "product": messages promoting the candidate's product code; product "" is never product-capped
  and past sends with product "" never count toward a product cap;
- "global": every message on every channel (today the same count as "channel"; kept apart so a
  second channel needs no new rule kind).

Rules are AND-ed. Inside the quiet hours (local time in the boxes' zone, the window may wrap
midnight) every candidate is deferred. Otherwise each household's candidates are taken in
priority order (higher first, ties by campaign id, then input order) and each is accepted only if
every rule still allows one more send, counting the history in the window *and* the sends
accepted earlier in the same call; so several campaigns running at once never exceed a cap
together. A refused candidate is "deferred" (over_cap = "defer": the engine retries next cycle)
or "capped" (over_cap = "skip"), with the first violated rule as its reason.

The engine calls this for up to millions of candidates a cycle, so nothing loops per household:
history is counted per (household, scope key) with sorts and searchsorted, and one household's
several candidates are resolved in rounds (round k takes every household's k-th candidate), so
the Python loop runs as many times as the most candidates any household has.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

DAY_MS: Final = 86_400_000
SCOPES: Final = ("channel", "product", "global")
OVER_CAP: Final = ("defer", "skip")
SENT: Final = "sent"
DEFERRED: Final = "deferred"
CAPPED: Final = "capped"
FEW_VALUES: Final = 4          # up to this many channels/products: coded by comparison, counted in dense slots
_QUIET = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")


@dataclass(frozen=True)
class CapRule:
    """At most `max` messages in any rolling `days` (fractions allowed), counted by `scope`."""

    scope: str
    max: int
    days: float

    def validate(self) -> list[str]:
        problems = []
        if self.scope not in SCOPES:
            problems.append(f"scope: {', '.join(SCOPES)}; got {self.scope!r}")
        if self.max < 1:
            problems.append(f"max: >= 1 (to stop sending, pause the campaign); got {self.max!r}")
        if not 0 < self.days <= 366:
            problems.append(f"days: more than 0, at most 366; got {self.days!r}")
        return problems

    @property
    def window_ms(self) -> int:
        return round(self.days * DAY_MS)

    @property
    def label(self) -> str:
        """The reason written for a send this rule refused, e.g. "cap channel 2/1d"."""
        return f"cap {self.scope} {self.max}/{self.days:g}d"


DEFAULT_RULES: Final = (CapRule("channel", 2, 1), CapRule("product", 1, 7), CapRule("global", 5, 7))


@dataclass(frozen=True)
class CapSettings:
    quiet_hours: str = ""          # "22:00-08:00" (may wrap midnight), the boxes' local time; "" = none
    over_cap: str = "defer"        # defer | skip
    rules: tuple[CapRule, ...] = DEFAULT_RULES
    count_recommendations: bool = False  # a row of recommendations shown in the guide counts as a message

    def validate(self) -> list[str]:
        problems = []
        try:
            parse_quiet_hours(self.quiet_hours)
        except ValueError as exc:
            problems.append(f"quiet_hours: {exc}")
        if self.over_cap not in OVER_CAP:
            problems.append(f"over_cap: defer or skip; got {self.over_cap!r}")
        for i, rule in enumerate(self.rules):
            problems.extend(f"rules[{i}].{p}" for p in rule.validate())
        return problems


def parse_quiet_hours(text: str) -> tuple[int, int] | None:
    """"HH:MM-HH:MM" as (start, end) minutes of the day, end exclusive; None for ""."""
    if text == "":
        return None
    m = _QUIET.fullmatch(text)
    if m is None:
        raise ValueError(f'expected "HH:MM-HH:MM" (e.g. "22:00-08:00") or "" for none; got {text!r}')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"hours 00..23 and minutes 00..59; got {text!r}")
    if (h1, m1) == (h2, m2):
        raise ValueError(f'an empty window; use "" for no quiet hours; got {text!r}')
    return h1 * 60 + m1, h2 * 60 + m2


def in_quiet_hours(quiet_hours: str, now_ms: int, tz: zoneinfo.ZoneInfo) -> bool:
    window = parse_quiet_hours(quiet_hours)
    if window is None:
        return False
    local = dt.datetime.fromtimestamp(now_ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    start, end = window
    return start <= minute < end if start < end else (minute >= start or minute < end)


@dataclass(frozen=True)
class SendHistory:
    """Past sends (status "sent" only) of every campaign; rows in any order."""

    household_id: np.ndarray   # uint64
    sent_ms: np.ndarray        # int64
    product: np.ndarray        # object (str)
    channel: np.ndarray        # object (str), "stb"


@dataclass(frozen=True)
class Candidates:
    """This cycle's wanted sends, several campaigns mixed, rows in any order."""

    household_id: np.ndarray   # uint64
    product: np.ndarray        # object (str); "" = no product
    channel: np.ndarray        # object (str)
    priority: np.ndarray       # int; higher first
    campaign: np.ndarray       # object (str); breaks priority ties


@dataclass(frozen=True)
class Decisions:
    """Aligned with the candidates."""

    status: np.ndarray         # object: "sent" | "deferred" | "capped"
    reason: np.ndarray         # object: "" when sent, else e.g. "cap channel 2/1d", "quiet hours 22:00-08:00"


def decide(settings: CapSettings, history: SendHistory, candidates: Candidates, now_ms: int,
           tz: zoneinfo.ZoneInfo) -> Decisions:
    n = len(candidates.household_id)
    if any(len(a) != n for a in (candidates.product, candidates.channel, candidates.priority, candidates.campaign)):
        raise ValueError("candidates: every column must have one value per candidate")
    status = np.full(n, SENT, dtype=object)
    reason = np.full(n, "", dtype=object)
    if n == 0:
        return Decisions(status, reason)
    if in_quiet_hours(settings.quiet_hours, now_ms, tz):
        status[:] = DEFERRED
        reason[:] = f"quiet hours {settings.quiet_hours}"
        return Decisions(status, reason)
    if not settings.rules:
        return Decisions(status, reason)
    hh = np.asarray(candidates.household_id, dtype=np.uint64)
    campaign_rank = pd.factorize(np.asarray(candidates.campaign, dtype=object), sort=True)[0]
    order = np.lexsort((campaign_rank, -np.asarray(candidates.priority, dtype=np.int64), hh))
    hs = hh[order]
    first = np.ones(n, dtype=bool)
    first[1:] = hs[1:] != hs[:-1]
    group = np.cumsum(first) - 1                      # household index of each sorted candidate
    starts = np.flatnonzero(first)
    rank = np.arange(n) - starts[group]               # 0 = the household's most important candidate
    households = hs[starts]                           # ascending
    codes = {scope: _codes(scope, candidates, history, order) for scope in {r.scope for r in settings.rules}}
    counters = [_Counter.build(rule, group, households, codes[rule.scope], history, now_ms) for rule in settings.rules]
    refused_by = np.full(n, -1, dtype=np.int64)       # index of the first violated rule, sorted order
    by_rank = np.argsort(rank, kind="stable")
    ends = np.cumsum(np.bincount(rank))
    for k in range(len(ends)):
        rows = by_rank[ends[k - 1] if k else 0: ends[k]]   # at most one candidate per household
        fail = np.full(len(rows), -1, dtype=np.int64)
        for i, counter in enumerate(counters):
            fail[(fail < 0) & counter.full(rows)] = i
        accepted = rows[fail < 0]
        for counter in counters:
            counter.add(accepted)
        refused_by[rows] = fail
    refused = np.zeros(n, dtype=bool)
    refused[order] = refused_by >= 0
    labels = np.array([rule.label for rule in settings.rules], dtype=object)
    status[refused] = DEFERRED if settings.over_cap == "defer" else CAPPED
    reason[order[refused_by >= 0]] = labels[refused_by[refused_by >= 0]]
    return Decisions(status, reason)


def _codes(scope: str, candidates: Candidates, history: SendHistory, order: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """The scope's key within a household, for sorted candidates and for history rows: codes 0..C-1,
    -1 where the rule does not apply (product ""; history on a channel or product no candidate has)."""
    if scope == "global":
        return np.zeros(len(order), dtype=np.int64), np.zeros(len(history.household_id), dtype=np.int64), 1
    cand = np.asarray(candidates.channel if scope == "channel" else candidates.product, dtype=object)[order]
    past = np.asarray(history.channel if scope == "channel" else history.product, dtype=object)
    found, values = pd.factorize(cand)
    code = np.asarray(found, dtype=np.int64)
    vocabulary = np.asarray(values, dtype=object)
    if len(vocabulary) <= FEW_VALUES:   # a vectorised comparison per value is cheaper than hashing every row
        hist = np.full(len(past), -1, dtype=np.int64)
        for i, value in enumerate(vocabulary):
            hist[past == value] = i
    else:  # one hash pass over both: the candidates come first, so their values get the lowest codes
        hist = np.asarray(pd.factorize(np.concatenate([vocabulary, past]))[0][len(vocabulary):], dtype=np.int64)
        hist[hist >= len(vocabulary)] = -1
    if scope == "product" and "" in vocabulary:
        blank = vocabulary.tolist().index("")
        code[code == blank] = -1
        hist[hist == blank] = -1
    return code, hist, len(vocabulary)


@dataclass
class _Counter:
    """One rule's sends per (household, scope key): history in the window plus sends accepted so far."""

    rule: CapRule
    key: np.ndarray      # per sorted candidate: index into `used`, -1 when the rule does not apply
    used: np.ndarray     # per key

    @classmethod
    def build(cls, rule: CapRule, group: np.ndarray, households: np.ndarray,
              codes: tuple[np.ndarray, np.ndarray, int], history: SendHistory, now_ms: int) -> _Counter:
        cand_code, hist_code, width = codes
        applies = cand_code >= 0
        packed = np.where(applies, group * width + cand_code, -1)   # (household, code) as one int64
        if width <= FEW_VALUES:   # a slot for every (household, code): no search needed
            key, slots = packed, np.arange(len(households) * width)
        else:                     # slots only for the pairs the candidates have
            slots = np.sort(packed[applies])
            if len(slots):
                slots = slots[np.concatenate(([True], slots[1:] != slots[:-1]))]
            key = np.full(len(group), -1, dtype=np.int64)
            key[applies] = np.searchsorted(slots, packed[applies])
        used = np.zeros(len(slots), dtype=np.int64)
        sent_ms = np.asarray(history.sent_ms, dtype=np.int64)
        live = (sent_ms > now_ms - rule.window_ms) & (sent_ms <= now_ms) & (hist_code >= 0)
        past_hh = np.asarray(history.household_id, dtype=np.uint64)[live]
        past_code = hist_code[live]
        key_hh, key_code = households[slots // width], slots % width
        for c in np.flatnonzero(np.bincount(key_code, minlength=width)):   # per channel/product, not household
            at = key_code == c
            sent = np.sort(past_hh[past_code == c])
            want = key_hh[at]                                    # ascending: sorted searches are cheap
            used[at] = np.searchsorted(sent, want, side="right") - np.searchsorted(sent, want, side="left")
        return cls(rule, key, used)

    def full(self, rows: np.ndarray) -> np.ndarray:
        """True where one more send would break the rule."""
        k = self.key[rows]
        out = np.zeros(len(rows), dtype=bool)
        out[k >= 0] = self.used[k[k >= 0]] >= self.rule.max
        return out

    def add(self, rows: np.ndarray) -> None:
        k = self.key[rows]
        self.used[k[k >= 0]] += 1     # rows of one round: distinct households, so distinct keys
