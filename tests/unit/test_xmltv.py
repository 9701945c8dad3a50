"""XMLTV: the simulator's guide round-trips exactly; real-world guides import sensibly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import warehouse
from firmware_sim.epg import Epg
from firmware_sim.xmltv import main as xmltv_main
from firmware_sim.xmltv import write_xmltv, xmltv_time
from warehouse.schema import TABLE_COLUMNS
from warehouse.xmltv_import import (
    TABLES,
    XmltvError,
    channel_id_for,
    import_xmltv,
    load_channel_map,
    main,
    parse_time,
    stable_hash,
)

TYPES: dict[str, dict[str, Any]] = {
    "channels": {"channel_id": np.uint32, "xmltv_id": object, "name": object, "genre": object,
                 "updated_ms": np.int64},
    "programmes": {"programme_id": np.uint64, "content_id": np.uint64, "title": object,
                   "episode_title": object, "category": object, "series_id": object, "episode_num": object,
                   "duration_s": np.uint32, "updated_ms": np.int64},
    "airings": {"channel_id": np.uint32, "start_ms": np.int64, "stop_ms": np.int64, "programme_id": np.uint64,
                "updated_ms": np.int64},
}


class FakeWarehouse:
    """Records the column blocks it is given, checking names and dtypes against the schema."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[dict[str, np.ndarray]]] = {}
        self.migrated = self.closed = False

    def insert_columns(self, table: str, columns: Mapping[str, np.ndarray]) -> None:
        assert list(columns) == list(TYPES[table]), table
        lengths = {len(v) for v in columns.values()}
        assert len(lengths) == 1
        for name, arr in columns.items():
            assert arr.dtype == np.dtype(TYPES[table][name]), (table, name, arr.dtype)
            if arr.dtype == object:
                assert all(type(x) is str for x in arr)
        self.blocks.setdefault(table, []).append(dict(columns))

    def table(self, name: str) -> dict[str, np.ndarray]:
        blocks = self.blocks[name]
        return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}

    def migrate(self) -> None:
        self.migrated = True

    def close(self) -> None:
        self.closed = True


def test_columns_match_the_schema() -> None:
    ch_types = {np.uint32: "UInt32", np.uint64: "UInt64", np.int64: "Int64", object: "String"}
    for table, cols in TABLES.items():
        assert {k: ch_types[v] for k, v in cols.items()} == TABLE_COLUMNS[table]
        assert list(cols) == list(TABLE_COLUMNS[table])
        assert TYPES[table] == cols


def sim_guide(tmp_path: Path) -> tuple[Epg, Path]:
    e = Epg.generate(dt.date(2025, 3, 3), 2, seed=4, size="small")
    k = next(i for i, c in enumerate(e.contents) if c.kind == "series")
    e.contents[k] = dataclasses.replace(e.contents[k], title="Tom & Jerry <Live> \"é\"")
    path = tmp_path / "guide.xml"
    assert write_xmltv(e, path) == len(e.airings)
    return e, path


def test_simulator_guide_round_trips_exactly(tmp_path: Path) -> None:
    e, path = sim_guide(tmp_path)
    ET.parse(path)  # well-formed
    store = FakeWarehouse()
    stats = import_xmltv(path, store, progress=False, block_rows=1000, updated_ms=7)
    assert (stats.channels, stats.airings, stats.programmes, stats.skipped) == (
        len(e.channels), len(e.airings), len(e.programmes), 0)
    assert len(store.blocks["airings"]) > 1  # streamed in blocks
    c = store.table("channels")
    assert c["channel_id"].tolist() == e.channel_ids.tolist()
    assert c["xmltv_id"].tolist() == [x.xmltv_id for x in e.channels]
    assert c["name"].tolist() == [x.name for x in e.channels]
    a = store.table("airings")
    for col in ("channel_id", "start_ms", "stop_ms", "programme_id"):
        assert np.array_equal(a[col], e.airings[col]), col
    assert set(a["updated_ms"].tolist()) == {7}
    p = store.table("programmes")
    order = np.argsort(p["programme_id"])
    assert np.array_equal(p["programme_id"][order], e.programmes["programme_id"])
    assert np.array_equal(p["content_id"][order], e.content_ids[e.programmes["content_idx"]])
    assert np.array_equal(p["duration_s"][order], e.programmes["duration_s"])
    infos = [e.programme_info(i) for i in range(len(e.programmes))]
    assert p["title"][order].tolist() == [i.title for i in infos]
    assert p["episode_title"][order].tolist() == [i.episode_title for i in infos]
    assert p["category"][order].tolist() == [i.category for i in infos]
    numbers = [f"S{i.season:02d}E{i.episode:02d}" if i.season else "" for i in infos]
    assert p["episode_num"][order].tolist() == numbers
    assert "Tom & Jerry <Live> \"é\"" in set(p["title"].tolist())

    again = FakeWarehouse()  # re-importing gives the same rows: idempotent in a ReplacingMergeTree
    import_xmltv(path, again, progress=False, block_rows=1000, updated_ms=7)
    for t in TYPES:
        for col in TYPES[t]:
            assert np.array_equal(again.table(t)[col], store.table(t)[col])


