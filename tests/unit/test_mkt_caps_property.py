"""Caps are never exceeded, whatever the mix of campaigns, products, priorities, rules and timing.

1. A simulated run: cycles at advancing times, each deciding a random set of wanted sends of
   several campaigns and appending the sent ones to the history. Afterwards, for every sent
   message at time t and every rule, the household's sends in (t - days, t] that the rule counts
   are at most its max, and nothing was sent in quiet hours.
2. One decision against a plain-Python reference (a loop per candidate in priority order): the
   same status and reason for every candidate, so caps refuse no more than they must.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import NamedTuple

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from marketing.caps import DAY_MS, SCOPES, Candidates, CapRule, CapSettings, SendHistory, decide, parse_quiet_hours

ZONE = zoneinfo.ZoneInfo("Europe/Berlin")
PRODUCTS = ["", "sports", "movies", "kids", "news", "films"]
START_MS = int(dt.datetime(2026, 10, 20, 6, 0, tzinfo=ZONE).timestamp() * 1000)   # spans the DST change


class Send(NamedTuple):
    household: int
    at_ms: int
    product: str
    channel: str


class Campaign(NamedTuple):
    id: str
    product: str
    channel: str
    priority: int


rules_st = st.lists(st.builds(CapRule, scope=st.sampled_from(SCOPES), max=st.integers(1, 3),
                              days=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.5])), min_size=1, max_size=3)
campaigns_st = st.lists(st.builds(Campaign, id=st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]),
                                  product=st.sampled_from(PRODUCTS),
                                  channel=st.sampled_from(["stb", "stb", "app"]), priority=st.integers(0, 3)),
                        min_size=1, max_size=7)
caps_st = st.builds(CapSettings, quiet_hours=st.sampled_from(["", "22:00-08:00", "12:00-14:00", "02:30-02:45"]),
                    over_cap=st.sampled_from(["defer", "skip"]), rules=rules_st.map(tuple))
# minutes before now: anything, and often exactly a window's length (the boundary is excluded)
minutes_ago_st = st.one_of(st.integers(0, 4 * 24 * 60), st.sampled_from([0, 360, 720, 1440, 2880, 5040]))
wanted_st = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6)), max_size=14)   # (household, campaign index)


def objects(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def as_history(sends: list[Send]) -> SendHistory:
    return SendHistory(household_id=np.array([s.household for s in sends], dtype=np.uint64),
                       sent_ms=np.array([s.at_ms for s in sends], dtype=np.int64),
                       product=objects([s.product for s in sends]), channel=objects([s.channel for s in sends]))


def as_candidates(rows: list[tuple[int, Campaign]]) -> Candidates:
    return Candidates(household_id=np.array([h for h, _ in rows], dtype=np.uint64),
                      product=objects([c.product for _, c in rows]), channel=objects([c.channel for _, c in rows]),
                      priority=np.array([c.priority for _, c in rows], dtype=np.int64),
                      campaign=objects([c.id for _, c in rows]))


def counted(rule: CapRule, message: Send, other: Send) -> bool:
    if other.household != message.household:
        return False
    if rule.scope == "channel":
        return other.channel == message.channel
    if rule.scope == "product":
        return other.product == message.product
    return True


def quiet(text: str, at_ms: int) -> bool:
    window = parse_quiet_hours(text)
    if window is None:
        return False
    local = dt.datetime.fromtimestamp(at_ms / 1000, ZONE)
    minute, (start, end) = local.hour * 60 + local.minute, window
    return start <= minute < end if start < end else not end <= minute < start


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(caps=caps_st, campaigns=campaigns_st,
       cycles=st.lists(st.tuples(st.integers(10, 1_800), wanted_st), min_size=1, max_size=14))
def test_no_cap_is_ever_exceeded_over_a_run(caps: CapSettings, campaigns: list[Campaign],
                                             cycles: list[tuple[int, list[tuple[int, int]]]]) -> None:
    sent: list[Send] = []
    now = START_MS
    for step_minutes, wanted in cycles:
        now += step_minutes * 60_000
        rows = [(h, campaigns[i % len(campaigns)]) for h, i in wanted]
        decisions = decide(caps, as_history(sent), as_candidates(rows), now, ZONE)
        assert set(decisions.status.tolist()) <= {"sent", "deferred", "capped"}
        for (household, campaign), status in zip(rows, decisions.status, strict=True):
            if status == "sent":
                sent.append(Send(household, now, campaign.product, campaign.channel))
        if quiet(caps.quiet_hours, now):
            assert set(decisions.status.tolist()) <= {"deferred"}
    for message in sent:
        assert not quiet(caps.quiet_hours, message.at_ms)
        for rule in caps.rules:
            if rule.scope == "product" and message.product == "":
                continue
            window = round(rule.days * DAY_MS)
            n = sum(1 for o in sent if message.at_ms - window < o.at_ms <= message.at_ms and counted(rule, message, o))
            assert n <= rule.max, (rule, message)


def reference(caps: CapSettings, past: list[Send], rows: list[tuple[int, Campaign]], now: int) -> list[tuple[str, str]]:
    """The rules read literally: one candidate at a time, per household by priority then campaign id."""
    if quiet(caps.quiet_hours, now):
        return [("deferred", f"quiet hours {caps.quiet_hours}")] * len(rows)
    out = [("sent", "")] * len(rows)
    accepted: list[Send] = []
    for i in sorted(range(len(rows)), key=lambda i: (rows[i][0], -rows[i][1].priority, rows[i][1].id, i)):
        household, campaign = rows[i]
        message = Send(household, now, campaign.product, campaign.channel)
        for rule in caps.rules:
            if rule.scope == "product" and campaign.product == "":
                continue
            window = round(rule.days * DAY_MS)
            n = sum(1 for o in past + accepted if now - window < o.at_ms <= now and counted(rule, message, o))
            if n >= rule.max:
                out[i] = ("deferred" if caps.over_cap == "defer" else "capped", rule.label)
                break
        else:
            accepted.append(message)
    return out


@settings(max_examples=80, derandomize=True, database=None, deadline=None)
@given(caps=caps_st, campaigns=campaigns_st, wanted=wanted_st,
       past=st.lists(st.tuples(st.integers(0, 4), minutes_ago_st, st.sampled_from(PRODUCTS),
                               st.sampled_from(["stb", "app"])), max_size=25),
       at_minutes=st.integers(0, 3 * 24 * 60), every_product=st.booleans())
def test_decide_matches_the_literal_reading(caps: CapSettings, campaigns: list[Campaign], wanted: list[tuple[int, int]],
                                            past: list[tuple[int, int, str, str]], at_minutes: int,
                                            every_product: bool) -> None:
    if every_product:  # one candidate of each product at least: more products than caps.FEW_VALUES
        campaigns = [Campaign(f"p{i}", p, "stb", i % 3) for i, p in enumerate(PRODUCTS)] + campaigns
        wanted = wanted + [(i % 3, i) for i in range(len(PRODUCTS))]
    now = START_MS + at_minutes * 60_000
    history = [Send(h, now - minutes_ago * 60_000, p, c) for h, minutes_ago, p, c in past]
    rows = [(h, campaigns[i % len(campaigns)]) for h, i in wanted]
    got = decide(caps, as_history(history), as_candidates(rows), now, ZONE)
    assert list(zip(got.status.tolist(), got.reason.tolist(), strict=True)) == reference(caps, history, rows, now)
