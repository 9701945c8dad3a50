"""Write the simulated guide as XMLTV, streaming (files of a month of 120 channels are large).

    write_xmltv(epg, "guide.xml")                 # or an open text file
    python -m firmware_sim.xmltv guide.xml --days 7 --seed 1 --size medium --start 2025-03-03

What is written (the XMLTV DTD's element order, plus the de-facto `<lcn>`):

    <channel id="ch101.sim"><display-name lang="en">Vista</display-name><lcn>101</lcn></channel>
    <programme start="20250303190000 +0000" stop="20250303200000 +0000" channel="ch101.sim">
      <title lang="en">…</title> <sub-title lang="en">episode title</sub-title>
      <category lang="en">Drama</category> <length units="seconds">3600</length>
      <episode-num system="xmltv_ns">2.4.</episode-num>          series: season-1 . episode-1 .
      <episode-num system="stb.programme_id">2243000041</episode-num>
      <episode-num system="stb.content_id">2243</episode-num>
      <new/> (premieres) or <previously-shown/> (repeats)
    </programme>

The two `stb.*` episode-num systems carry the simulator's ids, so `warehouse.xmltv_import`
gets exactly the same programme_id / content_id back; `<length>` is the running time
(`programmes.duration_s`), which for films is shorter than the slot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import escape, quoteattr

from firmware_sim.epg import Epg, episode_title

GENERATOR = "stb-telemetry firmware_sim"


def xmltv_time(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms // 1000, dt.UTC).strftime("%Y%m%d%H%M%S +0000")


def write_xmltv(epg: Epg, dest: str | Path | TextIO, *, start_ms: int | None = None,
                stop_ms: int | None = None) -> int:
    """Write channels and the airings overlapping [start_ms, stop_ms) (default: the whole guide).

    Returns the number of `<programme>` elements (airings) written.
    """
    if isinstance(dest, str | Path):
        with open(dest, "w", encoding="utf-8", newline="\n") as f:
            return _write(epg, f, start_ms, stop_ms)
    return _write(epg, dest, start_ms, stop_ms)


def _write(epg: Epg, out: TextIO, start_ms: int | None, stop_ms: int | None) -> int:
    w = out.write
    w('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n')
    w(f'<tv generator-info-name={quoteattr(GENERATOR)} source-info-name="simulated">\n')
    for c in epg.channels:
        w(f"  <channel id={quoteattr(c.xmltv_id)}>\n"
          f'    <display-name lang="en">{escape(c.name)}</display-name>\n'
          f"    <lcn>{c.channel_id}</lcn>\n  </channel>\n")
    a = epg.airings
    lo = start_ms if start_ms is not None else epg.start_ms
    hi = stop_ms if stop_ms is not None else epg.end_ms
    keep = (a["start_ms"] < hi) & (a["stop_ms"] > lo)
    xmltv_ids = [quoteattr(c.xmltv_id) for c in epg.channels]
    # Per-programme text is the same at every airing: build it once.
    cache: dict[int, str] = {}
    n = 0
    chunk: list[str] = []
    for ch, start, stop, row, new in zip(a["channel_idx"][keep].tolist(), a["start_ms"][keep].tolist(),
                                         a["stop_ms"][keep].tolist(), a["programme_idx"][keep].tolist(),
                                         a["is_new"][keep].tolist(), strict=True):
        body = cache.get(row)
        if body is None:
            body = cache[row] = _programme_body(epg, row)
        chunk.append(f"  <programme start=\"{xmltv_time(start)}\" stop=\"{xmltv_time(stop)}\" "
                     f"channel={xmltv_ids[ch]}>\n{body}"
                     f"    {'<new />' if new else '<previously-shown />'}\n  </programme>\n")
        n += 1
        if len(chunk) >= 2000:
            w("".join(chunk))
            chunk.clear()
    w("".join(chunk))
    w("</tv>\n")
    return n


def _programme_body(epg: Epg, row: int) -> str:
    p = epg.programmes[row]
    c = epg.contents[int(p["content_idx"])]
    parts = [f'    <title lang="en">{escape(c.title)}</title>\n']
    sub = episode_title(c, int(p["episode_index"]))
    if sub:
        parts.append(f'    <sub-title lang="en">{escape(sub)}</sub-title>\n')
    parts.append(f'    <category lang="en">{escape(c.genre)}</category>\n')
    parts.append(f'    <length units="seconds">{int(p["duration_s"])}</length>\n')
    if p["season"]:
        parts.append(f'    <episode-num system="xmltv_ns">{int(p["season"]) - 1}.{int(p["episode"]) - 1}.'
                     f"</episode-num>\n")
    parts.append(f'    <episode-num system="stb.programme_id">{int(p["programme_id"])}</episode-num>\n')
    parts.append(f'    <episode-num system="stb.content_id">{c.content_id}</episode-num>\n')
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_sim.xmltv",
                                 description="Write a simulated programme guide as XMLTV.")
    ap.add_argument("out", help="output file, - for stdout")
    ap.add_argument("--start", default=dt.date.today().isoformat(), help="first day, YYYY-MM-DD (UTC)")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", default="medium", help="small, medium, large or a channel count")
    args = ap.parse_args(argv)
    size: str | int = int(args.size) if args.size.isdigit() else args.size
    epg = Epg.generate(dt.date.fromisoformat(args.start), args.days, args.seed, size)
    n = write_xmltv(epg, sys.stdout if args.out == "-" else args.out)
    print(f"{len(epg.channels)} channels, {n} airings", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
