"""Structured property tests of the subscriber extract reader (raw bytes: benchmarks.fuzz_targets).

Any generated CSV either reads (every data row valid or counted bad, never both, never lost)
or raises ExtractRefused, its documented error; a generated valid extract, written with
Python's csv module in any column order, extra columns and direct identifiers included,
round-trips value for value.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.errors import ExtractRefused
from crm.settings import ImportSettings
from crm.subscribers import COLUMNS, read_extract

SETTINGS = settings(derandomize=True, database=None, max_examples=40, deadline=None)
cell = st.one_of(st.sampled_from(["", "1", "0", "-1", "18446744073709551616", "active", "ended", "2026-02-30",
                                  "2026-01-01", "12.345", "9.99", "tv;sport", "BAD CODE", "13", "x\ny", "\"q"]),
                 st.text(max_size=8))
header_names = st.sampled_from([*COLUMNS, "name", "Phone", "extra", "household ID", ""])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest's temporary folder; one extract file in it is rewritten for each example."""
    return tmp_path_factory.mktemp("subscribers-property")


def write(folder: Path, text: str) -> Path:
    path = folder / "extract.csv"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    return path


@SETTINGS
@given(st.lists(header_names, min_size=1, max_size=10), st.lists(st.lists(cell, max_size=11), max_size=8))
def test_any_extract_reads_or_is_refused(folder: Path, header: list[str], rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    try:
        extract = read_extract(write(folder, out.getvalue()), ImportSettings())
    except ExtractRefused:
        return
    assert extract.valid_rows + extract.bad_count == extract.rows_read
    assert all(len(v) == extract.valid_rows for v in extract.columns.values())


codes = st.lists(st.from_regex(r"[a-z0-9][a-z0-9_.+-]{0,8}", fullmatch=True), max_size=3, unique=True)
day = st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31))


@st.composite
def subscriber(draw: st.DrawFn, hid: int) -> dict[str, str]:
    activated = draw(day)
    status = draw(st.sampled_from(["active", "suspended", "ended"]))
    ended = draw(st.one_of(st.none(), st.dates(activated, dt.date(2031, 12, 31)))) if status != "ended" \
        else draw(st.dates(activated, dt.date(2031, 12, 31)))
    return {"household_id": str(hid), "status": status, "activated": activated.isoformat(),
            "ended": ended.isoformat() if ended else "", "products": ";".join(draw(codes)),
            "monthly_fee": f"{draw(st.integers(0, 10**6))}.{draw(st.integers(0, 99)):02d}",
            "region": draw(st.text(st.characters(min_codepoint=97, max_codepoint=122), max_size=10)),
            "birth_month": str(draw(st.integers(1, 12))), "contact_opt_in": ";".join(draw(codes)),
            "name": draw(st.text(max_size=6)), "extra": "x"}


@SETTINGS
@given(st.lists(st.integers(1, 2**64 - 1), max_size=6, unique=True).flatmap(
    lambda ids: st.tuples(*(subscriber(h) for h in ids))), st.randoms(use_true_random=False))
def test_a_valid_extract_round_trips(folder: Path, subscribers: tuple[dict[str, str], ...],
                                     rnd: random.Random) -> None:
    header = [*COLUMNS, "name", "extra"]
    rnd.shuffle(header)
    out = io.StringIO()
    writer = csv.DictWriter(out, header)
    writer.writeheader()
    writer.writerows(subscribers)
    extract = read_extract(write(folder, out.getvalue()), ImportSettings())
    assert extract.bad_count == 0 and extract.dropped_identifiers == ["name"]
    assert extract.ignored_columns == ["extra"]
    c = extract.columns
    assert c["household_id"].tolist() == [int(s["household_id"]) for s in subscribers]
    assert c["status"].tolist() == [s["status"] for s in subscribers]
    assert [str(np.datetime64(d, "D")) for d in c["activated"]] == [s["activated"] for s in subscribers]
    assert [str(np.datetime64(d, "D")) for d in c["ended"]] == [s["ended"] or "1970-01-01" for s in subscribers]
    assert c["products"].tolist() == [";".join(sorted(s["products"].split(";"))) if s["products"] else ""
                                      for s in subscribers]
    assert c["monthly_fee_cents"].tolist() == [int(s["monthly_fee"].replace(".", "")) for s in subscribers]
    assert c["region"].tolist() == [s["region"] for s in subscribers]
    assert c["birth_month"].tolist() == [int(s["birth_month"]) for s in subscribers]
    assert "name" not in c
