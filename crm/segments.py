"""Segments: count, list and save households matching an expression (crm.segment_parser).

    count(warehouse, "interest.football and value in (high, mid)")        -> int
    members(warehouse, expr, limit=100)                                   -> list of household ids
    save(warehouse, "football-fans", expr)                                -> version
    count(warehouse, "@football-fans")                                    # a saved segment, newest version

An expression is evaluated on a day's profiles and tags: by default the newest profiled day
(`python -m crm profile`). Saved segments are versioned in `segments`: saving a name again adds
a version, and "@name" means its newest one.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Final

import numpy as np

from crm.credit import HouseholdFilter
from crm.errors import NoData, SegmentError
from crm.segment_parser import parse
from crm.segment_sql import compile_segment
from crm.tags import latest_run_sql
from warehouse import Warehouse

NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def latest_day(warehouse: Warehouse, until: dt.date | None = None) -> dt.date:
    """The newest day with profiles (on or before `until`)."""
    cond = " WHERE day <= toDate(%(until)s)" if until else ""
    got = warehouse.query_rows(f"SELECT toString(max(day)), count() FROM {warehouse.database}.household_profiles"
                               f"{cond}", {"until": until.isoformat()} if until else None)
    if not got or int(got[0][1]) == 0:
        raise NoData("no household profiles" + (f" on or before {until.isoformat()}" if until else "") +
                     ": run `python -m crm profile` first")
    return dt.date.fromisoformat(str(got[0][0]))


def resolve(warehouse: Warehouse, expr: str) -> str:
    """The expression itself, or a saved segment's newest expression for "@name"."""
    text = expr.strip()
    if not text.startswith("@"):
        return expr
    name = text[1:]
    if not NAME.fullmatch(name):
        raise SegmentError(f"bad segment name {name!r} at 2 (lower case letters, digits, _ and -)", position=2)
    got = warehouse.query_rows(f"SELECT expression FROM {warehouse.database}.segments WHERE name = %(name)s "
                               "ORDER BY version DESC LIMIT 1", {"name": name})
    if not got:
        raise SegmentError(f"no saved segment named {name!r}", position=1)
    return str(got[0][0])


def query(warehouse: Warehouse, expr: str, day: dt.date | None = None) -> tuple[str, dict[str, Any]]:
    node = parse(resolve(warehouse, expr))
    sql, params = compile_segment(node, warehouse.database)
    params["day"] = (day or latest_day(warehouse)).isoformat()
    params["run"] = int(warehouse.query_rows(latest_run_sql(warehouse.database), params)[0][0] or 0)
    return sql, params


def count(warehouse: Warehouse, expr: str, day: dt.date | None = None) -> int:
    sql, params = query(warehouse, expr, day)
    return int(warehouse.query_rows(f"SELECT count() FROM ({sql})", params)[0][0])


def members(warehouse: Warehouse, expr: str, day: dt.date | None = None, limit: int | None = None) -> np.ndarray:
    sql, params = query(warehouse, expr, day)
    tail = f" LIMIT {int(limit)}" if limit else ""
    return warehouse.query_columns(f"SELECT household_id FROM ({sql}) ORDER BY household_id{tail}",
                                   params)["household_id"]


def household_filter(warehouse: Warehouse, expr: str, day: dt.date | None = None) -> HouseholdFilter:
    """The segment as a subquery other queries restrict households with (ratings --segment)."""
    sql, params = query(warehouse, expr, latest_day(warehouse, day))
    return HouseholdFilter(sql, params)


def save(warehouse: Warehouse, name: str, expr: str) -> int:
    """Save a new version of a named segment (validated first); returns its version."""
    if not NAME.fullmatch(name):
        raise SegmentError(f"bad segment name {name!r} (lower case letters, digits, _ and -, at most 64)")
    if expr.strip().startswith("@"):
        raise SegmentError("a saved segment is an expression, not a reference to another", position=1)
    parse(expr)
    got = warehouse.query_rows(f"SELECT max(version) FROM {warehouse.database}.segments WHERE name = %(name)s",
                               {"name": name})
    version = int(got[0][0] or 0) + 1 if got else 1

    def text(value: str) -> np.ndarray:
        out = np.empty(1, dtype=object)
        out[0] = value
        return out

    warehouse.insert_columns("segments", {"name": text(name), "version": np.array([version], dtype=np.uint32),
                                          "expression": text(expr),
                                          "created_ms": np.array([int(time.time() * 1000)], dtype=np.int64)})
    return version


def saved(warehouse: Warehouse) -> list[tuple[str, int, str]]:
    """(name, newest version, its expression) of every saved segment."""
    rows = warehouse.query_rows(
        f"SELECT name, max(version) AS v, argMax(expression, version) FROM {warehouse.database}.segments "
        "GROUP BY name ORDER BY name")
    return [(str(n), int(v), str(e)) for n, v, e in rows]
