"""/segments: the expression editor with its count and a sample, saved segments and a saved
segment's size over the last profiled days; /api/segments/count for the live count.

Without JavaScript the editor is a form POST that answers with the count; with it, static/segments.js
asks /api/segments/count as the expression is typed. Saving (marketer) adds a version of the name
(crm.segments.save) and a line to the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from console.audit import recent, record
from console.charts import lines
from console.users import User
from console.web import Console
from crm import segments
from crm.errors import CrmError, NoData

HISTORY_DAYS = 14


async def evaluate(c: Console, expr: str) -> dict[str, Any]:
    """count and sample of an expression, or its error."""
    if not expr.strip():
        return {}
    try:
        count = await c.db.call(segments.count, expr)
        sample = await c.db.call(segments.members, expr, None, 20)
    except NoData as exc:
        return {"count": 0, "sample": [], "note": str(exc)}
    except CrmError as exc:
        return {"error": str(exc)}
    return {"count": count, "sample": [int(h) for h in sample]}


async def size_history(c: Console, expr: str) -> list[tuple[str, int]]:
    days = await c.db.rows(f"SELECT DISTINCT toString(day) AS d FROM {{db}}.household_profiles "
                           f"ORDER BY d DESC LIMIT {HISTORY_DAYS}")
    out = []
    for (day,) in reversed(days):
        try:
            out.append((str(day), await c.db.call(segments.count, expr, dt.date.fromisoformat(str(day)))))
        except CrmError:
            continue
    return out


def routes(c: Console) -> list[Route]:
    async def show(request: Request, user: User, expr: str, result: dict[str, Any], status: int = 200,
                   saved_msg: str = "") -> Response:
        saved = await c.db.call(segments.saved)
        name = request.query_params.get("name", "")
        history = []
        if name and any(n == name for n, _, _ in saved):
            history = await size_history(c, f"@{name}")
        chart = lines({f"@{name}": history}, title=f"Size of @{name} by profiled day") if history else ""
        return c.render(request, "segments.html", user, status=status, title="Segments", expr=expr, result=result,
                        saved=saved, name=name, history=history, chart=chart, saved_msg=saved_msg,
                        audit=[r for r in await recent(c.db, 50) if r[2] == "segment.save"][:10])

    async def page(request: Request) -> Response:
        user = await c.require(request)
        expr = request.query_params.get("expr", "")
        return await show(request, user, expr, await evaluate(c, expr))

    async def count_form(request: Request) -> Response:
        user = await c.require(request)
        expr = str((await request.form()).get("expr", ""))
        result = await evaluate(c, expr)
        return await show(request, user, expr, result, status=400 if "error" in result else 200)

    async def save(request: Request) -> Response:
        user = await c.require(request, "marketer")
        form = await request.form()
        name, expr = str(form.get("name", "")).strip(), str(form.get("expr", ""))
        try:
            version = await c.db.call(segments.save, name, expr)
        except CrmError as exc:
            return await show(request, user, expr, {"error": str(exc)}, status=400)
        await record(c.db, user.name, "segment.save", f"segment:{name}", f"v{version}: {expr}")
        return RedirectResponse(f"/segments?name={name}&expr=%40{name}", status_code=303)

    async def api_count(request: Request) -> Response:
        await c.require(request)
        expr = request.query_params.get("expr", "")
        if not expr.strip():
            return JSONResponse({"error": "expr is empty"}, status_code=400)
        result = await evaluate(c, expr)
        if "error" in result:
            return JSONResponse({"error": result["error"]}, status_code=400)
        return JSONResponse({"count": result["count"], **({"note": result["note"]} if "note" in result else {})})

    return [Route("/segments", page, methods=["GET"]), Route("/segments", count_form, methods=["POST"]),
            Route("/segments/save", save, methods=["POST"]), Route("/api/segments/count", api_count)]
