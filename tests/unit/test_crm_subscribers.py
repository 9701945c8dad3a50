"""Subscriber extract parsing and validation (no store): every refusal reason, both formats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crm.errors import ExtractRefused
from crm.settings import ImportSettings
from crm.subscribers import read_extract
from firmware_sim.epg import Epg
from firmware_sim.households import Households
from firmware_sim.subscribers import subscriber_rows, write_subscribers

HEADER = "household_id,status,activated,ended,products,monthly_fee,region,birth_month,contact_opt_in"


def write(tmp_path: Path, text: str, name: str = "x.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_rows_are_typed_identifiers_dropped_unknown_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffHousehold ID,Status,activated,ended,products,monthly_fee,region,birth_month,"
                           "contact_opt_in,Full Name,E-mail,Phone,colour\n"
                           "18446744073709551615,Active,2024-01-05,,Sports;basic; HD,19.9,North,3,stb,Ann Lee,a@b.c,"
                           "555,red\n"
                           "2,ended,2023-05-01,2025-10-01,,0,south,,,Bob,b@c.d,556,blue\n")
    ex = read_extract(path, ImportSettings())
    assert ex.bad_count == 0 and ex.rows_read == 2
    assert ex.dropped_identifiers == ["e_mail", "full_name", "phone"]
    assert ex.ignored_columns == ["colour"]
    c = ex.columns
    assert c["household_id"].tolist() == [2**64 - 1, 2]
    assert c["status"].tolist() == ["active", "ended"]
    assert c["products"].tolist() == ["basic;hd;sports", ""]
    assert c["monthly_fee_cents"].tolist() == [1990, 0]
    assert c["region"].tolist() == ["north", "south"]
    assert c["birth_month"].tolist() == [3, 0]
    assert c["ended"].astype("datetime64[D]").tolist() == [dt.date(1970, 1, 1), dt.date(2025, 10, 1)]
    # no identifier value is kept anywhere in what was parsed
    assert not any("Ann" in str(v) or "@" in str(v) for col in c.values() for v in col.tolist())


@pytest.mark.parametrize(("row", "column", "reason"), [
    ("x,active,2024-01-01,,,,,,", "household_id", "not an integer"),
    ("0,active,2024-01-01,,,,,,", "household_id", "not an integer"),
    ("-4,active,2024-01-01,,,,,,", "household_id", "not an integer"),
    ("18446744073709551616,active,2024-01-01,,,,,,", "household_id", "not an integer"),
    (",active,2024-01-01,,,,,,", "household_id", "empty"),
    ("5,actve,2024-01-01,,,,,,", "status", "'actve' is not active"),
    ("5,active,2024-02-30,,,,,,", "activated", "not a date"),
    ("5,active,05/01/2024,,,,,,", "activated", "not a date"),
    ("5,active,,,,,,,", "activated", "empty"),
    ("5,ended,2024-01-01,2023-12-31,,,,,", "ended", "before activated"),
    ("5,ended,2024-01-01,,,,,,", "ended", "needs an end date"),
    ("5,active,2024-01-01,,,-3,,,", "monthly_fee", "non-negative amount"),
    ("5,active,2024-01-01,,,1.234,,,", "monthly_fee", "at most 2 decimals"),
    ("5,active,2024-01-01,,,ten,,,", "monthly_fee", "'ten'"),
    ("5,active,2024-01-01,,,,,13,", "birth_month", "not 1..12"),
    ("5,active,2024-01-01,,bad code!,,,,", "products", "not a code"),
    ("5,active,2024-01-01,,,,,,,extra", "*", "10 fields, the header has 9"),
])
def test_each_invalid_value_is_reported_with_line_and_column(tmp_path: Path, row: str, column: str,
                                                             reason: str) -> None:
    path = write(tmp_path, f"{HEADER}\n1,active,2024-01-01,,,,,,\n{row}\n")
    ex = read_extract(path, ImportSettings())
    assert ex.bad_count == 1 and ex.valid_rows == 1
    [bad] = ex.bad_rows
    assert (bad.line, bad.column) == (3, column) and reason in bad.reason


def test_duplicates_and_multiline_rows_report_their_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, f'{HEADER}\n7,active,2024-01-01,,,,"no\nrth",,\n8,active,2024-01-01,,,,,,\n'
                           f"8,active,2024-01-01,,,,,,\n")
    ex = read_extract(path, ImportSettings())
    assert [(b.line, b.column) for b in ex.bad_rows] == [(2, "region"), (5, "household_id")]
    assert ex.bad_rows[1].reason == "duplicate of line 4"


def test_report_is_capped_but_every_bad_row_counted(tmp_path: Path) -> None:
    rows = "".join(f"{i},nope,2024-01-01,,,,,,\n" for i in range(1, 151))
    ex = read_extract(write(tmp_path, HEADER + "\n" + rows), ImportSettings(report_rows=100))
    assert ex.bad_count == 150 and len(ex.bad_rows) == 100 and ex.bad_rows[-1].line == 101


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ("household_id,activated\n1,2024-01-01\n", "missing required column(s) status"),
    ("household_id,status,status,activated\n", "appear more than once"),
])
def test_unusable_files_are_refused_whole(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ExtractRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_extract(write(tmp_path, text), ImportSettings())


def test_non_utf8_is_refused_with_a_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"{HEADER}\n1,active,2024-01-01,,,,m\xfcnchen,,\n".encode("latin-1"))
    with pytest.raises(ExtractRefused, match="not UTF-8"):
        read_extract(path, ImportSettings())


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    table = pa.table({
        "household_id": pa.array([1, 2, 3], pa.uint64()),
        "status": ["active", "suspended", "ended"],
        "activated": pa.array([dt.date(2024, 1, 1)] * 3, pa.date32()),
        "ended": pa.array([None, None, dt.date(2025, 1, 1)], pa.date32()),
        "products": ["basic", "plus;hd", ""],
        "monthly_fee": [14.99, 25.0, 0.5],
        "email": ["a@b", "c@d", "e@f"],
    })
    pq.write_table(table, tmp_path / "x.parquet")
    ex = read_extract(tmp_path / "x.parquet", ImportSettings())
    csv_ex = read_extract(write(tmp_path, "household_id,status,activated,ended,products,monthly_fee\n"
                                          "1,active,2024-01-01,,basic,14.99\n2,suspended,2024-01-01,,plus;hd,25\n"
                                          "3,ended,2024-01-01,2025-01-01,,0.50\n"), ImportSettings())
    assert ex.bad_count == 0 and ex.dropped_identifiers == ["email"]
    for name, col in csv_ex.columns.items():
        np.testing.assert_array_equal(ex.columns[name], col, err_msg=name)


def test_the_simulated_fleet_extract_is_valid_and_deterministic(tmp_path: Path) -> None:
    epg = Epg.generate(dt.date(2025, 3, 3), days=1, seed=3, size="small")
    homes = Households.generate(epg, 300, seed=3)
    start = dt.date(2024, 12, 3)     # a 90-day world: the churn process has ended a few households
    n = write_subscribers(tmp_path / "subs.csv", homes, dt.date(2025, 3, 3), start=start)
    ex = read_extract(tmp_path / "subs.csv", ImportSettings())
    assert n == 300 and ex.bad_count == 0 and ex.valid_rows == 300
    assert ex.columns["household_id"].tolist() == homes.household_id.tolist()
    statuses = set(ex.columns["status"].tolist())
    assert statuses == {"active", "suspended", "ended"}
    assert subscriber_rows(homes, dt.date(2025, 3, 3), start) == subscriber_rows(
        Households.generate(epg, 300, seed=3), dt.date(2025, 3, 3), start)
    package = [homes.package_name(i) for i in range(300)]
    assert [p.split(";")[0] in package[i] or package[i] in p
            for i, p in enumerate(ex.columns["products"].tolist())] == [True] * 300
