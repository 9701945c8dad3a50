"""Profiles and tags on a simulated world, on both real stores: interest.football against the
simulator's planted football fans, and the catalogue's other default tags."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm.__main__ import main
from crm.catalogue import load_catalogue
from crm.profiles import build_profiles
from crm.settings import CrmSettings
from crm.tags import build_tags, latest_run_sql
from tests.fixtures.clickhouse import _ensure_running as ensure_running
from tests.integration.crm_support import close_and_drop, open_migrated
from tests.integration.crm_world import World, simulate
from warehouse import Warehouse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> World:
    return simulate(households=800, days=14, seed=5)


@pytest.fixture(scope="module", params=["server", "embedded"])
def loaded(request: pytest.FixtureRequest, world: World,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """The world loaded once per store for this module's tests (loading is most of their time)."""
    tmp = tmp_path_factory.mktemp("crm-world")
    if request.param == "server":
        server = request.getfixturevalue("clickhouse_server")
        ensure_running(server)
        url = server.url(f"test_{uuid.uuid4().hex[:12]}")
    else:
        url = f"chdb://{tmp / 'chdb'}"
    store = open_migrated(url)
    world.load(store, tmp)
    yield store
    close_and_drop(store, url)


def tagged(store: Warehouse, day: str, tag: str) -> set[int]:
    db = store.database
    rows = store.query_rows(f"SELECT household_id FROM {db}.household_tags FINAL WHERE day = toDate(%(day)s) "
                            f"AND tag = %(tag)s AND computed_ms = ({latest_run_sql(db)})", {"day": day, "tag": tag})
    return {int(r[0]) for r in rows}


def test_football_tag_finds_the_planted_fans(loaded: Warehouse, world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    day = world.last_day
    settings, catalogue = CrmSettings(), load_catalogue()
    n = build_profiles(loaded, day, settings, catalogue)
    assert n == len(world.households)
    counts = build_tags(loaded, day, catalogue)
    got, fans = tagged(loaded, day.isoformat(), "interest.football"), world.football_fans()
    precision, recall = len(got & fans) / len(got), len(got & fans) / len(fans)
    with capsys.disabled():
        print(f"\ninterest.football on {loaded.url.split(':')[0]}: precision {precision:.3f} recall {recall:.3f} "
              f"({len(got)} tagged, {len(fans)} planted fans of {len(world.households)})")
    assert precision >= 0.9 and recall >= 0.9
    # the other default tags exist and partition where they should
    n_sub = len(world.households)
    assert counts["behaviour.heavy_viewer"] == pytest.approx(0.2 * n, abs=0.02 * n)
    value = [counts.get(f"value.{v}", 0) for v in ("high", "mid", "low")]
    active = loaded.query_rows(f"SELECT count() FROM {loaded.database}.subscribers FINAL")[0][0]
    assert sum(value) == active == n_sub and value[0] == pytest.approx(0.2 * n_sub, abs=5)
    life = sum(v for k, v in counts.items() if k.startswith("lifecycle.") and "tenure" not in k)
    assert life == n                                           # exactly one lifecycle stage each
    assert sum(v for k, v in counts.items() if "tenure" in k) == n_sub
    assert counts["product.basic"] + counts.get("product.plus", 0) > 0 and counts["interest.sport"] > 0
    # profiles agree with the events: 28-day minutes are the credited minutes, and never exceed 90-day
    bad = loaded.query_rows(f"SELECT count() FROM {loaded.database}.household_profiles FINAL "
                            f"WHERE minutes_7d > minutes_28d + 1e-6 OR minutes_28d > minutes_90d + 1e-6")
    assert bad == [(0,)]
    # built in 3 shards of households the profiles are the same; re-running the tags replaces the run
    before = loaded.query_rows(f"SELECT household_id, minutes_28d, match_minutes, top_channels, category_names "
                               f"FROM {loaded.database}.household_profiles FINAL ORDER BY household_id")
    sharded = dataclasses.replace(settings, profile=dataclasses.replace(settings.profile, shard_households=300))
    progress: list[tuple[int, int]] = []
    assert build_profiles(loaded, day, sharded, catalogue, on_shard=lambda i, n: progress.append((i, n))) == n
    assert progress == [(1, 3), (2, 3), (3, 3)]
    after = loaded.query_rows(f"SELECT household_id, minutes_28d, match_minutes, top_channels, category_names "
                              f"FROM {loaded.database}.household_profiles FINAL ORDER BY household_id")
    assert [r[0] for r in after] == [r[0] for r in before]
    assert [r[1] for r in after] == pytest.approx([r[1] for r in before])
    assert [(r[2], r[3], sorted(r[4])) for r in after] == [(r[2], r[3], sorted(r[4])) for r in before]
    again = build_tags(loaded, day, catalogue)
    assert again == counts


def test_profile_cli_defaults_to_the_last_day(loaded: Warehouse, world: World, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    store_url = store_url_of(loaded)
    assert main(["profile", "--store", store_url, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "800 household profiles" in out and world.last_day.isoformat() in out and "interest.football" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[threshold]]\ntag = "fans"\nfield = "minuts_28d"\nmin = 1\n')
    assert main(["profile", "--store", store_url, "--catalogue", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "tag 'fans' is not <level>.<name>" in err and "field 'minuts_28d'" in err


def store_url_of(store: Warehouse) -> str:
    """The loaded store's URL for a CLI run in this process (chdb: the same folder, shared engine)."""
    path = getattr(store, "path", None)
    return f"chdb://{path}" if path is not None else f"{store.url}"