def test_writer_window_and_times(tmp_path: Path) -> None:
    e = Epg.generate(dt.date(2025, 3, 3), 2, seed=4, size="small")
    out = io.StringIO()
    n = write_xmltv(e, out, start_ms=e.start_ms + 3_600_000 * 20, stop_ms=e.start_ms + 3_600_000 * 21)
    assert n == len(e.airings_between(e.start_ms + 3_600_000 * 20, e.start_ms + 3_600_000 * 21))
    assert xmltv_time(e.start_ms) == "20250303000000 +0000"
    assert xmltv_main([str(tmp_path / "g.xml"), "--days", "1", "--size", "20", "--start", "2025-01-01"]) == 0
    assert (tmp_path / "g.xml").read_text().count("<channel ") == 20


REAL_WORLD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv source-info-name="Some Grabber">
  <channel id="bbc1.uk">
    <display-name lang="cy">BBC Un</display-name>
    <display-name lang="en">BBC One</display-name>
  </channel>
  <channel id="arte.fr">
    <display-name>Arte</display-name>
    <lcn>7</lcn>
  </channel>
  <programme start="20250303180000 +0000" channel="bbc1.uk">
    <title lang="en">News at Six</title>
    <category lang="en">News</category>
  </programme>
  <programme start="20250303183000 +0000" stop="20250303193000 +0000" channel="bbc1.uk">
    <title lang="en">Caf&eacute; Stories &amp; More</title>
    <sub-title lang="en">Tom & Jerry</sub-title>
    <category lang="fr">S&eacute;rie</category>
    <category lang="en">Drama</category>
    <episode-num system="xmltv_ns">2.4.0/1</episode-num>
    <episode-num system="dd_progid">EP01234567.0005</episode-num>
  </programme>
  <programme start="20250303203000 +0100" channel="bbc1.uk">
    <title>Late Film</title>
    <date>1999</date>
    <category>Drama</category>
    <length units="minutes">95</length>
  </programme>
  <programme start="20250303203000 +0100" stop="20250303220000 +0100" channel="arte.fr">
    <title lang="fr">Histoires</title>
    <title lang="en">Caf&eacute; Stories &amp; More</title>
    <sub-title lang="en">Tom &amp; Jerry</sub-title>
    <episode-num system="xmltv_ns">2 . 4 . 0/1</episode-num>
    <episode-num system="dd_progid">EP01234567.0005</episode-num>
  </programme>
  <programme start="20250303140000 -0500" stop="20250303150000 -0500" channel="arte.fr">
    <title lang="en">Cafe Stories &amp; More</title>
    <episode-num system="dd_progid">EP01234567.0006</episode-num>
    <episode-num system="onscreen">S3 E6</episode-num>
  </programme>
  <programme start="20250303230000 +0000" channel="arte.fr">
    <title>Nothing after me</title>
  </programme>
  <programme start="20250303230000" stop="20250304000000" channel="undeclared.xx">
    <title>Mystery</title>
  </programme>
