"""/audience: ratings, reach and share of a day (ratings_daily, written by `python -m crm ratings`),
by channel, programme or daypart, with the daypart curve and the channels' share as charts, the
trend of the last days, and every table as CSV (/audience.csv)."""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.charts import bars, lines
from console.web import Console
from crm.settings import DaypartSettings

GROUPINGS = ("channel", "programme", "daypart")
_COLUMNS = ("label", "rating", "reach", "share", "avg_minutes", "reached", "universe")


async def _days(c: Console) -> list[str]:
    rows = await c.db.rows("SELECT DISTINCT toString(day) AS d FROM {db}.ratings_daily WHERE segment = '' "
                           "ORDER BY d DESC LIMIT 60")
    return [str(r[0]) for r in rows]


async def table(c: Console, day: str, by: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = await c.db.rows(
        "SELECT channel_id, start_ms, title, daypart, rating, reach, share, avg_minutes, reached, universe "
        "FROM {db}.ratings_daily FINAL WHERE day = toDate(%(day)s) AND by = %(by)s AND segment = '' "
        f"ORDER BY rating DESC LIMIT {int(limit)}", {"day": day, "by": by})
    names = {int(i): str(n) for i, n in await c.db.rows("SELECT channel_id, argMax(name, updated_ms) "
                                                        "FROM {db}.channels GROUP BY channel_id")}
    out = []
    for ch, start, title, daypart, rating, reach, share, avg_min, reached, universe in rows:
        label = {"channel": names.get(int(ch), f"channel {ch}"), "daypart": str(daypart),
                 "programme": f"{title} ({names.get(int(ch), ch)})"}[by]
        out.append({"label": label, "start_ms": int(start), "rating": float(rating), "reach": float(reach),
                    "share": float(share), "avg_minutes": float(avg_min), "reached": int(reached),
                    "universe": int(universe)})
    return out


def routes(c: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        user = await c.require(request)
        days = await _days(c)
        if not days:
            return c.render(request, "audience.html", user, title="Audience", days=[], empty=True)
        day = request.query_params.get("day", days[0])
        day = day if day in days else days[0]
        by = request.query_params.get("by", "channel")
        by = by if by in GROUPINGS else "channel"
        rows = await table(c, day, by)
        dayparts = await table(c, day, "daypart")
        trend = await c.db.rows(
            "SELECT toString(day) AS d, sum(rating), max(universe) FROM {db}.ratings_daily FINAL "
            "WHERE by = 'channel' AND segment = '' AND day >= toDate(%(day)s) - 27 AND day <= toDate(%(day)s) "
            "GROUP BY d ORDER BY d", {"day": day})
        curve = lines({"rating %": [(f"{i}:{r['label']}", 100 * r["rating"]) for i, r in
                                    enumerate(sorted(dayparts, key=_daypart_order))]},
                      title="Rating by daypart")
        share = bars([(r["label"], 100 * r["share"]) for r in rows[:20]], title=f"Share by {by}, %")
        trend_chart = lines({"total rating %": [(str(d), 100 * float(t)) for d, t, _ in trend]},
                            title="Total rating by day (all channels)")
        return c.render(request, "audience.html", user, title="Audience", days=days, day=day, by=by, rows=rows,
                        curve=curve, share=share, trend_chart=trend_chart, groupings=GROUPINGS, empty=False)

    async def as_csv(request: Request) -> Response:
        await c.require(request)
        day, by = request.query_params.get("day", ""), request.query_params.get("by", "channel")
        rows = await table(c, day, by if by in GROUPINGS else "channel", limit=100_000) if day else []
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_COLUMNS)
        writer.writerows([r[k] for k in _COLUMNS] for r in rows)
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="ratings-{day}-{by}.csv"'})

    return [Route("/audience", page), Route("/audience.csv", as_csv)]


_ORDER = DaypartSettings().names  # the CRM's daypart names, in the order of the day


def _daypart_order(row: dict[str, Any]) -> int:
    return _ORDER.index(row["label"]) if row["label"] in _ORDER else len(_ORDER)
