"""The simulator's response model: taste, fatigue, organic purchases, retention, and draws that
follow the published probabilities."""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import pytest

from firmware_sim.churn import PERSUADABLE
from firmware_sim.epg import DAY_MS, Epg
from firmware_sim.households import Households
from firmware_sim.ledger import LedgerWriter, Purchase, read_ledger
from firmware_sim.responses import (
    ACCEPTED,
    FATIGUE,
    UNSUBSCRIBED,
    MessageTopic,
    ResponseModel,
    Topic,
    decision_rng,
    variant_appeal,
)
from firmware_sim.subscribers import subscriber_rows

START = dt.date(2025, 3, 3)
FOOTBALL_TUNE = MessageTopic(Topic.FOOTBALL, "tune", "sports")
SPORTS_OFFER = MessageTopic(Topic.SPORT, "offer", "sports")


@cache
def world(n: int = 6000) -> tuple[Epg, Households, ResponseModel]:
    e = Epg.generate(START, 3, seed=1, size="small")
    h = Households.generate(e, n, seed=7)
    return e, h, ResponseModel(e, h)


def message(mid: str, action: dict[str, object], *, campaign: str = "euro-final",
            hours: float = 24) -> dict[str, object]:
    _, _, m = world()
    return {"v": 1, "id": mid, "campaign": campaign, "variant": "a", "title": "t", "body": "b", "action": action,
            "expires": now_ms(m) + int(hours * 3_600_000)}


def now_ms(m: ResponseModel) -> int:
    """18:00 on the world's second day."""
    return m.epg.start_ms + DAY_MS + 18 * 3_600_000


def test_topic_of_a_message() -> None:
    e, _, _ = world()
    football = int(np.flatnonzero(e.content_football)[0])
    film = int(np.flatnonzero(e.content_genre == 4)[0])
    pid = int(e.content_ids[football]) * 1_000_000 + 1
    assert MessageTopic.of(message("m", {"type": "tune", "programme_id": pid}), e).topic is Topic.FOOTBALL
    film_pid = int(e.content_ids[film]) * 1_000_000 + 1
    assert MessageTopic.of(message("m", {"type": "record", "programme_id": film_pid}), e).topic is Topic.FILMS
    offer = MessageTopic.of(message("m", {"type": "offer", "product": "sports"}), e)
    assert offer == MessageTopic(Topic.SPORT, "offer", "sports", variant_appeal("euro-final", "a"))
    assert MessageTopic.of(message("m", {"type": "offer", "product": "sports"}, campaign="retention-q1"),
                           e).topic is Topic.RETENTION
    assert MessageTopic.of(message("m", {"type": "offer", "product": "retention"}), e).topic is Topic.RETENTION
    assert MessageTopic.of(message("m", {"type": "info"}), e).topic is Topic.GENERIC
    assert MessageTopic.of(message("m", {"type": "tune", "programme_id": 12}), e).topic is Topic.GENERIC


def test_rates_by_affinity_and_fatigue() -> None:
    _, h, m = world()
    rows = np.arange(len(h))
    p0 = m.p_response(rows, FOOTBALL_TUNE, 0)
    assert np.all(p0 >= 0) and np.all(p0.sum(axis=1) <= 1.0)
    assert p0[m.fan, ACCEPTED].mean() > 8 * p0[~m.fan, ACCEPTED].mean()
    p3 = m.p_response(rows, FOOTBALL_TUNE, 3)
    np.testing.assert_allclose(p3[:, ACCEPTED], p0[:, ACCEPTED] * FATIGUE**3)
    assert np.all(p3[:, UNSUBSCRIBED] == 8 * p0[:, UNSUBSCRIBED])
    assert np.all(m.p_response(rows, FOOTBALL_TUNE, 12)[:, UNSUBSCRIBED] <= 0.2)
    owners = m.owns(rows, "sports")
    assert owners.any() and np.all(m.p_response(rows[owners], SPORTS_OFFER, 0)[:, ACCEPTED] == 0)
    films = MessageTopic(Topic.FILMS, "tune")
    keen, cold = m.film_taste >= np.quantile(m.film_taste, 0.8), m.film_taste < np.quantile(m.film_taste, 0.5)
    pf = m.p_response(rows, films, 0)[:, ACCEPTED]
    assert pf[keen].mean() > 2 * pf[cold].mean()


def test_targeted_converts_at_least_3x_random() -> None:
    _, h, m = world()
    rows = np.arange(len(h))
    assert 0.30 < m.fan.mean() < 0.42  # households with a planted fan: bounds an all-fans campaign at ~2.8x
    target = rows[m.fan & ~m.owns(rows, "sports")]
    random = np.random.default_rng(3).choice(rows, len(target), replace=False)
    conv = m.p_convert(rows, SPORTS_OFFER, 0, 7, treated=True)
    assert conv[target].mean() >= 3 * conv[random].mean()
    tune = m.p_convert(rows, FOOTBALL_TUNE, 0, 7, treated=True)
    fans = rows[m.fan]
    assert tune[fans].mean() >= 2.2 * tune[np.random.default_rng(4).choice(rows, len(fans), replace=False)].mean()
    holdout = m.p_convert(rows, SPORTS_OFFER, 0, 7, treated=False)
    assert np.all(conv >= holdout) and (conv[target] - holdout[target]).mean() > 0.05


