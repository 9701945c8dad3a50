"""Tags of a day from the catalogue, written to `household_tags` by one INSERT ... SELECT.

Every rule becomes a SELECT of (household_id, tag, score) over the day's profiles (crm.fields),
joined by UNION ALL; tag names and words are parameters, fields come from the whitelist, numbers
are formatted from typed values. Fractions (top 20 %, rank bands) are quantiles computed first.
A run's rows share one `computed_ms`: readers take the newest run of a day (a re-run replaces the
tags of that day without leaving stale ones visible).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from crm.catalogue import Band, Catalogue
from crm.fields import FIELDS, base_sql
from warehouse import Warehouse


def latest_run_sql(db: str) -> str:
    """The newest tag run of day %(day)s (0 when there is none)."""
    return f"SELECT max(computed_ms) FROM {db}.household_tags WHERE day = toDate(%(day)s)"


def _num(x: float) -> str:
    return repr(float(x))


def _band_cond(field: str, band: Band) -> str:
    f = FIELDS[field]
    conds = ["status != ''"] if f.subscriber else []
    if band.min is not None:
        conds.append(f"{f.sql} >= {_num(band.min)}")
    if band.max is not None:
        conds.append(f"{f.sql} < {_num(band.max)}")
    return " AND ".join(conds) or "1"


def _quantiles(wh: Warehouse, cat: Catalogue, params: dict[str, Any]) -> dict[str, float]:
    exprs = {}
    for i, (_, field, fraction) in enumerate(cat.top_fractions):
        exprs[f"top{i}"] = f"quantileExactIf({_num(1 - fraction)})({FIELDS[field].sql}, {FIELDS[field].sql} > 0)"
    for i, (field, items) in enumerate(cat.rank_bands):
        for j, (_, upto) in enumerate(items):
            exprs[f"rank{i}_{j}"] = f"quantileExactIf({_num(1 - upto)})({FIELDS[field].sql}, status != '')"
    if not exprs:
        return {}
    got = wh.query_rows("SELECT " + ", ".join(f"{e} AS {k}" for k, e in exprs.items()) +
                        f" FROM ({base_sql(wh.database)})", params)
    return {k: float(v) for k, v in zip(exprs, got[0], strict=True)}


def tags_sql(wh: Warehouse, day: dt.date, cat: Catalogue) -> tuple[str, dict[str, Any]]:
    db = wh.database
    params: dict[str, Any] = {"day": day.isoformat()}
    q = _quantiles(wh, cat, params)
    base = base_sql(db)
    parts: list[str] = []

    def param(value: str) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return f"%({name})s"

    def select(tag_sql: str, score_sql: str, where: str) -> None:
        parts.append(f"SELECT household_id, toString({tag_sql}) AS tag, toFloat64({score_sql}) AS score "
                     f"FROM ({base}) WHERE {where}")

    if cat.category_prefix:
        parts.append(f"""SELECT household_id, concat({param(cat.category_prefix)},
                                replaceRegexpAll(lowerUTF8(cm.1), '[^a-z0-9]+', '_')) AS tag,
                                toFloat64(cm.2 / minutes_28d) AS score
            FROM (SELECT household_id, minutes_28d,
                         arrayJoin(arrayMap((c, m) -> (c, m), category_names, category_minutes)) AS cm
                  FROM {db}.household_profiles FINAL WHERE day = toDate(%(day)s))
            WHERE cm.1 != '' AND cm.2 >= {_num(cat.category_min_minutes)}
                  AND cm.2 >= {_num(cat.category_min_share)} * minutes_28d""")
    for i, rule in enumerate(cat.matches):
        parts.append(f"""SELECT household_id, toString({param(rule.tag)}) AS tag, toFloat64(match_minutes[{i + 1}])
                             AS score
            FROM {db}.household_profiles FINAL
            WHERE day = toDate(%(day)s) AND length(match_minutes) > {i}
                  AND match_minutes[{i + 1}] >= {_num(rule.min_minutes)}""")
    for field, band in cat.thresholds:
        select(param(band.tag), FIELDS[field].sql, _band_cond(field, band))
    for i, (tag, field, _) in enumerate(cat.top_fractions):
        f = FIELDS[field].sql
        select(param(tag), f, f"{f} > 0 AND {f} >= {_num(q[f'top{i}'])}")
    if cat.product_prefix:
        parts.append(f"""SELECT household_id, concat({param(cat.product_prefix)}, code) AS tag, toFloat64(1) AS score
            FROM (SELECT household_id, arrayJoin(splitByChar(';', products)) AS code FROM ({base})
                  WHERE status IN ('active', 'suspended'))
            WHERE code != ''""")
    for field, bands in cat.bands:
        for band in bands:
            select(param(band.tag), FIELDS[field].sql, _band_cond(field, band))
    for i, (field, items) in enumerate(cat.rank_bands):
        f = FIELDS[field].sql
        for j, (tag, _) in enumerate(items):
            cond = f"status != '' AND {f} >= {_num(q[f'rank{i}_{j}'])}"
            if j:
                cond += f" AND {f} < {_num(q[f'rank{i}_{j - 1}'])}"
            select(param(tag), f, cond)
    for rules in cat.first_of:
        cases = ", ".join(f"{_band_cond(field, band) if field else '1'}, {param(band.tag)}" for field, band in rules)
        select(f"multiIf({cases}, '')", "1", "1")
    # Tags written by other commands for the day (crm churn score: risk.churn_*) are carried into the new
    # run, so re-profiling a scored day does not drop them (readers see only the newest run).
    parts.append(f"""SELECT household_id, tag, score FROM {db}.household_tags
            WHERE day = toDate(%(day)s) AND substring(tag, 1, 11) = 'risk.churn_'
                  AND computed_ms = ({latest_run_sql(db)})""")
    if len(parts) == 1:
        return "", params
    union = "\n            UNION ALL\n".join(parts)
    sql = f"""INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms)
        SELECT household_id, tag, splitByChar('.', tag)[1], score, toDate(%(day)s), {int(time.time() * 1000)}
        FROM ({union})
        WHERE tag != ''"""
    return sql, params


def build_tags(warehouse: Warehouse, day: dt.date, cat: Catalogue) -> dict[str, int]:
    """Write the day's tags; returns households per tag for the run."""
    sql, params = tags_sql(warehouse, day, cat)
    if sql:
        warehouse.query_rows(sql, params)
    rows = warehouse.query_rows(
        f"SELECT tag, count() FROM {warehouse.database}.household_tags FINAL WHERE day = toDate(%(day)s) "
        f"AND computed_ms = ({latest_run_sql(warehouse.database)}) GROUP BY tag ORDER BY tag", params)
    return {str(t): int(n) for t, n in rows}
