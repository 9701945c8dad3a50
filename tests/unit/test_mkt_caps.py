"""Frequency caps and quiet hours, behaviour by behaviour (the property test covers random mixes)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

import numpy as np
import pytest

from marketing.caps import Candidates, CapRule, CapSettings, SendHistory, decide, in_quiet_hours, parse_quiet_hours

UTC = zoneinfo.ZoneInfo("UTC")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
DAY = 86_400_000
NOW = int(dt.datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp() * 1000)


def objects(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def history(rows: Sequence[tuple[int, int, str]], channel: str = "stb") -> SendHistory:
    """rows: (household, sent_ms, product)."""
    return SendHistory(household_id=np.array([r[0] for r in rows], dtype=np.uint64),
                       sent_ms=np.array([r[1] for r in rows], dtype=np.int64),
                       product=objects([r[2] for r in rows]), channel=objects([channel] * len(rows)))


def candidates(rows: Sequence[tuple[int, str, int, str]], channel: str = "stb") -> Candidates:
    """rows: (household, product, priority, campaign)."""
    return Candidates(household_id=np.array([r[0] for r in rows], dtype=np.uint64),
                      product=objects([r[1] for r in rows]), channel=objects([channel] * len(rows)),
                      priority=np.array([r[2] for r in rows], dtype=np.int64), campaign=objects([r[3] for r in rows]))


def caps(*rules: CapRule, over_cap: str = "defer", quiet_hours: str = "") -> CapSettings:
    return CapSettings(quiet_hours=quiet_hours, over_cap=over_cap, rules=rules)


NO_HISTORY = history([])


def test_defaults_are_the_contract() -> None:
    s = CapSettings()
    assert (s.quiet_hours, s.over_cap) == ("", "defer")
    assert s.rules == (CapRule("channel", 2, 1), CapRule("product", 1, 7), CapRule("global", 5, 7))
    assert s.validate() == []


def test_higher_priority_goes_first_across_campaigns() -> None:
    got = decide(caps(CapRule("channel", 2, 1)), NO_HISTORY,
                 candidates([(1, "", 1, "low"), (1, "", 9, "high"), (1, "", 5, "mid"), (2, "", 1, "low")]), NOW, UTC)
    assert got.status.tolist() == ["deferred", "sent", "sent", "sent"]
    assert got.reason.tolist() == ["cap channel 2/1d", "", "", ""]


def test_equal_priorities_break_ties_by_campaign_id_whatever_the_input_order() -> None:
    rule = caps(CapRule("global", 1, 7))
    for rows in ([(7, "", 3, "b-offer"), (7, "", 3, "a-offer")], [(7, "", 3, "a-offer"), (7, "", 3, "b-offer")]):
        got = decide(rule, NO_HISTORY, candidates(rows), NOW, UTC)
        sent = [c for (_, _, _, c), s in zip(rows, got.status, strict=True) if s == "sent"]
        assert sent == ["a-offer"]


def test_history_in_the_window_counts_and_older_does_not() -> None:
    rule = caps(CapRule("channel", 1, 1))
    # the window is (now - 1 day, now]: a send exactly a day ago is out, a millisecond later is in
    assert decide(rule, history([(1, NOW - DAY, "")]), candidates([(1, "", 0, "c")]), NOW, UTC).status[0] == "sent"
    assert decide(rule, history([(1, NOW - DAY + 1, "")]), candidates([(1, "", 0, "c")]), NOW,
                  UTC).status[0] == "deferred"
    # another household's sends do not count
    assert decide(rule, history([(2, NOW - 1000, "")]), candidates([(1, "", 0, "c")]), NOW, UTC).status[0] == "sent"


def test_fractional_days() -> None:
    rule = caps(CapRule("global", 1, 0.5))
    past = history([(1, NOW - 13 * 3_600_000, "")])
    assert decide(rule, past, candidates([(1, "", 0, "c")]), NOW, UTC).status[0] == "sent"
    assert rule.rules[0].label == "cap global 1/0.5d"


def test_skip_caps_for_good_and_defer_waits() -> None:
    cands = candidates([(1, "sports", 2, "a"), (1, "sports", 1, "b")])
    deferred = decide(caps(CapRule("product", 1, 7)), NO_HISTORY, cands, NOW, UTC)
    skipped = decide(caps(CapRule("product", 1, 7), over_cap="skip"), NO_HISTORY, cands, NOW, UTC)
    assert deferred.status.tolist() == ["sent", "deferred"]
    assert skipped.status.tolist() == ["sent", "capped"]
    assert deferred.reason[1] == skipped.reason[1] == "cap product 1/7d"


def test_product_caps_count_only_the_same_product_and_never_cap_no_product() -> None:
    rule = caps(CapRule("product", 1, 7))
    past = history([(1, NOW - DAY, "sports"), (1, NOW - DAY, ""), (1, NOW - DAY, "")])
    got = decide(rule, past, candidates([(1, "sports", 5, "a"), (1, "movies", 4, "b"), (1, "", 3, "c"),
                                         (1, "", 2, "d"), (1, "movies", 1, "e")]), NOW, UTC)
    assert got.status.tolist() == ["deferred", "sent", "sent", "sent", "deferred"]


def test_the_first_violated_rule_is_the_reason() -> None:
    rules = caps(CapRule("product", 1, 7), CapRule("channel", 1, 1))
    past = history([(1, NOW - 3_600_000, "sports")])
    got = decide(rules, past, candidates([(1, "sports", 0, "a"), (1, "movies", 0, "b")]), NOW, UTC)
    assert got.reason.tolist() == ["cap product 1/7d", "cap channel 1/1d"]


def test_a_refused_candidate_does_not_use_up_the_cap() -> None:
    # "a" is refused by its product cap; "b" must still get the channel's only slot
    rules = caps(CapRule("product", 1, 7), CapRule("channel", 1, 1))
    past = history([(1, NOW - 2 * DAY, "sports")])
    got = decide(rules, past, candidates([(1, "sports", 9, "a"), (1, "movies", 1, "b")]), NOW, UTC)
    assert got.status.tolist() == ["deferred", "sent"]


def test_channel_counts_its_channel_and_global_counts_every_channel() -> None:
    past = history([(1, NOW - 3_600_000, "")], channel="app")
    cands = candidates([(1, "", 0, "c")], channel="stb")
    assert decide(caps(CapRule("channel", 1, 1)), past, cands, NOW, UTC).status[0] == "sent"
    assert decide(caps(CapRule("global", 1, 1)), past, cands, NOW, UTC).status[0] == "deferred"


def test_several_rules_of_one_scope_are_all_enforced() -> None:
    rules = caps(CapRule("channel", 2, 1), CapRule("channel", 3, 7))
    past = history([(1, NOW - 4 * DAY, ""), (1, NOW - 3 * DAY, ""), (1, NOW - 2 * DAY, ""), (2, NOW - 3 * DAY, "")])
    got = decide(rules, past, candidates([(1, "", 0, "c"), (2, "", 0, "c"), (2, "", 0, "d"), (2, "", 0, "e")]),
                 NOW, UTC)
    assert got.status.tolist() == ["deferred", "sent", "sent", "deferred"]
    assert got.reason.tolist() == ["cap channel 3/7d", "", "", "cap channel 2/1d"]


def test_output_is_aligned_with_the_input_order() -> None:
    rows = [(5, "", 1, "a"), (3, "", 2, "a"), (5, "", 2, "b"), (9, "", 0, "a"), (3, "", 1, "b")]
    got = decide(caps(CapRule("global", 1, 1)), NO_HISTORY, candidates(rows), NOW, UTC)
    assert got.status.tolist() == ["deferred", "sent", "sent", "sent", "deferred"]


def test_no_rules_no_candidates_and_misaligned_columns() -> None:
    assert decide(caps(), NO_HISTORY, candidates([(1, "", 0, "a")] * 3), NOW, UTC).status.tolist() == ["sent"] * 3
    empty = decide(CapSettings(), NO_HISTORY, candidates([]), NOW, UTC)
    assert empty.status.shape == empty.reason.shape == (0,)
    bad = candidates([(1, "", 0, "a")])
    with pytest.raises(ValueError, match="one value per candidate"):
        decide(CapSettings(), NO_HISTORY, Candidates(bad.household_id, bad.product, bad.channel,
                                                     np.array([1, 2]), bad.campaign), NOW, UTC)


def at(zone: zoneinfo.ZoneInfo, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(2026, 12, 3, hour, minute, tzinfo=zone).timestamp() * 1000)


def test_quiet_hours_wrap_midnight_in_local_time() -> None:
    quiet = "22:00-08:00"
    assert [in_quiet_hours(quiet, at(BERLIN, h, m), BERLIN) for h, m in
            ((21, 59), (22, 0), (23, 30), (0, 0), (7, 59), (8, 0), (12, 0))] == \
        [False, True, True, True, True, False, False]
    # 22:30 UTC is 23:30 in Berlin (winter): quiet there, not in London
    assert in_quiet_hours(quiet, at(UTC, 21, 30), BERLIN)
    assert not in_quiet_hours(quiet, at(UTC, 21, 30), zoneinfo.ZoneInfo("Europe/London"))
    assert [in_quiet_hours("12:00-14:00", at(UTC, h), UTC) for h in (11, 12, 13, 14)] == [False, True, True, False]
    assert not in_quiet_hours("", at(UTC, 3), UTC)


def test_quiet_hours_defer_everything_even_under_skip() -> None:
    s = caps(CapRule("channel", 5, 1), over_cap="skip", quiet_hours="22:00-08:00")
    got = decide(s, NO_HISTORY, candidates([(1, "", 0, "a"), (2, "", 0, "b")]), at(BERLIN, 23), BERLIN)
    assert got.status.tolist() == ["deferred", "deferred"]
    assert got.reason.tolist() == ["quiet hours 22:00-08:00"] * 2
    assert decide(s, NO_HISTORY, candidates([(1, "", 0, "a")]), at(BERLIN, 9), BERLIN).status[0] == "sent"


def test_parse_quiet_hours() -> None:
    assert parse_quiet_hours("22:00-08:00") == (1320, 480)
    assert parse_quiet_hours("") is None
    for bad in ("22-08", "24:00-08:00", "22:00-08:60", "08:00-08:00", " 22:00-08:00"):
        with pytest.raises(ValueError):
            parse_quiet_hours(bad)


def test_validate_lists_every_problem() -> None:
    s = CapSettings(quiet_hours="10pm-8am", over_cap="drop",
                    rules=(CapRule("channel", 2, 1), CapRule("campaign", 0, 0), CapRule("global", 1, 400)))
    problems = s.validate()
    assert problems[0].startswith('quiet_hours: expected "HH:MM-HH:MM"')
    assert problems[1:] == [
        "over_cap: defer or skip; got 'drop'",
        "rules[1].scope: channel, product, global; got 'campaign'",
        "rules[1].max: >= 1 (to stop sending, pause the campaign); got 0",
        "rules[1].days: more than 0, at most 366; got 0",
        "rules[2].days: more than 0, at most 366; got 400",
    ]
