"""The simulator's churn process: rates, ground truth, boxes that stop, and the warning signs."""

from __future__ import annotations

import csv
import datetime as dt
from functools import cache
from pathlib import Path

import numpy as np

from firmware_sim.behaviour import Simulator
from firmware_sim.churn import (
    LOST_CAUSE,
    MOVING,
    NEVER,
    PERSUADABLE,
    STAYS,
    SURE_THING,
    UNHAPPY,
    Churn,
    ChurnParams,
)
from firmware_sim.epg import DAY_MS, Epg
from firmware_sim.households import Households
from firmware_sim.subscribers import write_subscribers
from firmware_sim.truth import Truth, write_truth

START = dt.date(2025, 3, 3)
DAYS = 40


@cache
def big() -> tuple[Households, Churn]:
    e = Epg.generate(START, 1, seed=2, size="small")
    h = Households.generate(e, 60_000, seed=9)
    return h, Churn.generate(h)


@cache
def world() -> tuple[Epg, Households, Churn, dict[int, np.ndarray]]:
    """300 households x 40 days with 15x the leaving rates; per household [day, minutes, sessions,
    short views, views, prime minutes]."""
    e = Epg.generate(START, DAYS, seed=4, size="small")
    h = Households.generate(e, 300, seed=4)
    churn = Churn.generate(h, ChurnParams().scaled(15))
    stats = {int(i): np.zeros((DAYS, 5)) for i in h.household_id}
    last_ts: dict[int, int] = {}
    for dd in Simulator(e, h, churn=churn).iter_days(block_size=300):
        row = stats[dd.household_id][dd.day]
        for x in dd.events:
            last_ts[dd.household_id] = max(last_ts.get(dd.household_id, 0), x[1])
            if x[0] == 1:
                row[0] += x[4] / 60 if x[4] >= 60 else 0
                row[2] += x[4] < 60
                row[3] += 1
                row[4] += x[4] / 60 if x[4] >= 60 and 19 <= (x[1] % DAY_MS) // 3_600_000 < 23 else 0
            elif x[0] == 5 and x[2] == 1:
                row[1] += 1
    return e, h, churn, {**stats, -1: np.array([last_ts.get(int(i), 0) for i in h.household_id])}


def test_monthly_churn_and_kinds() -> None:
    _h, c = big()
    for days in (30, 90):
        monthly = ((c.leave_day >= 1) & (c.leave_day <= days)).mean() / days * 30
        assert 0.015 <= monthly <= 0.02, monthly
    left = c.leave_day <= 180
    kinds = np.bincount(c.kind[left], minlength=3)
    assert kinds[STAYS] == 0 and kinds[UNHAPPY] > 2 * kinds[MOVING] > 0
    assert (c.leave_day >= 1).all()                                   # everyone reports on the first day
    # retention: stayers are sure things, movers lost causes, the unhappy either persuadable or lost
    assert (c.retention[c.kind == STAYS] == SURE_THING).all()
    assert (c.retention[c.kind == MOVING] == LOST_CAUSE).all()
    share = (c.retention[c.kind == UNHAPPY] == PERSUADABLE).mean()
    assert 0.4 < share < 0.5
    assert ((c.leave_day == NEVER) == (c.kind == STAYS)).all()


def test_truth_risk_is_calibrated_and_fleet_independent() -> None:
    h, c = big()
    for day in (1, 45, 120):
        present = c.leave_day > day
        realised = (c.leave_day[present] <= day + 30).mean()
        assert abs(c.risk(day, 30)[present].mean() - realised) < 0.15 * realised
    hz = c.hazard(np.arange(0, 60))
    assert (hz[:, 0] == 0).all() and (hz >= 0).all() and (hz <= 1).all()
    e = Epg.generate(START, 1, seed=2, size="small")
    small = Churn.generate(Households.generate(e, 50, seed=9))
    assert np.array_equal(small.leave_day, c.leave_day[:50]) and np.array_equal(small.kind, c.kind[:50])
    off = Churn.generate(h, ChurnParams.off())
    day = off.day(np.arange(1000), 17)
    assert day.present.all() and (day.s == 0).all() and (off.leave_day == NEVER).all()


def test_a_leavers_boxes_stop_at_its_ended_date_in_the_extract(tmp_path: Path) -> None:
    _e, h, churn, stats = world()
    last_ts = stats[-1]
    as_of = START + dt.timedelta(days=DAYS - 1)
    write_subscribers(tmp_path / "subs.csv", h, as_of, start=START, churn=churn)
    with open(tmp_path / "subs.csv", newline="") as fh:
        rows = {int(r["household_id"]): r for r in csv.DictReader(fh)}
    ended = [i for i in range(len(h)) if churn.leave_day[i] < DAYS]
    assert len(ended) >= 15
    for i in range(len(h)):
        row = rows[int(h.household_id[i])]
        if i in ended:
            end = dt.date.fromisoformat(row["ended"])
            assert row["status"] == "ended" and end == START + dt.timedelta(days=int(churn.leave_day[i]))
            end_ms = int(dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC).timestamp() * 1000)
            assert last_ts[i] < end_ms                          # nothing from the ended day on
            assert stats[int(h.household_id[i])][int(churn.leave_day[i]):].sum() == 0
        else:
            assert row["status"] != "ended" and row["ended"] == ""
            assert dt.date.fromisoformat(row["activated"]) <= START - dt.timedelta(days=30)


def test_unhappy_households_decline_before_they_leave() -> None:
    _e, h, churn, stats = world()
    calm: list[np.ndarray] = []     # household-days at home with no dissatisfaction
    bad: list[np.ndarray] = []      # ... of unhappy households half-way or more into their decline
    for i in range(len(h)):
        st = stats[int(h.household_id[i])]
        for d in range(min(DAYS, int(churn.leave_day[i]))):
            if churn.away(np.array([i]), d)[0]:
                continue
            s = churn.dissatisfaction(np.array([i]), d)[0]
            (calm if s == 0 else bad if s >= 0.5 else []).append(st[d])
    assert len(bad) >= 60
    a, b = np.mean(calm, axis=0), np.mean(bad, axis=0)
    assert b[0] < 0.6 * a[0]                                   # fewer minutes
    assert b[4] / b[0] < a[4] / a[0] - 0.03                    # less of it in prime time
    assert b[2] / b[3] > a[2] / a[3] + 0.05                    # more short views
    assert b[1] / b[0] > 1.5 * a[1] / a[0]                     # more power cycles per minute watched


def test_holidays_mean_no_viewing() -> None:
    _e, h, churn, stats = world()
    away = [(i, d) for i in range(len(h)) for d in range(DAYS)
            if churn.away(np.array([i]), d)[0] and d < churn.leave_day[i]]
    assert len(away) > 50
    assert all(stats[int(h.household_id[i])][d].sum() == 0 for i, d in away)


def test_truth_file_holds_hazard_type_and_retention(tmp_path: Path) -> None:
    e, h, churn, _ = world()
    write_truth(tmp_path / "t.npz", e, h, churn=churn)
    t = Truth.load(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as z:
        assert z["churn_hazard"].shape == (len(h), e.days)
        assert np.array_equal(z["churn_kind"], churn.kind) and np.array_equal(z["churn_retention"], churn.retention)
        assert np.array_equal(z["churn_leave_day"], churn.leave_day)
    assert np.allclose(t.churn_risk(10), churn.risk(10))
    assert t.meta["churn"]["unhappy_per_month"] == churn.params.unhappy_per_month
