"""/churn: the newest scored day's risk distribution, the top-risk households with their reasons,
and recent alerts (churn_scores and churn_alerts, written by `python -m crm churn score`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.charts import bars
from console.web import Console

BINS = 20


def routes(c: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        user = await c.require(request)
        latest = await c.db.rows("SELECT toString(max(day)), count() FROM {db}.churn_scores")
        if not latest or int(latest[0][1]) == 0:
            return c.render(request, "churn.html", user, title="Churn", empty=True)
        day = str(latest[0][0])
        params = {"day": day}
        # latest run of the day per household (a re-run replaces: argMax by computed_ms)
        scored = ("SELECT household_id, argMax(score, computed_ms) AS score, argMax(band, computed_ms) AS band, "
                  "argMax(reasons, computed_ms) AS reasons FROM {db}.churn_scores WHERE day = toDate(%(day)s) "
                  "GROUP BY household_id")
        hist = await c.db.rows(f"SELECT least(toUInt32(floor(score * {BINS})), {BINS - 1}) AS b, count() "
                               f"FROM ({scored}) GROUP BY b ORDER BY b", params)
        bands = await c.db.rows(f"SELECT band, count(), avg(score) FROM ({scored}) GROUP BY band ORDER BY band",
                                params)
        top = await c.db.rows(f"SELECT household_id, score, band, reasons FROM ({scored}) "
                              "ORDER BY score DESC, household_id LIMIT 50", params)
        alerts = await c.db.rows("SELECT toString(day), household_id, score, reasons FROM {db}.churn_alerts "
                                 "ORDER BY day DESC, score DESC LIMIT 50")
        counts = {int(b): int(n) for b, n in hist}
        histogram = [(f"{i / BINS:.2f}", counts.get(i, 0)) for i in range(BINS)]
        return c.render(request, "churn.html", user, title="Churn", empty=False, day=day, histogram=histogram,
                        chart=bars([(k, float(v)) for k, v in histogram], title="Households by churn score"),
                        bands=bands, top=top, alerts=alerts)

    return [Route("/churn", page)]
