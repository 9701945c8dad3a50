"""`python -m crm forget HOUSEHOLD...` on both real stores: every table that holds household ids (and
the dead letters of their boxes) is emptied of them, the others' rows stay, the wait is real, and a
second run exits 0."""

from __future__ import annotations

import numpy as np
import pytest

from crm.__main__ import main
from crm.forget import forget
from stbcommon.pseudonym import Pseudonymizer
from tests.integration.crm_support import event_rows, store_url, warehouse  # noqa: F401  (fixtures)
from tests.integration.test_crm_profiles import store_url_of
from warehouse import Warehouse
from warehouse.columns import DEAD_LETTER_COLUMNS

pytestmark = pytest.mark.integration

DAY = "2026-12-01"
T = 1_796_083_200_000   # 2026-12-01 00:00 UTC


def fill(store: Warehouse) -> None:
    db = store.database
    rows = [(hh, dev, kind, T + 60_000 * i, 101, 5, 600) for hh in (1, 2, 3) for dev in (0, 1)
            for i, kind in enumerate(("power", "view", "tune", "view"))]
    store.insert_columns("events", event_rows(rows))
    for hh in (1, 2, 3):
        store.execute(f"INSERT INTO {db}.subscribers (household_id, status, activated, ended, products, "
                      f"monthly_fee_cents, region, birth_month, contact_opt_in, as_of, imported_ms) "
                      f"SELECT {hh}, 'active', toDate('2024-01-01'), toDate('1970-01-01'), 'basic', 1499, 'north', "
                      f"0, '', toDate('{DAY}'), 1")
        store.execute(f"INSERT INTO {db}.subscriber_history (household_id, day, status, products, "
                      f"monthly_fee_cents, imported_ms) SELECT {hh}, toDate('2024-01-01'), 'active', 'basic', 1499, 1")
        store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                      f"SELECT {hh}, 'interest.test', 'interest', 1, toDate('{DAY}'), 1")
        store.execute(f"INSERT INTO {db}.churn_scores (household_id, day, score, band, reasons, model_version, "
                      f"computed_ms) SELECT {hh}, toDate('{DAY}'), 0.5, 'high', ['no viewing for 9 days'], 'v', 1")
        store.execute(f"INSERT INTO {db}.churn_alerts (household_id, day, score, reasons, model_version, "
                      f"created_ms) SELECT {hh}, toDate('{DAY}'), 0.5, ['no viewing for 9 days'], 'v', 1")
    dead = {name: np.array([""] * 3, dtype=object) if t == "String" else np.zeros(3, dtype=np.dtype(t.lower()))
            for name, t in DEAD_LETTER_COLUMNS.items()}
    dead["device_id"] = np.array(["stb-1-0", "stb-3-1", "unknown"], dtype=object)
    dead["payload"] = np.array([b"x", b"y", b"z"], dtype=object)
    store.insert_columns("dead_letters", dead)


def holdings(store: Warehouse) -> dict[str, list[int]]:
    db = store.database
    out = {}
    for table in ("events", "subscribers", "subscriber_history", "household_tags", "churn_scores", "churn_alerts"):
        out[table] = sorted({int(h) for (h,) in store.query_rows(f"SELECT household_id FROM {db}.{table}")})
    out["dead_letters"] = sorted(str(d) for (d,) in store.query_rows(f"SELECT device_id FROM {db}.dead_letters"))
    return out


def test_forget_removes_households_everywhere_and_waits(warehouse: Warehouse,  # noqa: F811
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fill(warehouse)
    assert main(["forget", "1", "2", "--store", store_url_of(warehouse)]) == 0
    out = capsys.readouterr().out
    assert "forgot 2 household(s): 27 rows removed" in out and "events 16" in out and "dead_letters 1" in out
    got = holdings(warehouse)       # no waiting here: the command returned after the deletes were done
    assert all(ids == [3] for table, ids in got.items() if table != "dead_letters")
    assert got["dead_letters"] == ["stb-3-1", "unknown"]
    db = warehouse.database
    assert warehouse.query_rows("SELECT count() FROM system.mutations WHERE database = %(db)s AND is_done = 0",
                                {"db": db}) == [(0,)]
    # the request is recorded without the id: no pseudonym key configured, so no key at all
    keys = warehouse.query_rows(f"SELECT household_key, tables, rows FROM {db}.forget_requests ORDER BY household_key")
    assert [k for k, _, _ in keys] == [0, 0] and {(t, r) for _, t, r in keys} == {(7, 27)}
    # again: nothing left to remove, exit 0, recorded again
    assert main(["forget", "2", "1", "--store", store_url_of(warehouse)]) == 0
    assert "0 rows removed (nothing held)" in capsys.readouterr().out
    assert warehouse.query_rows(f"SELECT count() FROM {db}.forget_requests") == [(4,)]
    names = Pseudonymizer(b"k" * 32)   # with a key: the household's pseudonym, only the key's holder can link it
    assert forget(warehouse, [3], pseudonyms=names).rows == 8 + 5 + 1  # events 8, a row in five tables, a dead letter
    assert warehouse.query_rows(f"SELECT household_key FROM {db}.forget_requests WHERE rows = 14") == [
        (int(names(3)[1:], 16),)]
    assert all(not ids for ids in holdings(warehouse).values() if ids != ["unknown"])


def test_forget_refuses_what_is_not_a_household(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("abc", "0", "-4", str(2**64)):
        with pytest.raises(SystemExit) as exc:
            main(["forget", bad, "--store", "chdb:///nonexistent"])
        assert exc.value.code == 2
    assert "not a household id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["forget", "--help"])
    assert exc.value.code == 0
