"""The marketing engine's cycle on both real stores: audiences, holdout, waves, caps across campaigns,
guide triggers, contact states from the boxes' answers, unsubscribes, the report. The broker side
is a recorder here (test_mkt_delivery.py and test_mkt_end_to_end.py use real mosquitto and agents)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from marketing import store as registry
from marketing.caps import CapRule
from marketing.report import build_report
from tests.integration.crm_support import close_and_drop, event_rows, insert_guide, open_migrated, store_url, warehouse  # noqa: F401
from tests.integration.mkt_support import (
    FANS,
    NO_BOX,
    NOW,
    NOW_MS,
    Recorder,
    answer,
    campaign_file,
    deliveries,
    engine,
    fill_marketing,
    states,
)
from warehouse import Warehouse

pytestmark = pytest.mark.integration
H = dt.timedelta(hours=1)


@pytest.fixture
def store(warehouse: Warehouse) -> Warehouse:  # noqa: F811
    fill_marketing(warehouse)
    return warehouse


def test_a_once_campaign_reaches_the_treated_segment_once_and_registers_the_holdout(store: Warehouse) -> None:
    registry.create(store, campaign_file("fans"))
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    book = states(store, "fans")
    assert set(book) == set(FANS)                                       # intention to treat: every member
    treated = {h for h, (held, _s) in book.items() if not held}
    assert 0 < len(FANS) - len(treated) < len(FANS) // 2                # a holdout of about 20 %
    assert rec.households() == treated - {NO_BOX}
    assert deliveries(store, "fans") == {"sent": len(treated - {NO_BOX}), "skipped": int(NO_BOX in treated)}
    first = rec.payloads()[0]
    assert first["campaign"] == "fans" and first["variant"] == "a" and first["action"]["product"] == "sports"
    assert first["expires"] == NOW_MS + 24 * 3_600_000 and first["v"] == 1
    engine(store, rec).cycle(NOW + H)                                   # nobody is due again
    assert len(rec.sent) == len(treated - {NO_BOX})
    assert registry.list_all(store)[0].status == "active"


def test_draft_and_paused_campaigns_send_nothing(store: Warehouse) -> None:
    registry.create(store, campaign_file("later"), draft=True)
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    assert rec.sent == []
    registry.change_status(store, "later", "approve")
    registry.change_status(store, "later", "pause")
    engine(store, rec).cycle(NOW)
    assert rec.sent == []
    registry.change_status(store, "later", "resume")
    engine(store, rec).cycle(NOW)
    assert rec.sent
    assert [a for _t, a, _w, _d in registry.history(store, "later")] == ["create", "approve", "pause", "resume"]


def test_caps_hold_across_campaigns_and_priority_wins(store: Warehouse) -> None:
    for cid, priority in (("low", 1), ("high", 9), ("mid", 5)):
        registry.create(store, campaign_file(cid, product=cid, holdout=0.0, priority=priority))
    rec = Recorder()
    engine(store, rec).cycle(NOW)                                       # default caps: 2 a day on the box
    per_household: dict[int, list[str]] = {}
    for payload, household in zip(rec.payloads(), (int(m.topic.split("/")[3].split("-")[1]) for m in rec.sent),
                                  strict=True):
        per_household.setdefault(household, []).append(str(payload["campaign"]))
    assert per_household and all(sorted(c) == ["high", "mid"] for c in per_household.values())
    assert deliveries(store, "low") == {"deferred": len(FANS) - 1, "skipped": 1}
    engine(store, rec).cycle(NOW + H)                                   # still capped an hour later
    assert {p["campaign"] for p in rec.payloads()} == {"high", "mid"}
    engine(store, rec).cycle(NOW + 25 * H)                              # the day's window has passed
    assert sum(p["campaign"] == "low" for p in rec.payloads()) == len(FANS) - 1


def test_a_guide_trigger_fills_the_airing_into_the_message_once_per_airing(store: Warehouse) -> None:
    start, other = NOW_MS + 2 * 3_600_000, NOW_MS + 3 * 3_600_000
    insert_guide(store, [(7, "Sport One")], [(70, "Football: Final", "Sport"), (71, "Cooking", "Food")],
                 [(7, start, start + 7_200_000, 70), (7, other, other + 3_600_000, 71),
                  (7, NOW_MS + 30 * 3_600_000, NOW_MS + 31 * 3_600_000, 70)])   # beyond within_hours
    trigger = '[trigger]\nkind = "guide"\ncategory = "sport"\ntitle_contains = "FOOTBALL"\nwithin_hours = 6'
    registry.create(store, campaign_file("euro", holdout=0.0, extra=trigger,
                                         waves="[waves]\ncount = 3\nafter_hours = 0.5"))
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    assert len(rec.sent) == len(FANS) - 1
    msg = rec.payloads()[0]
    assert msg["title"] == "a: Football: Final" and msg["body"] == "Football: Final on Sport One at 14:00, sports"
    assert msg["action"] == {"type": "offer", "product": "sports", "channel_id": 7, "programme_id": 70,
                             "start": start}
    assert msg["expires"] == start + 3_600_000                           # stale an hour after kick-off
    engine(store, rec).cycle(NOW + H)               # no_response and due for wave 2, but this airing had its turn
    assert len(rec.sent) == len(FANS) - 1


def test_answers_set_states_waves_recontact_and_an_unsubscribe_is_honoured_everywhere(store: Warehouse) -> None:
    registry.create(store, campaign_file("w", holdout=0.0, waves="[waves]\ncount = 2\nafter_hours = 1",
                                         variants=("a", "b")))
    rec = Recorder()
    loose = {"rules": (CapRule("channel", 5, 1),)}        # the default product cap would hold wave 2 a week
    engine(store, rec, **loose).cycle(NOW)
    a, b, c, d, silent = FANS[:5]
    answer(store, "w", rec, {a: 2, b: 3, c: 4, d: -1}, NOW_MS + 60_000)  # d: shown, no answer
    engine(store, rec, **loose).cycle(NOW + dt.timedelta(minutes=30))
    got = states(store, "w")
    assert (got[a][1], got[b][1], got[c][1], got[d][1], got[silent][1]) == (
        "converted", "refused", "unsubscribed", "contacted", "not_contacted")
    before = len(rec.sent)
    engine(store, rec, **loose).cycle(NOW + 2 * H)                      # past after_hours: wave 2 for the silent
    again = rec.payloads()[before:]
    assert {int(m.topic.split("/")[3].split("-")[1]) for m in rec.sent[before:]} == \
        set(FANS) - {a, b, c, NO_BOX}
    assert all(p["id"] != q["id"] for p, q in zip(again, rec.payloads()[:len(again)], strict=False))
    assert {p["variant"] for p in again} == {"a", "b"}     # each wave-2 send got its own draw (floor 5 %)
    assert states(store, "w")[d][1] == "no_response"
    registry.create(store, campaign_file("next", holdout=0.0))
    mark = len(rec.sent)
    engine(store, rec, **loose).cycle(NOW + 3 * H)
    assert c not in {int(m.topic.split("/")[3].split("-")[1]) for m in rec.sent[mark:]}


def test_a_refusing_broker_is_recorded_as_failed_not_sent(store: Warehouse) -> None:
    registry.create(store, campaign_file("acl", holdout=0.0))
    engine(store, Recorder(refuse=0x87)).cycle(NOW)
    assert deliveries(store, "acl") == {"failed": len(FANS) - 1, "skipped": 1}
    reasons = store.query_rows(f"SELECT DISTINCT reason FROM {store.database}.deliveries WHERE status = 'failed'")
    assert reasons == [("broker refused 0x87",)]


def test_the_report_measures_treated_against_the_holdout(store: Warehouse) -> None:
    registry.create(store, campaign_file("rep", holdout=0.5, variants=("a", "b")))
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    book = states(store, "rep")
    treated = sorted(h for h, (held, _s) in book.items() if not held and h != NO_BOX)
    holdout = sorted(h for h, (held, _s) in book.items() if held)
    answer(store, "rep", rec, {treated[0]: 2, treated[1]: 2}, NOW_MS + 60_000)
    # one holdout household buys the product on its own the next day (the extract's history says so)
    store.execute(f"INSERT INTO {store.database}.subscriber_history (household_id, day, status, products, "
                  f"imported_ms) SELECT {holdout[0]}, toDate('{(NOW + 24 * H).date()}'), 'active', 'basic;sports', 2")
    engine(store, rec).cycle(NOW + H)
    report = build_report(store, registry.get(store, "rep"))
    n_treated = sum(1 for held, _s in book.values() if not held)
    assert report["treated"] == {"households": n_treated, "converted": 2, "rate": 2 / n_treated}
    assert report["holdout"] == {"households": len(holdout), "converted": 1, "rate": 1 / len(holdout)}
    assert report["funnel"]["converted"] == 2 and sum(report["funnel"].values()) == n_treated
    lo, hi = report["uplift"]["ci95"]
    assert lo < report["uplift"]["absolute"] < hi
    assert report["uplift"]["absolute"] == pytest.approx(2 / n_treated - 1 / len(holdout))
    assert report["incremental_conversions"] == pytest.approx(report["uplift"]["absolute"] * n_treated)
    assert sum(v["sent"] for v in report["variants"]) == len(treated)
    assert sum(v["converted"] for v in report["variants"]) == 2
    assert report["waves"][0]["wave"] == 1 and report["waves"][0]["sent"] == len(treated)
    assert sum(report["waves"][0]["allocation"].values()) == pytest.approx(1.0)


def test_a_guide_trigger_with_a_time_window_waits_for_tonights_airing(store: Warehouse) -> None:
    afternoon, evening = NOW_MS + 2 * 3_600_000, NOW_MS + 7 * 3_600_000       # 14:00 and 19:00 UTC
    insert_guide(store, [(7, "Sport One")], [(70, "Football: Final", "Sport")],
                 [(7, afternoon, afternoon + 7_200_000, 70), (7, evening, evening + 7_200_000, 70)])
    trigger = ('[trigger]\nkind = "guide"\ntitle_contains = "football"\nwithin_hours = 24\n'
               'starts_between = "18:00-23:00"')
    registry.create(store, campaign_file("tonight", holdout=0.0, extra=trigger))
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    assert {p["action"]["start"] for p in rec.payloads()} == {evening}
    assert rec.payloads()[0]["body"].startswith("Football: Final on Sport One at 19:00")


def test_recommendation_rows_in_the_guide_count_under_the_caps_when_set(store: Warehouse) -> None:
    rows = event_rows([(h, 0, "rec_impression", NOW_MS - 3_600_000 + r, 0, 0, 0) for h in (3, 6) for r in range(4)])
    rows["seq"] = np.arange(800_000, 800_008, dtype=np.uint64)
    rows["request_id"][:] = ["r1", "r1", "r2", "r2", "r3", "r3", "r3", "r3"]   # 3: two rows shown, 6: one
    store.insert_columns("events", rows)
    registry.create(store, campaign_file("recs", holdout=0.0))
    rec = Recorder()
    engine(store, rec, count_recommendations=True).cycle(NOW)           # default caps: 2 a day on the box
    assert 3 not in rec.households() and 6 in rec.households()
    reason = store.query_rows(f"SELECT reason FROM {store.database}.deliveries WHERE household_id = 3")
    assert reason and reason[0][0].startswith("cap channel")


def test_a_tune_campaign_converts_whoever_watches_the_promoted_airing_holdout_included(store: Warehouse) -> None:
    start = NOW_MS + 2 * 3_600_000
    insert_guide(store, [(7, "Sport One")], [(70, "Football: Final", "Sport")], [(7, start, start + 7_200_000, 70)])
    registry.create(store, campaign_file("watch", product="", holdout=0.5, action="tune",
                                         extra='[trigger]\nkind = "guide"\ntitle_contains = "football"'))
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    book = states(store, "watch")
    treated = sorted(h for h, (held, _s) in book.items() if not held and h != NO_BOX)
    holdout = sorted(h for h, (held, _s) in book.items() if held)
    views = event_rows([(treated[0], 0, "view", start + 60_000, 7, 70, 1800),     # 30 minutes of the match
                        (holdout[0], 0, "view", start - 60_000, 7, 70, 600),      # 9 minutes of it
                        (treated[1], 0, "view", start + 60_000, 7, 70, 120)])     # 2 minutes: not watched
    views["seq"] = np.arange(700_000, 700_003, dtype=np.uint64)
    store.insert_columns("events", views)
    engine(store, rec).cycle(NOW + 3 * H)
    assert states(store, "watch")[treated[0]][1] == "converted" and states(store, "watch")[treated[1]][1] != "converted"
    report = build_report(store, registry.get(store, "watch"))
    assert report["treated"]["converted"] == 1 and report["holdout"]["converted"] == 1
