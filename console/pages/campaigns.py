"""/campaigns, /campaigns/new, /campaigns/{id}: list, create (a draft), approve, pause, resume, and a
campaign's results from the marketing tables: the funnel of treated households by their latest
`contacts` state, the funnel by wave, uplift against the holdout with its 95 % interval, and the
variant allocation over time (`allocations`). Every change is audited (console_audit) as well as
logged in `campaign_log` with the user's name as the actor.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import campaign_store
from console.audit import record
from console.campaign_form import ACTIONS, TEMPLATES, campaign_toml
from console.charts import bars, lines
from console.users import User
from console.web import Console
from crm import segments
from marketing.campaign import parse_campaign
from marketing.errors import CampaignError

STATES: Final = ("not_contacted", "contacted", "no_response", "interested", "converted", "refused", "unsubscribed")
_LATEST: Final = ("SELECT household_id, {key}argMax(state, at_ms) AS state FROM {db}.contacts "
                  "WHERE campaign = %(id)s AND holdout = %(holdout)s GROUP BY household_id{group}")


def uplift(treated: tuple[int, int], holdout: tuple[int, int]) -> dict[str, Any]:
    """(households, converted) of each arm -> rates, absolute and relative uplift, 95 % interval
    (normal approximation of the difference of two proportions)."""
    (n1, c1), (n0, c0) = treated, holdout
    p1, p0 = (c1 / n1 if n1 else 0.0), (c0 / n0 if n0 else 0.0)
    diff = p1 - p0
    se = math.sqrt((p1 * (1 - p1) / n1 if n1 else 0.0) + (p0 * (1 - p0) / n0 if n0 else 0.0))
    return {"treated": {"households": n1, "converted": c1, "rate": p1},
            "holdout": {"households": n0, "converted": c0, "rate": p0},
            "absolute": diff, "relative": diff / p0 if p0 else None,
            "ci95": (diff - 1.96 * se, diff + 1.96 * se) if n1 and n0 else None}


async def funnel(c: Console, cid: str) -> dict[str, Any]:
    arms = {}
    states: dict[str, int] = {}
    for holdout in (0, 1):
        rows = await c.db.rows(f"SELECT state, count() FROM ({_LATEST.format(key='', db='{db}', group='')}) "
                               "GROUP BY state", {"id": cid, "holdout": holdout})
        counts = {str(s): int(n) for s, n in rows}
        arms[holdout] = (sum(counts.values()), counts.get("converted", 0))
        if holdout == 0:
            states = counts
    waves = await c.db.rows(
        f"SELECT wave, state, count() FROM ({_LATEST.format(key='wave, ', db='{db}', group=', wave')}) "
        "GROUP BY wave, state ORDER BY wave", {"id": cid, "holdout": 0})
    by_wave: dict[int, dict[str, int]] = {}
    for wave, state, n in waves:
        by_wave.setdefault(int(wave), {})[str(state)] = int(n)
    alloc = await c.db.rows("SELECT decided_ms, wave, variant, share, sent, converted FROM {db}.allocations "
                            "WHERE campaign = %(id)s ORDER BY decided_ms, variant LIMIT 2000", {"id": cid})
    deliveries = await c.db.rows("SELECT status, count() FROM {db}.deliveries WHERE campaign = %(id)s "
                                 "GROUP BY status ORDER BY status", {"id": cid})
    ordered = [(s, states.get(s, 0)) for s in STATES] + [(s, n) for s, n in states.items() if s not in STATES]
    series: dict[str, list[tuple[str, float]]] = {}
    for at, _wave, variant, share, _sent, _conv in alloc:
        when = dt.datetime.fromtimestamp(int(at) / 1000, dt.UTC).strftime("%m-%d %H:%M")
        series.setdefault(str(variant), []).append((when, 100 * float(share)))
    return {"states": ordered, "waves": sorted(by_wave.items()), "uplift": uplift(arms[0], arms[1]),
            "allocations": alloc, "deliveries": deliveries,
            "funnel_chart": bars(ordered, title="Treated households by latest state") if states else "",
            "alloc_chart": lines(series, title="Variant share of sends, %, by decision") if series else ""}


def routes(c: Console) -> list[Route]:
    async def listing(request: Request) -> Response:
        user = await c.require(request)
        rows = await c.db.call(campaign_store.list_all)
        counts = {str(cid): (int(n), int(conv)) for cid, n, conv in await c.db.rows(
            "SELECT campaign, count(), countIf(state = 'converted') FROM (SELECT campaign, household_id, "
            "argMax(state, at_ms) AS state FROM {db}.contacts WHERE holdout = 0 GROUP BY campaign, household_id) "
            "GROUP BY campaign")}
        return c.render(request, "campaigns.html", user, title="Campaigns", rows=rows, counts=counts)

    async def new_form(request: Request, user: User, fields: dict[str, str], error: str = "",
                       status: int = 200) -> Response:
        saved = await c.db.call(segments.saved)
        return c.render(request, "campaign_new.html", user, status=status, title="New campaign", f=fields,
                        error=error, saved=saved, actions=ACTIONS, templates=TEMPLATES)

    async def new(request: Request) -> Response:
        user = await c.require(request, "marketer")
        template = TEMPLATES.get(request.query_params.get("template", "reminder"), TEMPLATES["reminder"])
        return await new_form(request, user, {"holdout": "0.1", "priority": "0", "waves": "1", "after_hours": "24",
                                              "daily": "18:00", "title_a": template[0], "body_a": template[1],
                                              "action_a": "tune"})

    async def create(request: Request) -> Response:
        user = await c.require(request, "marketer")
        fields = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
        text = fields.get("toml", "").strip() or campaign_toml(fields)
        try:
            parse_campaign(text)
            campaign = await c.db.call(campaign_store.create, text, user.name)
        except CampaignError as exc:
            return await new_form(request, user, fields, error=str(exc), status=400)
        await record(c.db, user.name, "campaign.create", f"campaign:{campaign.id}", "draft")
        return RedirectResponse(f"/campaigns/{campaign.id}", status_code=303)

    async def show(request: Request) -> Response:
        user = await c.require(request)
        cid = request.path_params["id"]
        row = await c.db.call(campaign_store.get, cid)
        if row is None:
            return c.render(request, "error.html", user, status=404, title="No such campaign",
                            message=f"no campaign {cid!r}")
        log = await c.db.rows("SELECT at_ms, action, actor, detail FROM {db}.campaign_log WHERE id = %(id)s "
                              "ORDER BY at_ms DESC LIMIT 100", {"id": cid})
        return c.render(request, "campaign.html", user, title=f"Campaign {cid}", row=row, log=log,
                        campaign=parse_campaign(row.source), error=request.query_params.get("error", ""),
                        **await funnel(c, cid))

    async def action(request: Request) -> Response:
        user = await c.require(request, "marketer")
        cid, verb = request.path_params["id"], request.path_params["action"]
        try:
            row = await c.db.call(campaign_store.change_status, cid, verb, user.name)
        except CampaignError as exc:
            return c.render(request, "error.html", user, status=409, title="Not done", message=str(exc))
        await record(c.db, user.name, f"campaign.{verb}", f"campaign:{cid}", f"-> {row.status}")
        return RedirectResponse(f"/campaigns/{cid}", status_code=303)

    return [Route("/campaigns", listing), Route("/campaigns/new", new, methods=["GET"]),
            Route("/campaigns/new", create, methods=["POST"]), Route("/campaigns/{id}", show),
            Route("/campaigns/{id}/{action:str}", action, methods=["POST"])]
