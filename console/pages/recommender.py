"""/recommender: click-through per model version, from the boxes' rec_impression and rec_click events
(proto/TELEMETRY.md: a click echoes its impression's request_id; the impression carries the model
version). A click counts for the version of the impression with its request and programme."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.charts import lines
from console.web import Console

DAYS = 28

# Impressions and clicks by version and day; one pass over the two kinds of events since `since`.
_CTR = """
SELECT version, d, countIf(k = 'imp') AS impressions, countIf(k = 'click') AS clicks FROM (
    SELECT model_version AS version, toString(toDate(toDateTime(intDiv(ts_ms, 1000)))) AS d, 'imp' AS k,
           request_id, programme_id
    FROM {db}.events WHERE kind = 'rec_impression' AND device_ts_ms >= %(since)s
    UNION ALL
    SELECT i.version AS version, c.d AS d, 'click' AS k, c.request_id AS request_id, c.programme_id AS programme_id
    FROM (SELECT request_id, programme_id, toString(toDate(toDateTime(intDiv(ts_ms, 1000)))) AS d
          FROM {db}.events WHERE kind = 'rec_click' AND device_ts_ms >= %(since)s) AS c
    ANY INNER JOIN (SELECT request_id, any(model_version) AS version FROM {db}.events
                    WHERE kind = 'rec_impression' AND device_ts_ms >= %(since)s GROUP BY request_id) AS i
    USING request_id
) GROUP BY version, d ORDER BY version, d
"""


def routes(c: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        user = await c.require(request)
        newest = await c.db.rows("SELECT max(device_ts_ms), count() FROM {db}.events WHERE kind = 'rec_impression'")
        if not newest or int(newest[0][1]) == 0:
            return c.render(request, "recommender.html", user, title="Recommender", empty=True)
        since = int(newest[0][0]) - DAYS * 86_400_000
        rows = await c.db.rows(_CTR, {"since": since})
        versions: dict[str, list[int]] = {}
        series: dict[str, list[tuple[str, float]]] = {}
        for version, day, imps, clicks in rows:
            total = versions.setdefault(str(version), [0, 0])
            total[0] += int(imps)
            total[1] += int(clicks)
            if int(imps):
                series.setdefault(str(version), []).append((str(day), 100 * int(clicks) / int(imps)))
        return c.render(request, "recommender.html", user, title="Recommender", empty=False, rows=rows,
                        versions=sorted(versions.items()), days=DAYS,
                        chart=lines(series, title="CTR by day and model version, %"))

    return [Route("/recommender", page)]
