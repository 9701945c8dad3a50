"""/segments: the expression editor with its count and a sample, saved segments and a saved
segment's size over the last profiled days; /api/segments/count for the live count.

The size history is one segment count per profiled day (`?days=`, 14 by default): up to
SEGMENT_DIRECT_DAYS days it is part of the page, a longer one runs as a background job with
progress (console.reports) whose result is the history alone.

Without JavaScript the editor is a form POST that answers with the count; with it, static/segments.js
asks /api/segments/count as the expression is typed. Saving (marketer) adds a version of the name
(crm.segments.save) and a line to the audit log.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from console.audit import recent, record
from console.charts import lines
from console.db import Db
from console.reports import SEGMENT_DIRECT_DAYS, Report, is_long, run_here, start
from console.users import User
from console.web import Console
from crm import segments
from crm.errors import CrmError, NoData

HISTORY_DAYS = 14
HISTORY_CHOICES = (14, 30, 90, 365)


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


def _count_on(db: Db, expr: str, day: str) -> tuple[str, int | None]:
    try:
        return day, db.call_now(segments.count, expr, dt.date.fromisoformat(day))
    except CrmError:
        return day, None


def history_report(c: Console, name: str, days: list[str]) -> Report:
    """@name's size on each of these profiled days (oldest first), one count a step."""
    def finish(results: list[tuple[str, int | None]]) -> dict[str, Any]:
        history = [(d, n) for d, n in results if n is not None]
        chart = lines({f"@{name}": history}, title=f"Size of @{name} by profiled day") if history else ""
        return {"name": name, "history": history, "chart": chart}

    return Report(f"segment-history:{name}:{len(days)}", f"Size of @{name}, {len(days)} profiled days",
                  "segment_history.html", [partial(_count_on, c.db, f"@{name}", d) for d in days], finish,
                  SEGMENT_DIRECT_DAYS)


async def profiled_days(c: Console, limit: int) -> list[str]:
    """The newest `limit` profiled days, oldest first."""
    rows = await c.db.rows(f"SELECT DISTINCT toString(day) AS d FROM {{db}}.household_profiles "
                           f"ORDER BY d DESC LIMIT {int(limit)}")
    return [str(d) for (d,) in reversed(rows)]


def _history_days(request: Request) -> int:
    asked = request.query_params.get("days", "")
    return int(asked) if asked.isdigit() and int(asked) in HISTORY_CHOICES else HISTORY_DAYS


def routes(c: Console) -> list[Route]:
    async def show(request: Request, user: User, expr: str, result: dict[str, Any], status: int = 200,
                   saved_msg: str = "") -> Response:
        saved = await c.db.call(segments.saved)
        name = request.query_params.get("name", "")
        history: dict[str, Any] = {"name": name, "history_days": _history_days(request)}
        if name and any(n == name for n, _, _ in saved):
            report = history_report(c, name, await profiled_days(c, history["history_days"]))
            history = {**history, **({"long": True} if is_long(report) else await run_here(report))}
        return c.render(request, "segments.html", user, status=status, title="Segments", expr=expr, result=result,
                        saved=saved, saved_msg=saved_msg, choices=HISTORY_CHOICES, **history,
                        audit=[r for r in await recent(c.db, 50) if r[2] == "segment.save"][:10])

    async def page(request: Request) -> Response:
        user = await c.require(request)
        expr = request.query_params.get("expr", "")
        return await show(request, user, expr, await evaluate(c, expr))

    async def history(request: Request) -> Response:
        """A size history: a long one started as a job (its page shows progress, then the history alone),
        a short one shown on the segments page."""
        user = await c.require(request)
        name = request.query_params.get("name", "")
        if not any(n == name for n, _, _ in await c.db.call(segments.saved)):
            return RedirectResponse("/segments", status_code=303)
        report = history_report(c, name, await profiled_days(c, _history_days(request)))
        if is_long(report):
            return start(c, request, user, report)
        return RedirectResponse(f"/segments?name={name}&expr=%40{name}&days={_history_days(request)}", 303)

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

    return [Route("/segments", page, methods=["GET"]), Route("/segments/history", history, methods=["GET"]),
            Route("/segments", count_form, methods=["POST"]),
            Route("/segments/save", save, methods=["POST"]), Route("/api/segments/count", api_count)]
