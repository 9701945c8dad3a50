"""Structured property tests of the XMLTV importer (the raw-bytes side is benchmarks.fuzz_targets).

Any generated document, well-formed or cut short, either imports or raises XmltvError (its
documented error), never another exception; a generated valid guide round-trips: every
airing with its channel, times and programme id, every title, every channel name.
"""

from __future__ import annotations

import calendar
import io
import time
from xml.sax.saxutils import escape, quoteattr

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_xmltv import FakeWarehouse
from warehouse.xmltv_import import XmltvError, channel_id_for, import_xmltv

T0 = calendar.timegm((2026, 12, 1, 0, 0, 0)) * 1000
SETTINGS = settings(derandomize=True, database=None, max_examples=40, deadline=None)
# XML 1.0 characters (no controls, no surrogates), '&' '<' and non-ASCII included.
xml_text = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
                   max_size=12)
names = xml_text.map(str.strip).filter(bool)
ids = st.from_regex(r"[a-z][a-z0-9.]{0,10}", fullmatch=True)


def stamp(ms: int, offset_min: int) -> str:
    t = ms // 1000 + offset_min * 60
    y, mo, d, h, mi, s = time.gmtime(t)[:6]
    sign = "-" if offset_min < 0 else "+"
    return f"{y:04d}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d} {sign}{abs(offset_min) // 60:02d}{abs(offset_min) % 60:02d}"


odd_attr = st.one_of(st.none(), xml_text, st.sampled_from(["20261301000000", "2026", "20261201 +99", "x", ""]))


@st.composite
def any_programme(draw: st.DrawFn) -> str:
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in (("channel", draw(odd_attr)), ("start", draw(odd_attr)),
                                                          ("stop", draw(odd_attr))) if v is not None)
    kids = draw(st.lists(st.sampled_from(["title", "sub-title", "category", "date", "length", "episode-num"])
                         .flatmap(lambda tag: xml_text.map(lambda t: f"<{tag}>{escape(t)}</{tag}>")), max_size=4))
    return f"<programme{attrs}>{''.join(kids)}</programme>"


@st.composite
def any_document(draw: st.DrawFn) -> bytes:
    root = draw(st.sampled_from(["tv", "tv", "tv", "guide"]))
    body = draw(st.lists(st.one_of(any_programme(), names.map(lambda n: f"<channel id={quoteattr(n)}/>"),
                                   st.just("&eacute;&nbsp;& stray"), st.just("<!-- c -->")), max_size=6))
    doc = f"<?xml version=\"1.0\"?><{root}>{''.join(body)}</{root}>".encode()
    cut = draw(st.one_of(st.just(len(doc)), st.integers(0, len(doc))))
    return doc[:cut]


@SETTINGS
@given(any_document())
def test_any_document_imports_or_raises_xmltv_error(doc: bytes) -> None:
    store = FakeWarehouse()
    try:
        stats = import_xmltv(io.BytesIO(doc), store, progress=False)
    except XmltvError:
        return
    written = len(store.table("airings")["start_ms"]) if "airings" in store.blocks else 0
    assert stats.airings == written


@st.composite
def guide(draw: st.DrawFn) -> tuple[dict[str, str], list[tuple[str, int, int, int, str]]]:
    channels = draw(st.dictionaries(ids, names, min_size=1, max_size=3))
    airings = []
    for xid in channels:
        start = T0 + draw(st.integers(0, 1000)) * 60_000
        for pid in draw(st.lists(st.integers(1, 2**63 - 1), min_size=1, max_size=4)):
            stop = start + draw(st.integers(1, 240)) * 60_000
            airings.append((xid, start, stop, pid, draw(names)))
            start = stop
    return channels, airings


@SETTINGS
@given(guide(), st.sampled_from([0, 60, -300, 330]))
def test_a_valid_guide_round_trips(g: tuple[dict[str, str], list[tuple[str, int, int, int, str]]],
                                   offset: int) -> None:
    channels, airings = g
    xml = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?><tv>"]
    xml += [f"<channel id={quoteattr(x)}><display-name>{escape(n)}</display-name></channel>"
            for x, n in channels.items()]
    xml += [f"<programme channel={quoteattr(x)} start=\"{stamp(a, offset)}\" stop=\"{stamp(b, offset)}\">"
            f"<title>{escape(t)}</title><episode-num system=\"stb.programme_id\">{p}</episode-num></programme>"
            for x, a, b, p, t in airings]
    xml.append("</tv>")
    store = FakeWarehouse()
    import_xmltv(io.BytesIO("".join(xml).encode()), store, progress=False)
    got = store.table("airings")
    assert sorted(zip(got["channel_id"].tolist(), got["start_ms"].tolist(), got["stop_ms"].tolist(),
                      got["programme_id"].tolist(), strict=True)) == \
        sorted((channel_id_for(x), a, b, p) for x, a, b, p, _ in airings)
    progs = store.table("programmes")
    first_title: dict[int, str] = {}
    for _, _, _, p, t in airings:
        first_title.setdefault(p, t)
    assert dict(zip(progs["programme_id"].tolist(), progs["title"].tolist(), strict=True)) == first_title
    chans = store.table("channels")
    assert dict(zip(chans["xmltv_id"].tolist(), chans["name"].tolist(), strict=True)) == channels
