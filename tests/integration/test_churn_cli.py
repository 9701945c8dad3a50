"""`python -m crm churn train|score|evaluate` on a small planted world, on both real stores.

The world: 300 simulated households over 62 days with 8x the simulator's leaving rates (about 14 %
a month: a small world needs leavers to learn from) and a 14-day horizon. The model must beat both
rule baselines there; the full-size figures are `python -m benchmarks churn` (docs/CRM.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.churn import ChurnWorld, simulate
from crm.__main__ import main
from firmware_sim.churn import NEVER
from tests.fixtures.clickhouse import _ensure_running as ensure_running
from tests.integration.crm_support import close_and_drop, open_migrated
from tests.integration.test_crm_profiles import store_url_of
from warehouse import Warehouse

pytestmark = pytest.mark.integration

CONFIG = """
[churn]
horizon_days = 14
stride_days = 3
train_days = 8
min_history_days = 14
test_days = 2
high = 0.3
medium = 0.1
"""


@pytest.fixture(scope="module")
def world() -> ChurnWorld:
    return simulate(households=300, days=62, seed=11, rate=8.0, keep=True)


@pytest.fixture(scope="module", params=["server", "embedded"])
def loaded(request: pytest.FixtureRequest, world: ChurnWorld,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warehouse, Path]]:
    tmp = tmp_path_factory.mktemp("churn-world")
    if request.param == "server":
        server = request.getfixturevalue("clickhouse_server")
        ensure_running(server)
        url = server.url(f"test_{uuid.uuid4().hex[:12]}")
    else:
        url = f"chdb://{tmp / 'chdb'}"
    store = open_migrated(url)
    world.load(store, tmp)
    world.write_truth(tmp / "truth.npz")
    (tmp / "churn.toml").write_text(CONFIG)
    yield store, tmp
    close_and_drop(store, url)


def crm(store: Warehouse, tmp: Path, *args: str) -> int:
    return main([*args, "--store", store_url_of(store), "--config", str(tmp / "churn.toml"), "--no-progress"])


def test_evaluate_beats_the_rules_out_of_time(loaded: tuple[Warehouse, Path], world: ChurnWorld,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    store, tmp = loaded
    assert crm(store, tmp, "churn", "evaluate", "--json", str(tmp / "eval.json"), "--truth",
               str(tmp / "truth.npz")) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp / "eval.json").read_text())
    s = result["scores"]
    with capsys.disabled():
        print(f"\nchurn on {store.url.split(':')[0]}: " + ", ".join(f"{k} AUC {v['auc']}" for k, v in s.items()) +
              f"; model lift@10% {s['model']['lift_top10']} ({result['test']['leavers']} test leavers)")
    assert result["day"] == world.last_day.isoformat() and "truth_ceiling" in out
    assert len(result["test_days"]) == 2 and result["test_days"][-1] == _minus(result["day"], 14)
    assert max(result["train_days"]) <= _minus(min(result["test_days"]), 14)   # split by time
    best_rule = max(s["rule:days_since_view"]["auc"], s["rule:trend_7_21"]["auc"])
    assert s["model"]["auc"] >= best_rule + 0.03
    assert s["model"]["lift_top10"] >= 2.0
    assert s["truth_ceiling"]["auc"] > 0.75       # (with ~35 test leavers the model can land above it by chance)
    assert s["model"]["brier"] < min(s["rule:days_since_view"]["brier"], s["rule:trend_7_21"]["brier"])
    assert {b["band"] for b in result["tenure_bands"]} == {"0-3m", "3-12m", "1-3y", "3y+"}


def _minus(day: str, days: int) -> str:
    import datetime as dt

    return (dt.date.fromisoformat(day) - dt.timedelta(days=days)).isoformat()


def test_train_score_tags_and_alerts(loaded: tuple[Warehouse, Path], world: ChurnWorld,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    store, tmp = loaded
    db, models = store.database, tmp / "models"
    assert crm(store, tmp, "churn", "score", "--model-dir", str(models)) == 1
    assert "run `python -m crm churn train` first" in capsys.readouterr().err
    assert crm(store, tmp, "churn", "train", "--model-dir", str(models)) == 0
    assert "churn model" in capsys.readouterr().out and (models / "CURRENT").exists()
    last, before = world.last_day, world.last_day.fromordinal(world.last_day.toordinal() - 1)
    # a tag run of the day from `crm profile` (not run here: no guide) must survive scoring
    store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                  f"SELECT 1, 'interest.test', 'interest', 1, toDate('{last}'), 1")
    assert crm(store, tmp, "churn", "score", "--model-dir", str(models), "--day", before.isoformat()) == 0
    assert crm(store, tmp, "churn", "score", "--model-dir", str(models)) == 0     # default: the last day
    out = capsys.readouterr().out
    assert f"scored for {last}" in out
    rows = store.query_rows(f"SELECT household_id, score, band, reasons, model_version FROM {db}.churn_scores "
                            f"FINAL WHERE day = toDate('{last}') ORDER BY household_id")
    ids = {int(r[0]) for r in rows}
    day_index = world.days - 1
    expected = {int(h) for h, leave in zip(world.households.household_id, world.churn.leave_day, strict=True)
                if leave > day_index}
    assert ids == expected and len(ids) < len(world.households)           # the ended are not scored
    assert all(0 <= r[1] <= 1 for r in rows) and len({r[4] for r in rows}) == 1
    assert all(r[2] == ("high" if r[1] >= 0.3 else "medium" if r[1] >= 0.1 else "low") for r in rows)
    high = {int(r[0]) for r in rows if r[2] == "high"}
    assert high and all(r[3] and all(isinstance(x, str) and x for x in r[3]) for r in rows if r[2] != "low")
    assert all(r[3] == [] for r in rows if r[2] == "low")
    words = " ".join(x for r in rows for x in r[3])
    assert "on the previous three weeks" in words
    # tags: the newest run of the day holds the risk tags and what was there before
    tags = store.query_rows(f"SELECT household_id, tag FROM {db}.household_tags WHERE day = toDate('{last}') "
                            f"AND computed_ms = (SELECT max(computed_ms) FROM {db}.household_tags "
                            f"WHERE day = toDate('{last}'))")
    assert {int(h) for h, t in tags if t == "risk.churn_high"} == high
    assert (1, "interest.test") in {(int(h), t) for h, t in tags}
    # alerts: households high on the last day that were not high the day before
    prev_high = {int(h) for (h,) in store.query_rows(f"SELECT household_id FROM {db}.churn_scores FINAL WHERE "
                                                    f"day = toDate('{before}') AND band = 'high'")}
    alerts = {int(h) for (h,) in store.query_rows(f"SELECT household_id FROM {db}.churn_alerts FINAL "
                                                 f"WHERE day = toDate('{last}')")}
    first = {int(h) for (h,) in store.query_rows(f"SELECT household_id FROM {db}.churn_alerts FINAL "
                                                f"WHERE day = toDate('{before}')")}
    assert alerts == high - prev_high and first == prev_high                  # first scoring: every high one
    # re-profiling the scored day keeps its risk tags in the new run
    assert crm(store, tmp, "profile", "--day", last.isoformat()) == 0
    tags = store.query_rows(f"SELECT household_id, tag FROM {db}.household_tags WHERE day = toDate('{last}') "
                            f"AND computed_ms = (SELECT max(computed_ms) FROM {db}.household_tags "
                            f"WHERE day = toDate('{last}'))")
    assert {int(h) for h, t in tags if t == "risk.churn_high"} == high and any(t.startswith("lifecycle.")
                                                                              for _, t in tags)
    # the planted leavers of the next days are ranked high
    soon = {int(h) for h, leave in zip(world.households.household_id, world.churn.leave_day, strict=True)
            if day_index < leave <= day_index + 14 and leave != NEVER}
    scores = {int(r[0]): r[1] for r in rows}
    assert np.mean([scores[h] for h in soon]) > 2 * np.mean([s for h, s in scores.items() if h not in soon])


def test_help_and_refusals(loaded: tuple[Warehouse, Path], capsys: pytest.CaptureFixture[str]) -> None:
    store, tmp = loaded
    for action in ("train", "score", "evaluate"):
        with pytest.raises(SystemExit) as exc:
            main(["churn", action, "--help"])
        assert exc.value.code == 0
    capsys.readouterr()
    assert crm(store, tmp, "churn", "train", "--day", "2025-01-10", "--model-dir", str(tmp / "m2")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("crm churn: not enough history") and "\n" not in err
