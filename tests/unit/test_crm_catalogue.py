"""The tag catalogue: the shipped one has the issue's default tags; a broken one is refused with
every problem listed; settings validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.catalogue import load_catalogue
from crm.errors import CatalogueError
from crm.settings import CrmSettings, DaypartSettings
from stbcommon.settings import SettingsError, load


def test_shipped_catalogue_has_the_default_tags() -> None:
    cat = load_catalogue()
    tags = set(cat.tags())
    assert {"interest.football", "behaviour.heavy_viewer", "behaviour.prime_time", "behaviour.vod_user",
            "behaviour.zapper", "value.high", "value.mid", "value.low", "lifecycle.new", "lifecycle.growing",
            "lifecycle.stable", "lifecycle.declining", "lifecycle.dormant"} <= tags
    assert cat.category_prefix == "interest." and cat.category_min_share == 0.2 and cat.category_min_minutes == 120
    assert cat.product_prefix == "product."
    [football] = cat.matches
    assert football.min_minutes == 90 and football.title_contains == ("football",)
    assert [(t, f, x) for t, f, x in cat.top_fractions] == [("behaviour.heavy_viewer", "minutes_28d", 0.2)]
    [(field, bands)] = cat.rank_bands
    assert field == "value_score" and [u for _, u in bands] == [0.2, 0.7, 1.0]
    [rules] = cat.first_of
    assert rules[0] == ("days_since_view", rules[0][1]) and rules[0][1].min == 14


def test_a_broken_catalogue_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "tags.toml"
    path.write_text('[[threshold]]\ntag = "fans"\nfield = "minuts_28d"\nmin = "many"\n'
                    '[[top_fraction]]\ntag = "behaviour.top"\nfield = "region"\nfraction = 2\n'
                    '[[match]]\ntag = "interest.x"\n[weird]\n')
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    text = str(caught.value)
    for part in ("tag 'fans' is not <level>.<name>", "field 'minuts_28d'", "min must be a number",
                 "field 'region' is not a numeric field", "fraction must be in (0, 1]",
                 "match[0]: title_contains and category_equals", "unknown section 'weird'"):
        assert part in text, part


def test_settings_defaults_and_validation() -> None:
    s = CrmSettings()
    assert (s.credit.min_view_s, s.credit.idle_cut_minutes, s.credit.reach_s) == (60, 240, 180)
    assert DaypartSettings().hour_table()[19:23] == [4, 4, 4, 4] and DaypartSettings().hour_table()[0] == 5
    got = load(CrmSettings, env={"STB_CRM__CREDIT__MIN_VIEW_S": "30"}, env_prefix="STB_CRM")
    assert got.credit.min_view_s == 30
    with pytest.raises(SettingsError) as caught:
        load(CrmSettings, overrides={"credit.idle_cut_minutes": 0, "store.url": "http://x"})
    assert "idle_cut_minutes" in str(caught.value) and "store.url" in str(caught.value)