</tv>
"""


def test_real_world_guide(tmp_path: Path) -> None:
    store = FakeWarehouse()
    stats = import_xmltv(io.BytesIO(REAL_WORLD.encode()), store, progress=False)
    assert stats.skipped == 1  # "Nothing after me": no stop, no length, nothing after it
    c = {r[0]: r for r in zip(*store.table("channels").values(), strict=True)}
    bbc, arte, other = channel_id_for("bbc1.uk"), 7, channel_id_for("undeclared.xx")
    assert c[bbc][1:4] == ("bbc1.uk", "BBC One", "Drama")  # English name; most frequent category
    assert c[arte][2:4] == ("Arte", "") and c[other][2] == "undeclared.xx"
    a = store.table("airings")
    rows = sorted(zip(a["channel_id"].tolist(), a["start_ms"].tolist(), a["stop_ms"].tolist(),
                      a["programme_id"].tolist(), strict=True))
    t = lambda s: parse_time(s)  # noqa: E731
    news = next(r for r in rows if r[0] == bbc and r[1] == t("20250303180000 +0000"))
    assert news[2] == t("20250303183000 +0000")  # missing stop: the next start on the channel
    film = next(r for r in rows if r[0] == bbc and r[1] == t("20250303193000 +0000"))
    assert film[2] == film[1] + 95 * 60_000  # last on its channel: start + length
    cafe_bbc = next(r for r in rows if r[0] == bbc and r[1] == t("20250303183000 +0000"))
    cafe_arte = next(r for r in rows if r[0] == arte and r[1] == t("20250303193000 +0000"))
    assert cafe_bbc[3] == cafe_arte[3]  # same episode on two channels: one programme id
    assert cafe_arte[2] == t("20250303210000 +0000")  # +0100 offsets
    assert [r for r in rows if r[0] == arte and r[1] == t("20250303190000 +0000")]  # -0500
    assert [r for r in rows if r[0] == other and r[1] == t("20250303230000 +0000")]  # no offset: UTC
    p = {r[0]: r for r in zip(*store.table("programmes").values(), strict=True)}
    cafe = p[cafe_bbc[3]]
    assert cafe[2:7] == ("Café Stories & More", "Tom & Jerry", "Drama", "EP01234567", "S03E05")
    assert cafe[7] == 3600
    ep6 = next(r for r in p.values() if r[6] == "S3 E6")
    assert ep6[1] == cafe[1] and ep6[0] != cafe[0]  # same series, another episode
    assert p[news[3]][7] == 1800 and p[news[3]][0] == stable_hash("p", "news at six", "", "", "")
    assert p[film[3]][7] == 95 * 60
    assert all(0 < pid < 2**63 for pid in p)


def test_channel_map_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "map.json").write_text('{"bbc1.uk": 101}')
    (tmp_path / "map.csv").write_text("xmltv_id,channel_id\nbbc1.uk,102\n")
    assert load_channel_map(tmp_path / "map.json") == {"bbc1.uk": 101}
    assert load_channel_map(tmp_path / "map.csv") == {"bbc1.uk": 102}
    store = FakeWarehouse()
    import_xmltv(io.BytesIO(REAL_WORLD.encode()), store, progress=False, channel_map={"bbc1.uk": 101})
    assert 101 in store.table("channels")["channel_id"].tolist()
    with pytest.raises(XmltvError):
        import_xmltv(io.BytesIO(b"<tv><programme></tv>"), FakeWarehouse(), progress=False)
    with pytest.raises(XmltvError):
        import_xmltv(io.BytesIO(b"<html></html>"), FakeWarehouse(), progress=False)
    assert parse_time("20250303") == parse_time("20250303000000 +0000")
    assert parse_time("garbage") is None and parse_time(None) is None


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--store" in capsys.readouterr().out
    guide = tmp_path / "g.xml"
    guide.write_text(REAL_WORLD)
    store = FakeWarehouse()
    opened: list[str] = []

    def open_warehouse(url: str) -> FakeWarehouse:
        opened.append(url)
        return store

    monkeypatch.setattr(warehouse, "open_warehouse", open_warehouse, raising=False)
    assert main([str(guide), "--store", "chdb:///tmp/x", "--no-progress"]) == 0
    assert opened == ["chdb:///tmp/x"] and store.migrated and store.closed
    assert "3 channels" in capsys.readouterr().err
