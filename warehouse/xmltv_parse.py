"""The XMLTV importer's small parsers: times, stable ids, languages, and a reader that repairs the
HTML named entities and stray '&' real-world guides carry (warehouse/xmltv_import.py uses them)."""

from __future__ import annotations

import calendar
import hashlib
import html.entities
import re
import zlib
from collections.abc import Sequence
from typing import IO, Any
from xml.etree import ElementTree as ET

MASK63 = (1 << 63) - 1
_TIME = re.compile(r"\s*(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?"
                   r"\s*(?:([+-])(\d{2}):?(\d{2})|Z|UTC|GMT)?\s*$")
_ENTITY = re.compile(rb"&(#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]{0,31};)?")
_XML_ENTITIES = {b"amp;", b"lt;", b"gt;", b"quot;", b"apos;"}


def parse_time(text: str | None) -> int | None:
    """XMLTV time ("YYYYMMDDhhmmss +hhmm", seconds/minutes/offset optional) -> unix ms."""
    if not text:
        return None
    m = _TIME.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:6])
    try:
        t = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if m.group(7):
        offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
        t -= offset if m.group(7) == "+" else -offset
    return t * 1000


def stable_hash(*parts: str) -> int:
    """63-bit non-zero id from strings (blake2b, so stable across runs and platforms)."""
    h = int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest(), "big")
    return (h & MASK63) or 1


def channel_id_for(xmltv_id: str) -> int:
    return zlib.crc32(xmltv_id.encode("utf-8")) or 1


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def xmltv_ns(text: str) -> tuple[int | None, int | None, int | None]:
    out: list[int | None] = []
    for part in [*text.split("."), "", ""][:3]:
        head = part.split("/")[0].strip()
        out.append(int(head) if head.isdigit() else None)
    return out[0], out[1], out[2]


def pick(elem: ET.Element, tag: str, languages: Sequence[str]) -> str:
    """Text of the child `tag` in the first preferred language present, else the first one."""
    found = [(c.get("lang", ""), (c.text or "").strip()) for c in elem.findall(tag)]
    found = [(lang, t) for lang, t in found if t]
    for want in languages:
        for lang, t in found:
            if lang.split("-")[0].lower() == want:
                return t
    return found[0][1] if found else ""


class EntityFixer:
    """A binary reader that repairs HTML named entities and bare '&' on the fly."""

    def __init__(self, raw: IO[bytes], on_read: Any = None) -> None:
        self._raw, self._carry, self._on_read = raw, b"", on_read

    def read(self, n: int = -1) -> bytes:
        while True:
            data = self._raw.read(n if n and n > 0 else 1 << 16)
            if self._on_read is not None and data:
                self._on_read(len(data))
            buf = self._carry + data
            self._carry = b""
            if data:
                amp = buf.rfind(b"&")
                if amp != -1 and b";" not in buf[amp:] and len(buf) - amp < 40:
                    buf, self._carry = buf[:amp], buf[amp:]
            if buf or not data:
                return _ENTITY.sub(_fix_entity, buf)

    def close(self) -> None:
        pass


def _fix_entity(m: re.Match[bytes]) -> bytes:
    ref = m.group(1)
    if ref is None:
        return b"&amp;"
    if ref.startswith(b"#") or ref in _XML_ENTITIES:
        return m.group(0)
    cp = html.entities.name2codepoint.get(ref[:-1].decode("ascii"))
    return b"&#%d;" % cp if cp is not None else b"&amp;" + ref
