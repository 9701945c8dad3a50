"""Segments on both real stores, on hand-made profiles and tags with known answers: count, members,
bucket, saved versions, the CLI, and ratings restricted to a segment."""

from __future__ import annotations

import pytest

from crm import segments
from crm.__main__ import main
from crm.errors import SegmentError
from tests.integration.crm_support import close_and_drop, open_migrated, store_url, warehouse  # noqa: F401
from tests.integration.test_crm_ratings import DAY, build
from warehouse import Warehouse

pytestmark = pytest.mark.integration
IDS = range(1, 101)


def fill(store: Warehouse) -> None:
    """Households 1..100 on DAY: minutes_28d = 10 h, north when odd; interest.football when h % 3 == 0,
    value.high for h <= 20, value.mid to 70, value.low above; lifecycle.dormant when h % 10 == 0.
    An older run of the day tags everyone as interest.golf (readers must ignore it)."""
    db = store.database
    store.execute(f"INSERT INTO {db}.household_profiles (household_id, day, minutes_28d, computed_ms, status, "
                  f"region, monthly_fee_cents, tenure_days) SELECT number + 1, toDate('{DAY}'), (number + 1) * 10, "
                  f"1, 'active', if(modulo(number + 1, 2) = 1, 'north', 'south'), 1000, 400 "
                  f"FROM system.numbers LIMIT 100")
    store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                  f"SELECT number + 1, 'interest.golf', 'interest', 1, toDate('{DAY}'), 1 "
                  f"FROM system.numbers LIMIT 100")
    tags = ("SELECT h, tag FROM (SELECT number + 1 AS h, arrayJoin(["
            "if(modulo(h, 3) = 0, 'interest.football', ''), "
            "multiIf(h <= 20, 'value.high', h <= 70, 'value.mid', 'value.low'), "
            "if(modulo(h, 10) = 0, 'lifecycle.dormant', '')]) AS tag "
            "FROM (SELECT number FROM system.numbers LIMIT 100)) "
            "WHERE tag != ''")
    store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                  f"SELECT h, tag, splitByChar('.', tag)[1], 1, toDate('{DAY}'), 2 FROM ({tags})")


def want(pred: object) -> list[int]:
    return [h for h in IDS if pred(h)]  # type: ignore[operator]


def test_counts_members_and_buckets(warehouse: Warehouse) -> None:  # noqa: F811
    fill(warehouse)
    example = ("interest.football and value in (high, mid) and not lifecycle.dormant and minutes_28d >= 300 "
               "and region = 'north'")
    expected = want(lambda h: h % 3 == 0 and h <= 70 and h % 10 != 0 and h * 10 >= 300 and h % 2 == 1)
    assert segments.count(warehouse, example) == len(expected) == 7
    assert segments.members(warehouse, example).tolist() == expected
    assert segments.count(warehouse, "interest.golf") == 0            # an older run of the day
    assert segments.count(warehouse, "value = low or monthly_fee > 10") == 30
    assert segments.count(warehouse, "region not in ('north')") == 50
    a = set(segments.members(warehouse, "bucket('test-a') < 5000").tolist())
    b = set(segments.members(warehouse, "bucket('test-b') < 5000").tolist())
    assert 30 <= len(a) <= 70 and a != b                              # roughly half, salt-dependent
    assert a == set(segments.members(warehouse, "bucket('test-a') < 5000").tolist())   # stable
    assert a.isdisjoint(segments.members(warehouse, "bucket('test-a') >= 5000").tolist())
    with pytest.raises(SegmentError, match="did you mean 'minutes_28d'"):
        segments.count(warehouse, "interest.football and minuts_28d >= 300")


def test_saved_segments_cli_and_ratings(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    store = open_migrated(store_url)
    fill(store)
    build(store)       # the ratings world: households 1..7 viewing on DAY
    store.close()
    try:
        assert main(["segment", "save", "fans", "interest.football", "--store", store_url]) == 0
        assert main(["segment", "save", "fans", "interest.football and region = 'north'", "--store", store_url]) == 0
        assert "version 2" in capsys.readouterr().out
        assert main(["segment", "count", "@fans", "--store", store_url]) == 0
        assert capsys.readouterr().out.strip() == str(len(want(lambda h: h % 3 == 0 and h % 2 == 1)))
        assert main(["segment", "list", "--store", store_url]) == 0
        assert capsys.readouterr().out.strip() == "fans\tv2\tinterest.football and region = 'north'"
        assert main(["segment", "members", "value = high", "--limit", "3", "--identified", "--store", store_url]) == 0
        assert capsys.readouterr().out.split() == ["1", "2", "3"]
        assert main(["segment", "count", "minuts_28d > 1", "--store", store_url]) == 1
        assert "at 1; did you mean 'minutes_28d'?" in capsys.readouterr().err
        # ratings of the hand-built day restricted to households 6 and 7 (value.high, minutes_28d >= 60)
        assert main(["ratings", "--day", DAY.isoformat(), "--segment", "value = high and minutes_28d >= 60 "
                     "and minutes_28d <= 70", "--store", store_url]) == 0
        out = capsys.readouterr().out
        assert "universe 2 households" in out
        lines = {line.split()[-1]: line.split() for line in out.splitlines()[2:]}
        assert float(lines["Gamma"][0]) == pytest.approx(100 * 120 / 120 / 2, abs=0.01)
        assert float(lines["Beta"][0]) == pytest.approx(100 * 2.5 / 60 / 2, abs=0.01)
    finally:
        close_and_drop(open_migrated(store_url), store_url)
