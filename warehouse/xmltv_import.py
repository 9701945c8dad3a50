"""Import an XMLTV programme guide into the store's `channels`, `programmes` and `airings`.

    stats = import_xmltv("guide.xml", warehouse)             # any object with insert_columns()
    python -m warehouse.xmltv_import guide.xml --store clickhouse://host:9000/stb

The file is streamed (`iterparse`, elements cleared as they are read): memory holds the
ids of programmes already written, the few airings whose stop is missing, and the channels.
Rows go to `warehouse.insert_columns` in column blocks. The tables are ReplacingMergeTrees
versioned by `updated_ms` (the import time unless given), so importing the same guide
again replaces rows with identical ones.

Identifiers (stable across imports and across guides of the same operator):
- `channel_id`: the mapping given for the XMLTV channel id (`channel_map`, `--channel-map`),
  else the channel's `<lcn>`, else `crc32(xmltv id)`.
- `programme_id`: `<episode-num system="stb.programme_id">` when present (the simulator's
  guides), else a 63-bit hash (blake2b) of the casefolded title, the episode (xmltv_ns
  season.episode.part, else dd_progid, else onscreen), the casefolded sub-title, and — only
  when there is neither episode nor sub-title — `<date>`. It does not depend on the channel or
  the time, so repeats share it; airings with no episode information and no sub-title (news
  bulletins in many guides) share one id per title.
- `content_id` (a series or a film): `stb.content_id` when present, else a hash of the series
  part of dd_progid (its first 10 characters, e.g. EP01234567), else of the casefolded title.
- `series_id`: that dd_progid series part, else the title. `episode_num`: "S03E05" from
  xmltv_ns (or "S03", "E05"), else the onscreen text, else "".

Real-world files: start/stop with any UTC offset (or none: UTC); a missing stop is the next
start on that channel (else start + `<length>`, else the airing is skipped and counted);
titles, sub-titles and categories in several languages (the preferred `languages` first,
else the first given); HTML named entities (`&eacute;`) and stray `&` are repaired before
parsing; channels used by programmes but not declared get a row named after their id; a
channel's `genre` is the most frequent category among its programmes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from xml.etree import ElementTree as ET

import numpy as np
from tqdm import tqdm

from warehouse.xmltv_parse import EntityFixer, channel_id_for, norm, parse_time, pick, stable_hash, xmltv_ns


class Inserter(Protocol):
    def insert_columns(self, table: str, columns: Mapping[str, np.ndarray]) -> None: ...


class XmltvError(ValueError):
    """The file is not XMLTV that can be read (not XML, or no <tv> root)."""


@dataclass(slots=True)
class ImportStats:
    channels: int = 0
    programmes: int = 0          # distinct programme rows written
    airings: int = 0
    skipped: int = 0             # programmes without a usable channel, start or stop
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        if len(self.warnings) < 100:
            self.warnings.append(text)


# --- the importer --------------------------------------------------------------------------

_PROGRAMME_COLS = {"programme_id": np.uint64, "content_id": np.uint64, "title": object,
                   "episode_title": object, "category": object, "series_id": object, "episode_num": object,
                   "duration_s": np.uint32, "updated_ms": np.int64}
_AIRING_COLS = {"channel_id": np.uint32, "start_ms": np.int64, "stop_ms": np.int64, "programme_id": np.uint64,
                "updated_ms": np.int64}
_CHANNEL_COLS = {"channel_id": np.uint32, "xmltv_id": object, "name": object, "genre": object,
                 "updated_ms": np.int64}
# What this module inserts (warehouse/schema.py declares the tables; a test keeps them in step).
TABLES: dict[str, dict[str, Any]] = {"channels": _CHANNEL_COLS, "programmes": _PROGRAMME_COLS,
                                     "airings": _AIRING_COLS}


class _Table:
    def __init__(self, store: Inserter, name: str, cols: dict[str, Any], block_rows: int) -> None:
        self.store, self.name, self.cols, self.block_rows = store, name, cols, block_rows
        self.rows: list[tuple[Any, ...]] = []
        self.written = 0

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        columns = {}
        for (name, dtype), values in zip(self.cols.items(), zip(*self.rows, strict=True), strict=True):
            if dtype is object:
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
            else:
                arr = np.array(values, dtype=dtype)
            columns[name] = arr
        self.store.insert_columns(self.name, columns)
        self.written += len(self.rows)
        self.rows = []


@dataclass(slots=True)
class _Channel:
    xmltv_id: str
    channel_id: int
    name: str
    categories: Counter[str] = field(default_factory=Counter)


class _Importer:
    def __init__(self, store: Inserter, stats: ImportStats, channel_map: Mapping[str, int],
                 languages: Sequence[str], block_rows: int, updated_ms: int) -> None:
        self.stats, self.map, self.now = stats, channel_map, updated_ms
        self.langs = [lang.lower() for lang in languages]
        self.programmes = _Table(store, "programmes", _PROGRAMME_COLS, block_rows)
        self.airings = _Table(store, "airings", _AIRING_COLS, block_rows)
        self.channel_table = _Table(store, "channels", _CHANNEL_COLS, block_rows)
        self.channels: dict[str, _Channel] = {}
        self.written: set[int] = set()
        self.unsized: dict[int, tuple[Any, ...]] = {}   # programme rows waiting for a duration
        self.open_airings: list[tuple[int, int, int, int]] = []  # channel, start, programme, length_s
        self.starts: dict[int, list[int]] = {}

    def channel(self, elem: ET.Element) -> None:
        xid = (elem.get("id") or "").strip()
        if not xid:
            self.stats.warn("channel without id ignored")
            return
        lcn_text = (elem.findtext("lcn") or "").strip()
        if xid in self.map:
            cid = int(self.map[xid])
        elif lcn_text.isdigit() and 0 < int(lcn_text) < 2**32:
            cid = int(lcn_text)
        else:
            cid = channel_id_for(xid)
        self.channels[xid] = _Channel(xid, cid, pick(elem, "display-name", self.langs) or xid)

    def programme(self, elem: ET.Element) -> None:
        xid = (elem.get("channel") or "").strip()
        start = parse_time(elem.get("start"))
        title = pick(elem, "title", self.langs)
        if not xid or start is None or not title:
            self.stats.skipped += 1
            self.stats.warn(f"programme without channel, start or title skipped (channel={xid!r})")
            return
        ch = self.channels.get(xid)
        if ch is None:
            cid = int(self.map[xid]) if xid in self.map else channel_id_for(xid)
            ch = self.channels[xid] = _Channel(xid, cid, xid)
        stop = parse_time(elem.get("stop"))
        nums = {(e.get("system") or "").strip(): (e.text or "").strip() for e in elem.findall("episode-num")}
        sub = pick(elem, "sub-title", self.langs)
        category = pick(elem, "category", self.langs)
        length_s = _length(elem)
        pid, cont, series_id, episode_num = self.ids(title, sub, nums, (elem.findtext("date") or "").strip())
        if category:
            ch.categories[category] += 1
        self.starts.setdefault(ch.channel_id, []).append(start)
        if stop is not None and stop <= start:
            stop = None
        duration = length_s if length_s is not None else (stop - start) // 1000 if stop is not None else None
        if pid not in self.written:
            row = (pid, cont, title, sub, category, series_id, episode_num, duration or 0, self.now)
            if duration is not None:
                self.written.add(pid)
                self.unsized.pop(pid, None)
                self.programmes.add(row)
            else:
                self.unsized.setdefault(pid, row)
        if stop is not None:
            self.airings.add((ch.channel_id, start, stop, pid, self.now))
        else:
            self.open_airings.append((ch.channel_id, start, pid, length_s or 0))

    def ids(self, title: str, sub: str, nums: dict[str, str], date: str) -> tuple[int, int, str, str]:
        ns = nums.get("xmltv_ns", "")
        dd = nums.get("dd_progid", "")
        onscreen = nums.get("onscreen", "")
        season, episode, part = xmltv_ns(ns) if ns else (None, None, None)
        if season is not None or episode is not None:
            key = f"ns:{season}.{episode}.{part}"
            episode_num = (f"S{season + 1:02d}" if season is not None else "") + \
                (f"E{episode + 1:02d}" if episode is not None else "")
        elif dd:
            key, episode_num = f"dd:{dd}", onscreen
        elif onscreen:
            key, episode_num = f"on:{norm(onscreen)}", onscreen
        else:
            key, episode_num = "", ""
        series_part = dd.split(".")[0][:10] if dd else ""
        pid_text = nums.get("stb.programme_id", "")
        pid = int(pid_text) if pid_text.isdigit() else stable_hash(
            "p", norm(title), key, norm(sub), "" if key or sub else date)
        cont_text = nums.get("stb.content_id", "")
        cont = int(cont_text) if cont_text.isdigit() else stable_hash(
            "c", f"dd:{series_part}" if series_part else norm(title))
        return pid, cont, series_part or title, episode_num

    def finish(self) -> None:
        order = {c: np.sort(np.array(s, dtype=np.int64)) for c, s in self.starts.items()}
        for cid, start, pid, length_s in self.open_airings:
            later = order[cid]
            j = int(np.searchsorted(later, start, side="right"))
            stop = int(later[j]) if j < len(later) else (start + length_s * 1000 if length_s else None)
            if stop is None:
                self.stats.skipped += 1
                self.stats.warn(f"last programme on channel {cid} at {start} has no stop or length: skipped")
                continue
            self.airings.add((cid, start, stop, pid, self.now))
            row = self.unsized.pop(pid, None)
            if row is not None and pid not in self.written:
                self.written.add(pid)
                self.programmes.add((*row[:7], (stop - start) // 1000, self.now))
        for pid, row in self.unsized.items():  # programmes whose every airing was skipped
            if pid not in self.written:
                self.programmes.add(row)
        for ch in self.channels.values():
            genre = ch.categories.most_common(1)[0][0] if ch.categories else ""
            self.channel_table.add((ch.channel_id, ch.xmltv_id, ch.name, genre, self.now))
        for t in (self.channel_table, self.programmes, self.airings):
            t.flush()
        self.stats.channels = self.channel_table.written
        self.stats.programmes = self.programmes.written
        self.stats.airings = self.airings.written


def _length(elem: ET.Element) -> int | None:
    e = elem.find("length")
    if e is None or not (e.text or "").strip():
        return None
    try:
        value = float((e.text or "").strip())
    except ValueError:
        return None
    scale = {"seconds": 1, "minutes": 60, "hours": 3600}.get((e.get("units") or "minutes").strip(), 60)
    return int(value * scale) if value > 0 else None


def _events(source: EntityFixer) -> Iterator[tuple[str, ET.Element]]:
    try:
        yield from ET.iterparse(source, events=("start", "end"))
    except ET.ParseError as exc:
        raise XmltvError(f"not well-formed XMLTV: {exc}") from None


def import_xmltv(source: str | os.PathLike[str] | IO[bytes], warehouse: Inserter, *, progress: bool = True,
                 channel_map: Mapping[str, int] | None = None, languages: Sequence[str] = ("en",),
                 block_rows: int = 50_000, updated_ms: int | None = None) -> ImportStats:
    """Stream an XMLTV file (path or binary file) into `warehouse`'s EPG tables."""
    stats = ImportStats()
    began = time.monotonic()
    imp = _Importer(warehouse, stats, channel_map or {}, languages, block_rows,
                    int(time.time() * 1000) if updated_ms is None else updated_ms)
    own = isinstance(source, str | os.PathLike)
    raw: IO[bytes] = open(source, "rb") if isinstance(source, str | os.PathLike) else source
    try:
        total = _size(raw)
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc="xmltv") as bar:
            root: ET.Element | None = None
            for event, elem in _events(EntityFixer(raw, bar.update)):
                if event == "start":
                    if root is None:
                        root = elem
                        if elem.tag != "tv":
                            raise XmltvError(f"root element is <{elem.tag}>, not <tv>")
                    continue
                if elem.tag == "channel":
                    imp.channel(elem)
                elif elem.tag == "programme":
                    imp.programme(elem)
                else:
                    continue
                if root is not None:
                    root.clear()
        imp.finish()
    finally:
        if own:
            raw.close()
    stats.seconds = time.monotonic() - began
    return stats


