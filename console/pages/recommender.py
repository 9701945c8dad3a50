"""/recommender: click-through per model version, from the boxes' rec_impression and rec_click events
(proto/TELEMETRY.md: a click echoes its impression's request_id; the impression carries the model
version). A click counts for the version of the impression with its request and programme.

`?days=` picks the window before the newest impression (28 by default, or `all`). Up to
RECOMMENDER_DIRECT_DAYS days it is one statement in the request; a longer window runs as a background
job with progress (console.reports), one day of impressions a step (at most MAX_STEPS steps; events
are partitioned by day, so each step reads one partition and the pages' own queries take turns between steps).
"""

from __future__ import annotations

from functools import partial
from itertools import pairwise
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.charts import lines
from console.db import Db
from console.reports import RECOMMENDER_DIRECT_DAYS, Report, answer
from console.web import Console

DAYS = 28
CHOICES = ("7", "28", "90", "365", "all")
MAX_STEPS = 400
DAY_MS = 86_400_000
CLICK_SLACK_MS = DAY_MS  # a click counts when it comes within a day after its window's impressions

# Impressions and clicks by version and day, grouped by request in one pass over the two kinds of
# events (a hash join of clicks to impressions: 1.1 s against 0.7 s on 500k impressions, chdb).
# Impressions of [since, until) and clicks up to a day later: a click whose impression lies in an
# earlier window has no impression here and is dropped by HAVING, so windows add up.
_CTR = """
SELECT version, d, sum(imps) AS impressions, sum(clicks) AS clicks FROM (
    SELECT request_id, anyIf(model_version, kind = 'rec_impression') AS version,
           toString(toDate(toDateTime(intDiv(minIf(ts_ms, kind = 'rec_impression'), 1000)))) AS d,
           countIf(kind = 'rec_impression') AS imps, countIf(kind = 'rec_click') AS clicks
    FROM {db}.events
    WHERE (kind = 'rec_impression' AND device_ts_ms >= %(since)s AND device_ts_ms < %(until)s)
       OR (kind = 'rec_click' AND device_ts_ms >= %(since)s AND device_ts_ms < %(until)s + %(slack)s)
    GROUP BY request_id HAVING imps > 0
) GROUP BY version, d ORDER BY version, d
"""


def _window(db: Db, since: int, until: int) -> list[tuple[Any, ...]]:
    return db.rows_now(_CTR, {"since": since, "until": until, "slack": CLICK_SLACK_MS})


def windows(since: int, until: int, direct: bool) -> list[tuple[int, int]]:
    """[since, until) in one window (a short report) or cut at UTC midnights, a day a window; over
    more than MAX_STEPS days (a box whose clock said 1970) a window spans several days."""
    if direct:
        return [(since, until)]
    first_cut = (since // DAY_MS + 1) * DAY_MS
    stride = DAY_MS * max(1, -(-(until - first_cut) // DAY_MS // MAX_STEPS))
    return list(pairwise([since, *range(first_cut, until, stride), until]))


def ctr_report(c: Console, since: int, until: int, label: str) -> Report:
    days = max(1, -(-(until - 1 - since) // DAY_MS))  # [newest - 28 days, newest] is 28 days

    def finish(parts: list[list[tuple[Any, ...]]]) -> dict[str, Any]:
        merged: dict[tuple[str, str], list[int]] = {}
        for version, day, imps, clicks in (row for part in parts for row in part):
            acc = merged.setdefault((str(version), str(day)), [0, 0])
            acc[0] += int(imps)
            acc[1] += int(clicks)
        rows = [(v, d, i, k) for (v, d), (i, k) in sorted(merged.items())]
        versions: dict[str, list[int]] = {}
        series: dict[str, list[tuple[str, float]]] = {}
        for version, day, imps, clicks in rows:
            total = versions.setdefault(version, [0, 0])
            total[0] += imps
            total[1] += clicks
            if imps:
                series.setdefault(version, []).append((day, 100 * clicks / imps))
        return {"rows": rows, "versions": sorted(versions.items()), "window": label,
                "chart": lines(series, title="CTR by day and model version, %")}

    spans = windows(since, until, direct=days <= RECOMMENDER_DIRECT_DAYS)
    return Report(f"recommender:{since}:{until}", f"Recommender CTR, {label}", "recommender_report.html",
                  [partial(_window, c.db, a, b) for a, b in spans], finish,
                  # a short window is one step; a long one has a step a day and always runs as a job
                  RECOMMENDER_DIRECT_DAYS if days <= RECOMMENDER_DIRECT_DAYS else 0)


def routes(c: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        user = await c.require(request)
        found = await c.db.rows("SELECT min(device_ts_ms), max(device_ts_ms), count() FROM {db}.events "
                                "WHERE kind = 'rec_impression'")
        if not found or int(found[0][2]) == 0:
            return c.render(request, "recommender.html", user, title="Recommender", empty=True)
        first, newest = int(found[0][0]), int(found[0][1])
        asked = request.query_params.get("days", str(DAYS))
        asked = asked if asked in CHOICES else str(DAYS)
        since = first if asked == "all" else max(first, newest - int(asked) * DAY_MS)
        label = "all impressions" if asked == "all" else f"last {asked} days"
        return await answer(c, request, user, ctr_report(c, since, newest + 1, label), "recommender.html",
                            title="Recommender", empty=False, choices=CHOICES, asked=asked,
                            direct_days=RECOMMENDER_DIRECT_DAYS)

    return [Route("/recommender", page)]
