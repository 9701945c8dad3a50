"""/audience: ratings, reach and share (ratings_daily, written by `python -m crm ratings`) of a day or
of a range of days, by channel, programme or daypart, with the daypart curve and the share as charts,
the trend by day, and every table as CSV (/audience.csv).

A range is read one day at a time (one small statement a day): up to AUDIENCE_DIRECT_DAYS days
with ratings it is answered at once, a longer one runs as a background job with progress
(console.reports). Over a range, channels and dayparts show the mean of the days with ratings (a
label missing on a day counts 0 that day); programmes are airings, so each keeps its own day.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.charts import bars, lines
from console.db import Db
from console.reports import AUDIENCE_DIRECT_DAYS, Report, answer, is_long, run_here, start
from console.web import Console
from crm.settings import DaypartSettings

GROUPINGS = ("channel", "programme", "daypart")
_COLUMNS = ("label", "rating", "reach", "share", "avg_minutes", "reached", "universe")
_MEANS = ("rating", "reach", "share", "avg_minutes", "reached", "universe")
KNOWN_DAYS = 400  # the newest days with ratings offered in the day and range pickers
PAGE_ROWS = 200
RANGE_ROWS_PER_DAY = 1000  # a range step reads this many rows of each grouping (channels: all of them)


async def _days(c: Console) -> list[str]:
    rows = await c.db.rows("SELECT DISTINCT toString(day) AS d FROM {db}.ratings_daily WHERE segment = '' "
                           f"ORDER BY d DESC LIMIT {KNOWN_DAYS}")
    return [str(r[0]) for r in rows]


def _names(db: Db) -> dict[int, str]:
    return {int(i): str(n) for i, n in db.rows_now("SELECT channel_id, argMax(name, updated_ms) "
                                                   "FROM {db}.channels GROUP BY channel_id")}


def tables_now(db: Db, day: str, groupings: tuple[str, ...], names: dict[int, str], limit: int = PAGE_ROWS
               ) -> dict[str, list[dict[str, Any]]]:
    """One day's rows for each grouping, best rated first, in one statement (blocking: a report step)."""
    wanted = ", ".join(f"'{g}'" for g in groupings if g in GROUPINGS)
    rows = db.rows_now(
        "SELECT by, channel_id, start_ms, title, daypart, rating, reach, share, avg_minutes, reached, universe "
        f"FROM {{db}}.ratings_daily FINAL WHERE day = toDate(%(day)s) AND by IN ({wanted}) AND segment = '' "
        f"ORDER BY by, rating DESC LIMIT {int(limit)} BY by", {"day": day})
    out: dict[str, list[dict[str, Any]]] = {g: [] for g in groupings}
    for by, ch, start_ms, title, daypart, rating, reach, share, avg_min, reached, universe in rows:
        label = {"channel": names.get(int(ch), f"channel {ch}"), "daypart": str(daypart),
                 "programme": f"{title} ({names.get(int(ch), ch)})"}[str(by)]
        out[str(by)].append({"label": label, "start_ms": int(start_ms), "rating": float(rating),
                             "reach": float(reach), "share": float(share), "avg_minutes": float(avg_min),
                             "reached": int(reached), "universe": int(universe)})
    return out


def table_now(db: Db, day: str, by: str, limit: int = PAGE_ROWS) -> list[dict[str, Any]]:
    """One day's rows for a grouping, best rated first (blocking)."""
    return tables_now(db, day, (by,), _names(db), limit)[by]


async def table(c: Console, day: str, by: str, limit: int = PAGE_ROWS) -> list[dict[str, Any]]:
    return await asyncio.to_thread(table_now, c.db, day, by, limit)


def _range_day(db: Db, day: str, by: str, names: dict[int, str]
               ) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], float]:
    """A range's step: the day's rows by the grouping, its dayparts and its total rating (the sum over
    channels), one statement."""
    got = tables_now(db, day, tuple(dict.fromkeys((by, "daypart", "channel"))), names, RANGE_ROWS_PER_DAY)
    return day, got[by][:PAGE_ROWS], got["daypart"], sum(r["rating"] for r in got["channel"])


