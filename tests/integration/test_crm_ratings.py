"""Ratings on a hand-built guide and viewing with known answers, on both real stores.

Day 2025-03-04 (UTC). Channel 101 airs Alpha 20-21 and Beta 21-22, channel 102 airs Gamma 20-22.
Households (universe: the 6 with an event that day; 5 watched only the day before):
  1  on at 19:55; Alpha in full, then 30 min of Beta
  2  tunes at 20:10; a 50 s zap on 102 (not credited), then 20 min of Alpha
  3  on at 14:00 and never touches the remote: 17:00-18:30 on 101 is cut at 18:00 (14:00 + 240 min),
     its 20:00 view of Gamma is entirely after the cut (not credited)
  4  only a power event at 10:00 (in the universe, watched nothing)
  6  two boxes on Gamma: 20:00-21:00 and 20:30-22:00 (150 box-minutes, capped at Gamma's 120)
  7  150 s of Beta at 21:10 (credited, but under the 180 s reach threshold)
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from crm.__main__ import main
from crm.ratings import compute_ratings
from crm.settings import CrmSettings
from tests.integration.crm_support import event_rows, insert_guide, store_url, warehouse  # noqa: F401
from warehouse import Warehouse

pytestmark = pytest.mark.integration
DAY = dt.date(2025, 3, 4)
T0 = 1_741_046_400_000  # 2025-03-04 00:00 UTC
H, M = 3_600_000, 60_000


def at(hour: float) -> int:
    return T0 + int(hour * H)


def build(store: Warehouse) -> None:
    insert_guide(store, [(101, "One"), (102, "Two")],
                 [(11, "Alpha", "Sport"), (12, "Beta", "Drama"), (21, "Gamma", "Film")],
                 [(101, at(20), at(21), 11), (101, at(21), at(22), 12), (102, at(20), at(22), 21)])
    store.insert_columns("events", event_rows([
        (1, 0, "power", at(19) + 55 * M, 0, 0, 0), (1, 0, "view", at(20), 101, 11, 3600),
        (1, 0, "view", at(21), 101, 12, 1800),
        (2, 0, "tune", at(20) + 10 * M, 101, 0, 0), (2, 0, "view", at(20) + 10 * M, 102, 21, 50),
        (2, 0, "view", at(20) + 10 * M + 50_000, 101, 11, 1200),
        (3, 0, "power", at(14), 0, 0, 0), (3, 0, "view", at(17), 101, 0, 5400), (3, 0, "view", at(20), 102, 21, 7200),
        (4, 0, "power", at(10), 0, 0, 0),
        (5, 0, "tune", at(-2), 101, 0, 0), (5, 0, "view", at(-2), 101, 0, 1800),
        (6, 0, "tune", at(20), 102, 0, 0), (6, 0, "view", at(20), 102, 21, 3600),
        (6, 1, "tune", at(20.5), 102, 0, 0), (6, 1, "view", at(20.5), 102, 21, 5400),
        (7, 0, "tune", at(21) + 10 * M, 101, 0, 0), (7, 0, "view", at(21) + 10 * M, 101, 12, 150),
    ]))


def close(got: dict[str, float], want: dict[str, float]) -> None:
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_known_answers_on_both_stores(warehouse: Warehouse) -> None:  # noqa: F811
    build(warehouse)
    s = CrmSettings()
    prog = compute_ratings(warehouse, DAY, "programme", s)
    assert prog.universe == 6
    assert [r["title"] for r in prog.rows] == ["Alpha", "Gamma", "Beta"]
    alpha, gamma, beta = prog.rows
    total_20_21, total_21_22 = 60 + 20 + 60 + 30, 30 + 60 + 2.5          # credited minutes, every channel
    close(alpha, {"rating": 80 / 60 / 6 * 100, "reach": 2 / 6 * 100, "share": 80 / total_20_21 * 100,
                  "credited_minutes": 80})
    close(gamma, {"rating": 120 / 120 / 6 * 100, "reach": 1 / 6 * 100,
                  "share": 120 / (total_20_21 + total_21_22) * 100})
    close(beta, {"rating": 32.5 / 60 / 6 * 100, "reach": 1 / 6 * 100, "share": 32.5 / total_21_22 * 100})
    assert alpha["channel"] == "One" and alpha["start_ms"] == at(20) and alpha["category"] == "Sport"

    chan = {r["channel_id"]: r for r in compute_ratings(warehouse, DAY, "channel", s).rows}
    close(chan[101], {"rating": 172.5 / 1440 / 6 * 100, "reach": 3 / 6 * 100, "share": 172.5 / 322.5 * 100,
                      "avg_minutes": 172.5 / 4, "viewers": 4})
    close(chan[102], {"rating": 150 / 1440 / 6 * 100, "reach": 1 / 6 * 100, "share": 150 / 322.5 * 100,
                      "avg_minutes": 150, "viewers": 1})

    parts = {r["daypart"]: r for r in compute_ratings(warehouse, DAY, "daypart", s).rows}
    close(parts["prime"], {"rating": 262.5 / 240 / 6 * 100, "reach": 3 / 6 * 100, "share": 262.5 / 322.5 * 100})
    close(parts["afternoon"], {"rating": 60 / 180 / 6 * 100, "reach": 1 / 6 * 100, "share": 60 / 322.5 * 100})
    assert parts["morning"]["rating"] == 0 and sum(r["hours"] for r in parts.values()) == 24


def test_settings_change_the_definitions(warehouse: Warehouse) -> None:  # noqa: F811
    build(warehouse)
    lenient = CrmSettings()
    lenient = type(lenient)(credit=type(lenient.credit)(min_view_s=10, idle_cut_minutes=24 * 60))
    rows = {r["title"]: r for r in compute_ratings(warehouse, DAY, "programme", lenient).rows}
    # no idle cut: household 3's two hours of Gamma count, and so does 2's 50 s zap
    assert rows["Gamma"]["credited_minutes"] == pytest.approx(120 + 120 + 50 / 60)


def test_cli_stores_and_writes_json(store_url: str, tmp_path: Path,  # noqa: F811
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.integration.crm_support import close_and_drop, open_migrated

    store = open_migrated(store_url)
    build(store)
    store.close()
    out = tmp_path / "r.json"
    assert main(["ratings", "--store", store_url, "--day", "2025-03-04", "--json", str(out)]) == 0
    assert main(["ratings", "--store", store_url, "--day", "2025-03-04", "--by", "channel"]) == 0  # again: replaces
    assert main(["ratings", "--store", store_url, "--day", "2025-03-04", "--by", "channel"]) == 0
    printed = capsys.readouterr().out
    assert "Alpha" in printed and "22.22" in printed
    doc = json.loads(out.read_text())
    assert doc["universe"] == 6 and doc["rows"][0]["title"] == "Alpha"
    store = open_migrated(store_url)
    try:
        rows = store.query_rows(f"SELECT by, count() FROM {store.database}.ratings_daily FINAL "
                                "WHERE day = '2025-03-04' GROUP BY by ORDER BY by")
        assert rows == [("channel", 2), ("programme", 3)]
    finally:
        close_and_drop(store, store_url)
    assert main(["ratings", "--store", store_url, "--day", "2025-03-09"]) == 1
    assert capsys.readouterr().err.strip().startswith("crm ratings: no events on 2025-03-09")
