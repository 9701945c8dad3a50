"""Campaign occasions on both real stores: a daily schedule, churn alerts (the retention campaign and
its churn report), behaviour (days without viewing, a first VOD play) and birthdays."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from marketing import store as registry
from marketing.report import build_report
from tests.integration.crm_support import close_and_drop, event_rows, open_migrated, store_url, warehouse  # noqa: F401
from tests.integration.mkt_support import NOW, NOW_MS, Recorder, campaign_file, deliveries, engine, fill_marketing
from tests.integration.test_crm_ratings import DAY
from warehouse import Warehouse

pytestmark = pytest.mark.integration
H = dt.timedelta(hours=1)
EVERYONE = "minutes_28d >= 0"


@pytest.fixture
def store(warehouse: Warehouse) -> Warehouse:  # noqa: F811
    fill_marketing(warehouse)
    return warehouse


def sent_to(rec: Recorder) -> set[int]:
    return rec.households()


def test_a_daily_schedule_sends_from_its_time_and_once_a_day(store: Warehouse) -> None:
    registry.create(store, campaign_file("evening", segment="interest.football", holdout=0.0,
                                         extra='[schedule]\ndaily = "18:00"',
                                         waves="[waves]\ncount = 2\nafter_hours = 1"))
    rec = Recorder()
    engine(store, rec).cycle(NOW)                                          # 12:00: not yet
    assert rec.sent == []
    engine(store, rec).cycle(NOW + 6 * H)                                  # 18:00
    first = len(rec.sent)
    assert first > 0 and {p["id"].split(".")[1] for p in rec.payloads()} == {"1"}
    engine(store, rec).cycle(NOW + 8 * H)                                  # 20:00, same day: no wave 2 yet
    assert len(rec.sent) == first
    engine(store, rec, rules=()).cycle(NOW + 30 * H)                       # next day 18:00: wave 2
    assert {p["id"].split(".")[1] for p in rec.payloads()[first:]} == {"2"}


def test_churn_alerts_trigger_a_retention_offer_and_the_report_counts_churn(store: Warehouse) -> None:
    db = store.database
    alerted = [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60]
    store.execute(f"INSERT INTO {db}.churn_alerts (household_id, day, score, model_version, created_ms) "
                  f"SELECT arrayJoin({alerted}), toDate('{DAY}'), 0.9, 'v1', {NOW_MS - 3_600_000}")
    registry.create(store, campaign_file("retention-q4", segment=EVERYONE, product="retention", holdout=0.3,
                                         extra='[trigger]\nkind = "churn_alert"'))
    rec = Recorder()
    engine(store, rec).cycle(NOW)
    book = store.query_rows(f"SELECT household_id, argMax(holdout, at_ms) FROM {db}.contacts "
                            "WHERE campaign = 'retention-q4' GROUP BY household_id")
    assert {int(h) for h, _ in book} == set(alerted)                     # only alerted households
    assert sent_to(rec) == {int(h) for h, held in book if not held}
    # Two treated and two holdout households leave after the first send.
    treated = sorted(int(h) for h, held in book if not held)
    held = sorted(int(h) for h, h2 in book if h2)
    gone = treated[:2] + held[:2]
    store.execute(f"INSERT INTO {db}.subscribers (household_id, status, activated, ended, products, region, "
                  f"contact_opt_in, as_of, imported_ms) SELECT arrayJoin({gone}), 'ended', toDate('2024-01-01'), "
                  f"toDate('{(NOW + 48 * H).date()}'), 'basic', 'north', 'stb', toDate('{(NOW + 48 * H).date()}'), 2")
    report = build_report(store, registry.get(store, "retention-q4"))
    churn = report["churn"]
    assert churn["treated"] == {"households": len(treated), "converted": 2, "rate": 2 / len(treated)}
    assert churn["holdout"] == {"households": len(held), "converted": 2, "rate": 2 / len(held)}
    assert churn["difference"] == pytest.approx(2 / len(treated) - 2 / len(held))


def test_behaviour_and_birthday_triggers_pick_their_households(store: Warehouse) -> None:
    db = store.database
    store.execute(f"ALTER TABLE {db}.household_profiles UPDATE days_since_view = 12 WHERE household_id IN (4, 8)")
    store.execute(f"INSERT INTO {db}.subscribers (household_id, status, activated, products, region, birth_month, "
                  f"contact_opt_in, as_of, imported_ms) SELECT arrayJoin([5, 10]), 'active', toDate('2024-01-01'), "
                  f"'basic', 'north', {NOW.month}, 'stb', toDate('{DAY}'), 3")
    vod = event_rows([(7, 0, "vod_play", NOW_MS - 3 * 86_400_000, 0, 0, 600),
                      (11, 0, "vod_play", NOW_MS - 30 * 86_400_000, 0, 0, 600)])   # 11's first play is old
    vod["seq"] = np.array([900_001, 900_002], dtype=np.uint64)
    store.insert_columns("events", vod)
    for cid, trigger in (("idle", 'kind = "behaviour"\nbehaviour = "days_without_viewing"\ndays = 10'),
                         ("first-vod", 'kind = "behaviour"\nbehaviour = "first_vod_play"'),
                         ("birthday", 'kind = "birthday"')):
        registry.create(store, campaign_file(cid, segment=EVERYONE, product=cid, holdout=0.0,
                                             extra=f"[trigger]\n{trigger}"))
    rec = Recorder()
    _wait_for_mutations(store)
    engine(store, rec, rules=()).cycle(NOW)
    by_campaign: dict[str, set[int]] = {}
    for m, p in zip(rec.sent, rec.payloads(), strict=True):
        by_campaign.setdefault(str(p["campaign"]), set()).add(int(m.topic.split("/")[3].split("-")[1]))
    assert by_campaign == {"idle": {4, 8}, "first-vod": {7}, "birthday": {5, 10}}
    assert deliveries(store, "idle") == {"sent": 2}


def _wait_for_mutations(store: Warehouse) -> None:
    """ALTER ... UPDATE is a mutation; wait until the server has applied it."""
    import time

    for _ in range(100):
        if not store.query_rows(f"SELECT count() FROM system.mutations WHERE database = '{store.database}' "
                                "AND is_done = 0")[0][0]:
            return
        time.sleep(0.1)
