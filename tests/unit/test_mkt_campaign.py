"""The campaign file: the contract's example parses; every problem is reported at once."""

from __future__ import annotations

import datetime as dt

import pytest

from marketing.campaign import parse_campaign
from marketing.errors import CampaignError

EXAMPLE = '''
id = "euro-final"
product = "sports"
segment = "interest.football"
holdout = 0.10
priority = 5
start = "2026-12-01T00:00:00Z"
attribution_days = 7
[waves]
count = 1
after_hours = 24
[trigger]
kind = "guide"
category = "Sport"
title_contains = "football"
within_hours = 6
[[variants]]
id = "a"
title = "Tonight: {title}"
body = "{title} on {channel} at {start}. Press OK to watch."
action = { type = "tune" }
'''


def test_the_contract_example_parses_with_its_values() -> None:
    c = parse_campaign(EXAMPLE)
    assert (c.id, c.product, c.segment, c.holdout, c.priority) == ("euro-final", "sports", "interest.football", 0.1, 5)
    assert c.start == dt.datetime(2026, 12, 1, tzinfo=dt.UTC) and c.end is None
    assert c.trigger is not None
    assert (c.trigger.kind, c.trigger.category, c.trigger.within_hours) == ("guide", "Sport", 6)
    assert c.schedule is None and c.waves.count == 1 and c.waves.after_hours == 24
    assert c.variants[0].render({"title": "Final", "channel": "Sport 1", "start": "20:00"}) == (
        "Tonight: Final", "Final on Sport 1 at 20:00. Press OK to watch.")
    assert c.source == EXAMPLE


def test_defaults_a_schedule_and_activity_window() -> None:
    c = parse_campaign('id = "d"\nsegment = "x.y"\nend = 2026-12-31T00:00:00Z\n[schedule]\ndaily = "18:00"\n'
                       '[[variants]]\nid = "a"\ntitle = "t"\n')
    assert (c.holdout, c.priority, c.product, c.attribution_days) == (0.10, 0, "", 7.0)
    assert c.schedule is not None and c.schedule.time == dt.time(18, 0)
    assert c.variants[0].action == {"type": "info"}
    assert c.active_at(dt.datetime(2026, 12, 30, tzinfo=dt.UTC))
    assert not c.active_at(dt.datetime(2026, 12, 31, tzinfo=dt.UTC))


@pytest.mark.parametrize(("text", "problem"), [
    ('id = "Bad Id"', "id: required"),
    ('id = "x"\nholdout = 1.0', "holdout: a share in [0, 1)"),
    ('id = "x"\ncolour = "red"', "unknown key 'colour'"),
    ('id = "x"\n[schedule]\ndaily = "25:00"', '[schedule]: daily = "HH:MM"'),
    ('id = "x"\n[schedule]\ndaily = "18:00"\n[trigger]\nkind = "guide"', "one or the other"),
    ('id = "x"\n[trigger]\nkind = "weather"', "[trigger]: kind one of"),
    ('id = "x"\n[trigger]\nkind = "behaviour"\nbehaviour = "sleeping"', "trigger.behaviour: one of"),
    ('id = "x"\n[waves]\ncount = 0', "waves.count: 1..20"),
    ('id = "x"\nstart = "tomorrow"', "start: not an ISO date-time"),
    ('id = "x"\nstart = 2026-12-02T00:00:00Z\nend = 2026-12-01T00:00:00Z', "end: after start"),
])
def test_each_problem_is_named(text: str, problem: str) -> None:
    with pytest.raises(CampaignError) as err:
        parse_campaign(text + '\nsegment = "a.b"\n[[variants]]\nid = "a"\ntitle = "t"\n'
                       if "[" not in text else text)
    assert problem in str(err.value)


def test_every_problem_at_once_and_bad_placeholders_and_actions() -> None:
    text = ('id = "x"\n[[variants]]\nid = "a"\ntitle = "{name}"\naction = { type = "call" }\n'
            '[[variants]]\nid = "b"\ntitle = "ok {title}"\nbody = "{phone}"\n')
    with pytest.raises(CampaignError) as err:
        parse_campaign(text)
    message = str(err.value)
    for part in ("segment: required", "unknown placeholder(s) name", "action.type one of", "unknown placeholder(s) "
                 "phone"):
        assert part in message
    assert err.value.campaign == "x"


def test_not_toml_is_one_clear_error() -> None:
    with pytest.raises(CampaignError, match="campaign file: "):
        parse_campaign("id = ")
