"""`python -m crm import-subscribers` against both real stores (ClickHouse 18.16 and chdb)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.__main__ import main
from tests.integration.crm_support import close_and_drop, open_migrated, store_url  # noqa: F401
from warehouse import Warehouse, open_warehouse

pytestmark = pytest.mark.integration
HEADER = "household_id,status,activated,ended,products,monthly_fee,region,birth_month,contact_opt_in,name,phone"
FIRST = (f"{HEADER}\n"
         "1,active,2024-01-05,,basic;sports,19.99,north,3,stb,Ann Lee,555-1\n"
         "2,active,2023-05-01,,basic,9.50,south,,,Bob Roe,555-2\n"
         "3,suspended,2022-02-02,,full;hd,45,east,12,stb;sms,Cy Doe,555-3\n")
# A week later: 2 ended on 2025-11-05, 3 active again, 1 unchanged, 4 is new (and ended already).
SECOND = (f"{HEADER}\n"
          "1,active,2024-01-05,,basic;sports,19.99,north,3,stb,Ann Lee,555-1\n"
          "2,ended,2023-05-01,2025-11-05,basic,9.50,south,,,Bob Roe,555-2\n"
          "3,active,2022-02-02,,full;hd,45,east,12,stb;sms,Cy Doe,555-3\n"
          "4,ended,2025-01-01,2025-10-20,plus,20,west,,,Di Fox,555-4\n")


def run(url: str, path: Path, *extra: str) -> int:
    return main(["import-subscribers", str(path), "--store", url, *extra])


def state(store: Warehouse) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    db = store.database
    subs = store.query_rows(f"SELECT household_id, status, toString(activated), toUInt16(ended), products, "
                            f"monthly_fee_cents, region, birth_month, contact_opt_in, toString(as_of) "
                            f"FROM {db}.subscribers FINAL ORDER BY household_id")
    hist = store.query_rows(f"SELECT household_id, toString(day), status FROM {db}.subscriber_history FINAL "
                            f"ORDER BY household_id, day, status")
    return subs, hist


def test_import_history_and_idempotence(store_url: str, tmp_path: Path,  # noqa: F811
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.csv").write_text(FIRST)
    (tmp_path / "b.csv").write_text(SECOND)
    assert run(store_url, tmp_path / "a.csv", "--as-of", "2025-11-01") == 0
    out = capsys.readouterr()
    assert "3 new" in out.out and "dropped direct-identifier columns (never stored): name, phone" in out.out
    assert run(store_url, tmp_path / "a.csv", "--as-of", "2025-11-01") == 0   # again: nothing changes
    assert "0 new, 0 changed, 3 unchanged; 0 history rows" in capsys.readouterr().out
    assert run(store_url, tmp_path / "b.csv", "--as-of", "2025-11-08") == 0
    assert run(store_url, tmp_path / "b.csv", "--as-of", "2025-11-08") == 0
    store = open_migrated(store_url)
    try:
        subs, hist = state(store)
        assert subs == [
            (1, "active", "2024-01-05", 0, "basic;sports", 1999, "north", 3, "stb", "2025-11-08"),
            (2, "ended", "2023-05-01", 20397, "basic", 950, "south", 0, "", "2025-11-08"),
            (3, "active", "2022-02-02", 0, "full;hd", 4500, "east", 12, "sms;stb", "2025-11-08"),
            (4, "ended", "2025-01-01", 20381, "plus", 2000, "west", 0, "", "2025-11-08"),
        ]
        assert hist == [
            (1, "2024-01-05", "active"),
            (2, "2023-05-01", "active"), (2, "2025-11-05", "ended"),
            (3, "2022-02-02", "active"), (3, "2025-11-01", "suspended"), (3, "2025-11-08", "active"),
            (4, "2025-01-01", "active"), (4, "2025-10-20", "ended"),
        ]
        # identifiers are nowhere in the store
        dump = str(store.query_rows(f"SELECT * FROM {store.database}.subscribers")) + str(
            store.query_rows(f"SELECT * FROM {store.database}.subscriber_history"))
        assert "Ann" not in dump and "555" not in dump
    finally:
        close_and_drop(store, store_url)


def test_an_invalid_row_refuses_the_whole_file(store_url: str, tmp_path: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = FIRST + "5,gone,2024-01-01,,,,,,,Eve,555-5\n6,active,2024-01-01,,,1.999,,,,Fay,555-6\n"
    (tmp_path / "bad.csv").write_text(bad)
    assert run(store_url, tmp_path / "bad.csv") == 1
    out = capsys.readouterr()
    err_lines = [line for line in out.err.splitlines() if line.startswith("crm ")]
    assert len(err_lines) == 1 and "2 invalid row(s), nothing imported" in err_lines[0]
    assert "       5  status           'gone' is not active, suspended or ended" in out.out
    assert "       6  monthly_fee" in out.out
    assert "Eve" not in out.out + out.err
    store = open_warehouse(store_url)
    try:
        store.migrate()
        assert state(store) == ([], [])
    finally:
        close_and_drop(store, store_url)
    # --skip-invalid imports the rest and writes the rejects (without the identifier columns)
    rejects = tmp_path / "rejects.csv"
    assert run(store_url, tmp_path / "bad.csv", "--skip-invalid", "--rejects", str(rejects)) == 0
    assert "skipped 2 invalid rows" in capsys.readouterr().out
    lines = rejects.read_text().splitlines()
    assert lines[0].startswith("line,column,reason,household_id") and len(lines) == 3
    assert lines[1].startswith("5,status,") and "Eve" not in rejects.read_text()
    store = open_migrated(store_url)
    try:
        assert [r[0] for r in state(store)[0]] == [1, 2, 3]
    finally:
        close_and_drop(store, store_url)