def test_organic_rates_and_draws() -> None:
    _, h, m = world()
    rows = np.arange(len(h))
    weekly = m.organic_weekly(rows, "sports")
    free = ~m.owns(rows, "sports")
    assert np.allclose(weekly[m.fan & free], 0.01) and np.all(weekly[~free] == 0)
    assert np.all((weekly[~m.fan & free] >= 0.001) & (weekly[~m.fan & free] < 0.006))
    np.testing.assert_allclose(m.p_organic(rows, "sports", 7), weekly)
    assert np.all(m.p_organic(rows, "", 7) == 0)
    days = [START + dt.timedelta(days=d) for d in range(28)]
    bought = [r for d in days for r, p in m.organic(rows, d) if p == "sports"]
    expected = (1 - (1 - weekly) ** 4).sum()
    assert abs(len(bought) - expected) < 4 * np.sqrt(expected)
    assert not m.owns(np.array(bought), "sports").any()
    assert m.organic(rows, days[3]) == m.organic(rows, days[3])  # keyed, not a stream


def test_retention_saves_only_persuadables() -> None:
    _, h, m = world()
    rows = np.arange(len(h))
    saved = m.p_saved(rows)
    persuadable = m.churn.retention == PERSUADABLE
    assert persuadable.any() and np.all(saved[~persuadable] == 0) and np.all(saved[persuadable] > 0.5)


def test_decide_follows_the_probabilities_and_is_deterministic() -> None:
    e, h, m = world()
    row = int(np.flatnonzero(m.fan)[0])
    hh = int(h.household_id[row])
    now = now_ms(m)
    msg = message("m", {"type": "tune", "programme_id": int(e.content_ids[np.flatnonzero(e.content_football)[0]])
                        * 1_000_000 + 1}, hours=2)
    p_shown = m.p_shown(np.array([row]), now, int(msg["expires"]))[0]  # type: ignore[call-overload]
    p = m.p_response(np.array([row]), MessageTopic.of(msg, e), 2)[0]
    n = 4000
    answers = [m.decide(row, {**msg, "id": f"m{i}"}, now, 2, decision_rng(7, hh, f"m{i}")) for i in range(n)]
    shown = [a for a in answers if a.shown_at_ms is not None]
    assert abs(len(shown) / n - p_shown) < 4 * np.sqrt(p_shown * (1 - p_shown) / n) + 1e-9
    codes = np.array([-1 if a.response is None else a.response for a in shown])
    for c in range(5):
        se = np.sqrt(p[c] * (1 - p[c]) / len(shown))
        assert abs((codes == c).mean() - p[c]) < 4 * se + 1e-9, c
    assert all(now < a.shown_at_ms <= now + 5000 for a in shown)  # type: ignore[operator]
    assert all(a.responded_at_ms is not None and a.responded_at_ms > a.shown_at_ms for a in shown  # type: ignore[operator]
               if a.response is not None)
    again = m.decide(row, {**msg, "id": "m7"}, now, 2, decision_rng(7, hh, "m7"))
    assert again == answers[7]


def test_nobody_sees_a_message_while_away_or_gone() -> None:
    _, h, m = world()
    rows = np.arange(len(h))
    day = 10
    absent = ~m.churn.day(rows, day).present
    assert absent.any()
    t0 = m.epg.start_ms + day * DAY_MS
    p = m.p_shown(rows, t0, t0 + DAY_MS)
    assert np.all(p[absent] == 0) and p[~absent].mean() > 0.8


def test_ledger_purchases_join_the_extract(tmp_path: object) -> None:
    _, h, m = world()
    path = f"{tmp_path}/ledger.jsonl"
    free = int(np.flatnonzero(~m.owns(np.arange(len(h)), "sports"))[0])
    hh = int(h.household_id[free])
    leaver = int(np.flatnonzero((m.churn.retention == PERSUADABLE) & (m.churn.leave_day < 20))[0])
    writer = LedgerWriter(path)
    writer.write([Purchase(hh, "sports", START + dt.timedelta(days=2), "accepted"),
                  Purchase(int(h.household_id[leaver]), "retention", START, "retention")])
    writer.close()
    with open(path, "a") as f:
        f.write('{"household_id": 3, "prod')   # a torn line from a killed writer
    ledger = read_ledger(path)
    assert len(ledger) == 2
    as_of = START + dt.timedelta(days=25)
    before = subscriber_rows(h, START + dt.timedelta(days=1), START, m.churn, ledger)
    after = subscriber_rows(h, as_of, START, m.churn, ledger)
    plain = subscriber_rows(h, as_of, START, m.churn)
    assert "sports" not in before[free][4].split(";") and after[free][4].split(";")[-1] == "sports"
    assert round(float(after[free][5]) - float(plain[free][5]), 2) == 15.0
    assert plain[leaver][1] == "ended" and after[leaver][1] != "ended" and after[leaver][3] == ""


def test_variants_of_a_campaign_differ_in_appeal_and_acceptance_follows_it() -> None:
    appeals = {v: variant_appeal("bench", v) for v in "abc"}
    assert len(set(appeals.values())) == 3 and all(0.5 <= a <= 1.5 for a in appeals.values())
    assert variant_appeal("bench", "a") == appeals["a"]  # fixed by (campaign, variant)
    _, h, m = world()
    rows = np.arange(len(h))
    accept = {v: m.p_response(rows, MessageTopic(Topic.GENERIC, "info", "", a), 0)[:, ACCEPTED].mean()
              for v, a in appeals.items()}
    assert accept["a"] / accept["b"] == pytest.approx(appeals["a"] / appeals["b"])