def mean_of_days(days: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per label, the mean over the days (a label missing on a day counts 0), best rated first."""
    sums: dict[str, dict[str, float]] = {}
    for rows in days:
        for row in rows:
            acc = sums.setdefault(row["label"], dict.fromkeys(_MEANS, 0.0))
            for k in _MEANS:
                acc[k] += row[k]
    n = max(len(days), 1)
    out = [{"label": label, **{k: v / n for k, v in acc.items()}} for label, acc in sums.items()]
    return sorted(out, key=lambda r: -r["rating"])


def _charts(by: str, rows: list[dict[str, Any]], dayparts: list[dict[str, Any]],
            trend: list[tuple[str, float]]) -> dict[str, Any]:
    curve = lines({"rating %": [(f"{i}:{r['label']}", 100 * r["rating"]) for i, r in
                                enumerate(sorted(dayparts, key=_daypart_order))]}, title="Rating by daypart")
    share = bars([(r["label"], 100 * r["share"]) for r in rows[:20]], title=f"Share by {by}, %")
    trend_chart = lines({"total rating %": [(d, 100 * t) for d, t in trend]},
                        title="Total rating by day (all channels)")
    return {"by": by, "rows": rows, "curve": curve, "share": share, "trend_chart": trend_chart}


def range_report(c: Console, days: list[str], names: dict[int, str], first: str, last: str, by: str) -> Report:
    chosen = sorted(d for d in days if first <= d <= last)

    def finish(results: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], float]]) -> dict[str, Any]:
        if by == "programme":
            rows = sorted(({**r, "label": f"{d} {r['label']}"} for d, day_rows, _, _ in results for r in day_rows),
                          key=lambda r: -r["rating"])[:PAGE_ROWS]
        else:
            rows = mean_of_days([r for _, r, _, _ in results])[:PAGE_ROWS]
        return {**_charts(by, rows, mean_of_days([p for _, _, p, _ in results]), [(d, t) for d, _, _, t in results]),
                "first": first, "last": last, "n_days": len(results),
                "csv_href": f"/audience.csv?from={first}&to={last}&by={by}"}

    return Report(f"audience:{first}:{last}:{by}", f"Audience, {first} to {last} by {by}", "audience_report.html",
                  [partial(_range_day, c.db, d, by, names) for d in chosen], finish, AUDIENCE_DIRECT_DAYS)


def csv_report(c: Console, days: list[str], names: dict[int, str], first: str, last: str, by: str) -> Report:
    chosen = sorted(d for d in days if first <= d <= last)
    filename = f"ratings-{first}-to-{last}-{by}.csv"

    def finish(results: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(("day", *_COLUMNS))
        lines_written = 0
        for day, rows in results:
            writer.writerows([day, *(r[k] for k in _COLUMNS)] for r in rows)
            lines_written += len(rows)
        return {"csv": out.getvalue(), "filename": filename, "lines": lines_written}

    def step(day: str) -> tuple[str, list[dict[str, Any]]]:
        return day, tables_now(c.db, day, (by,), names, limit=100_000)[by]

    return Report(f"audience.csv:{first}:{last}:{by}", f"CSV export, {first} to {last} by {by}", "csv_ready.html",
                  [partial(step, d) for d in chosen], finish, AUDIENCE_DIRECT_DAYS)


def _range(request: Request) -> tuple[str, str] | str | None:
    """(first, last) asked for, None when no range is asked for, or why the range is wrong."""
    first, last = request.query_params.get("from", ""), request.query_params.get("to", "")
    if not first and not last:
        return None
    try:
        a, b = sorted((dt.date.fromisoformat(first), dt.date.fromisoformat(last)))
    except ValueError:
        return "from and to must both be days (YYYY-MM-DD)"
    return a.isoformat(), b.isoformat()


def _by(request: Request) -> str:
    by = request.query_params.get("by", "channel")
    return by if by in GROUPINGS else "channel"


def routes(c: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        user = await c.require(request)
        days = await _days(c)
        if not days:
            return c.render(request, "audience.html", user, title="Audience", days=[], empty=True)
        by, asked = _by(request), _range(request)
        common: dict[str, Any] = {"title": "Audience", "days": days, "groupings": GROUPINGS, "empty": False,
                  "direct_days": AUDIENCE_DIRECT_DAYS}
        if isinstance(asked, str):
            return c.render(request, "audience.html", user, status=400, error=asked, day=days[0], by=by, **common)
        if asked:
            first, last = asked
            names = await asyncio.to_thread(_names, c.db)
            return await answer(c, request, user, range_report(c, days, names, first, last, by), "audience.html",
                                day="", **common)
        day = request.query_params.get("day", days[0])
        day = day if day in days else days[0]
        rows = await table(c, day, by)
        dayparts = await table(c, day, "daypart")
        trend = await c.db.rows(
            "SELECT toString(day) AS d, sum(rating) FROM {db}.ratings_daily FINAL "
            "WHERE by = 'channel' AND segment = '' AND day >= toDate(%(day)s) - 27 AND day <= toDate(%(day)s) "
            "GROUP BY d ORDER BY d", {"day": day})
        return c.render(request, "audience.html", user, day=day, **common,
                        **_charts(by, rows, dayparts, [(str(d), float(t)) for d, t in trend]),
                        csv_href=f"/audience.csv?day={day}&by={by}")

    async def as_csv(request: Request) -> Response:
        user = await c.require(request)
        by, asked = _by(request), _range(request)
        if isinstance(asked, str):
            return Response(asked, status_code=400, media_type="text/plain")
        if asked:
            names = await asyncio.to_thread(_names, c.db)
            report = csv_report(c, await _days(c), names, asked[0], asked[1], by)
            if is_long(report):
                return start(c, request, user, report)
            done = await run_here(report)
            return _csv_response(done["csv"], done["filename"])
        day = request.query_params.get("day", "")
        rows = await table(c, day, by, limit=100_000) if day else []
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_COLUMNS)
        writer.writerows([r[k] for k in _COLUMNS] for r in rows)
        return _csv_response(out.getvalue(), f"ratings-{day}-{by}.csv")

    return [Route("/audience", page), Route("/audience.csv", as_csv)]


def _csv_response(text: str, filename: str) -> Response:
    return Response(text, media_type="text/csv", headers={"content-disposition": f'attachment; filename="{filename}"'})


_ORDER = DaypartSettings().names  # the CRM's daypart names, in the order of the day


def _daypart_order(row: dict[str, Any]) -> int:
    return _ORDER.index(row["label"]) if row["label"] in _ORDER else len(_ORDER)