def _size(f: IO[bytes]) -> int | None:
    try:
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return end - here
    except (OSError, ValueError, AttributeError):
        return None


def load_channel_map(path: str | Path) -> dict[str, int]:
    """xmltv id -> channel_id from JSON ({"id": 101, ...}) or CSV (xmltv_id,channel_id rows)."""
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith(".json"):
        return {str(k): int(v) for k, v in json.loads(text).items()}
    return {row[0].strip(): int(row[1]) for row in csv.reader(text.splitlines())
            if len(row) >= 2 and row[1].strip().isdigit()}


DESCRIPTION = """\
Import an XMLTV programme guide into the store's channels, programmes and airings tables
(ReplacingMergeTrees: importing the same guide again is idempotent). See the module
docstring of warehouse/xmltv_import.py for how ids are derived.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m warehouse.xmltv_import", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", metavar="FILE", help="XMLTV file(s); - reads stdin")
    ap.add_argument("--store", required=True, metavar="URL",
                    help="clickhouse://user:pass@host:9000/db or chdb:///abs/path")
    ap.add_argument("--channel-map", metavar="FILE", help="xmltv id -> channel_id, JSON object or CSV rows")
    ap.add_argument("--lang", default="en", help="preferred languages, comma-separated (default en)")
    ap.add_argument("--block-rows", type=int, default=50_000, help="rows per insert (default 50000)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    from warehouse import open_warehouse
    from warehouse.errors import WarehouseError

    mapping = load_channel_map(args.channel_map) if args.channel_map else {}
    try:
        store = open_warehouse(args.store)
    except WarehouseError as exc:
        print(f"xmltv_import: {exc}", file=sys.stderr)
        return 2
    try:
        store.migrate()
        for name in args.files:
            src: str | IO[bytes] = sys.stdin.buffer if name == "-" else name
            try:
                s = import_xmltv(src, store, progress=not args.no_progress, channel_map=mapping,
                                 languages=[x.strip() for x in args.lang.split(",") if x.strip()],
                                 block_rows=args.block_rows)
            except (OSError, XmltvError) as exc:
                print(f"xmltv_import: {name}: {exc}", file=sys.stderr)
                return 1
            print(f"{name}: {s.channels} channels, {s.programmes} programmes, {s.airings} airings, "
                  f"{s.skipped} skipped in {s.seconds:.1f}s", file=sys.stderr)
            for w in s.warnings[:10]:
                print(f"  warning: {w}", file=sys.stderr)
    except WarehouseError as exc:
        print(f"xmltv_import: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
