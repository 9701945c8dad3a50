"""The tag catalogue (crm/catalogue.toml, or an operator's copy): loaded, validated, typed.

Rules are data, never SQL: tag names and match words become query parameters, fields are looked
up in crm.fields.FIELDS, thresholds are numbers. Every problem is reported at once.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from crm.errors import CatalogueError
from crm.fields import FIELDS

LEVELS: Final = ("interest", "behaviour", "product", "value", "lifecycle", "risk")
DEFAULT_PATH: Final = Path(__file__).with_name("catalogue.toml")
_TAG: Final = re.compile(r"[a-z]+\.[a-z0-9_][a-z0-9_.-]{0,62}")
_PREFIX: Final = re.compile(r"[a-z]+\.([a-z0-9_][a-z0-9_.-]{0,30})?")


@dataclass(frozen=True)
class Band:
    tag: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class MatchRule:
    tag: str
    min_minutes: float
    title_contains: tuple[str, ...]
    category_equals: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    category_prefix: str = ""           # "" = no interest-by-category tags
    category_min_share: float = 0.2
    category_min_minutes: float = 120.0
    matches: tuple[MatchRule, ...] = ()
    thresholds: tuple[tuple[str, Band], ...] = ()          # (field, band)
    top_fractions: tuple[tuple[str, str, float], ...] = ()  # (tag, field, fraction)
    product_prefix: str = ""
    bands: tuple[tuple[str, tuple[Band, ...]], ...] = ()    # (field, bands)
    rank_bands: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()  # (field, ((tag, upto), ...))
    first_of: tuple[tuple[tuple[str, Band], ...], ...] = ()  # rules: (field or "", band)

    def tags(self) -> list[str]:
        """Every fixed tag name (not the per-category and per-product ones)."""
        out = [m.tag for m in self.matches] + [b.tag for _, b in self.thresholds]
        out += [t for t, _, _ in self.top_fractions] + [b.tag for _, bs in self.bands for b in bs]
        out += [t for _, bs in self.rank_bands for t, _ in bs] + [b.tag for rules in self.first_of for _, b in rules]
        return out


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    path = Path(path) if path else DEFAULT_PATH
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"tag catalogue {path}: {exc}") from None
    problems: list[str] = []
    cat = _parse(doc, problems)
    if problems:
        raise CatalogueError(f"tag catalogue {path}: " + "; ".join(problems))
    return cat


def _parse(doc: dict[str, Any], problems: list[str]) -> Catalogue:
    known = {"interest_by_category", "match", "threshold", "top_fraction", "products", "bands", "rank_bands",
             "first_of"}
    for key in sorted(set(doc) - known):
        problems.append(f"unknown section {key!r} (known: {', '.join(sorted(known))})")

    def tag(value: Any, where: str) -> str:
        if not isinstance(value, str) or not _TAG.fullmatch(value) or value.split(".")[0] not in LEVELS:
            problems.append(f"{where}: tag {value!r} is not <level>.<name> with level one of {', '.join(LEVELS)}")
            return "invalid.tag"
        return value

    def field(value: Any, where: str) -> str:
        if value not in FIELDS or FIELDS[value].kind != "number":
            problems.append(f"{where}: field {value!r} is not a numeric field ({', '.join(sorted(FIELDS))})")
        return str(value)

    def number(table: dict[str, Any], key: str, where: str, default: float | None = None) -> float | None:
        value = table.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{where}: {key} must be a number")
            return default
        return None if value is None else float(value)

    def band(table: Any, where: str, with_field: bool = False) -> tuple[str, Band]:
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table")
            return "", Band("invalid.tag")
        f = field(table.get("field"), where) if with_field and "field" in table else ""
        return f, Band(tag(table.get("tag"), where), number(table, "min", where), number(table, "max", where))

    out: dict[str, Any] = {}
    if "interest_by_category" in doc:
        t = doc["interest_by_category"]
        prefix = t.get("prefix", "interest.")
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or prefix.split(".")[0] not in LEVELS:
            problems.append(f"interest_by_category: bad prefix {prefix!r}")
        out.update(category_prefix=str(prefix), category_min_share=number(t, "min_share", "interest_by_category", 0.2),
                   category_min_minutes=number(t, "min_minutes", "interest_by_category", 120.0))
    matches = []
    for i, t in enumerate(doc.get("match", [])):
        words = [w for w in (*t.get("title_contains", []), *t.get("category_equals", [])) if not isinstance(w, str)]
        if words or not (t.get("title_contains") or t.get("category_equals")):
            problems.append(f"match[{i}]: title_contains and category_equals: lists of strings, at least one word")
        matches.append(MatchRule(tag(t.get("tag"), f"match[{i}]"), number(t, "min_minutes", f"match[{i}]", 0.0) or 0.0,
                                 tuple(map(str, t.get("title_contains", []))),
                                 tuple(map(str, t.get("category_equals", [])))))
    out["matches"] = tuple(matches)
    out["thresholds"] = tuple(band({**t, "field": t.get("field")}, f"threshold[{i}]", True)
                              for i, t in enumerate(doc.get("threshold", [])))
    tops = []
    for i, t in enumerate(doc.get("top_fraction", [])):
        fraction = number(t, "fraction", f"top_fraction[{i}]", 0.0) or 0.0
        if not 0 < fraction <= 1:
            problems.append(f"top_fraction[{i}]: fraction must be in (0, 1]")
        tops.append((tag(t.get("tag"), f"top_fraction[{i}]"), field(t.get("field"), f"top_fraction[{i}]"), fraction))
    out["top_fractions"] = tuple(tops)
    if "products" in doc:
        prefix = doc["products"].get("prefix", "product.")
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or prefix.split(".")[0] not in LEVELS:
            problems.append(f"products: bad prefix {prefix!r}")
        out["product_prefix"] = str(prefix)
    out["bands"] = tuple((field(t.get("field"), f"bands[{i}]"),
                          tuple(band(b, f"bands[{i}]")[1] for b in t.get("bands", [])))
                         for i, t in enumerate(doc.get("bands", [])))
    ranks = []
    for i, t in enumerate(doc.get("rank_bands", [])):
        items = tuple((tag(b.get("tag"), f"rank_bands[{i}]"), number(b, "upto", f"rank_bands[{i}]", 1.0) or 1.0)
                      for b in t.get("bands", []))
        if [u for _, u in items] != sorted(u for _, u in items) or any(not 0 < u <= 1 for _, u in items):
            problems.append(f"rank_bands[{i}]: upto must increase within (0, 1]")
        ranks.append((field(t.get("field"), f"rank_bands[{i}]"), items))
    out["rank_bands"] = tuple(ranks)
    out["first_of"] = tuple(tuple(band(r, f"first_of[{i}]", True) for r in t.get("rules", []))
                            for i, t in enumerate(doc.get("first_of", [])))
    return Catalogue(**out)
