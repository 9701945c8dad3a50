"""/campaigns, /campaigns/new, /campaigns/{id}: list, create (a draft), approve, pause, resume, and a
campaign's results.

Every campaign read and write goes through `marketing.store`, the registry the marketing CLI uses
(a `campaigns` row per change and a `campaign_log` line per action, the logged-in user as the
actor); every figure comes from `marketing.report.build_report`, the report `campaign report`
prints. Each change is also a `console_audit` row.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console.audit import record
from console.campaign_form import ACTIONS, TEMPLATES, campaign_toml
from console.campaign_view import page_context
from console.users import User
from console.web import Console
from crm import segments
from marketing import store
from marketing.errors import CampaignError, UnknownCampaign
from marketing.report import build_report
from warehouse import Warehouse

SUMMARISED = 12  # the listing reports this many campaigns (a report is ~6 queries, ~35 ms on chdb): < 1 s


def summaries(warehouse: Warehouse, records: list[store.CampaignRecord]) -> dict[str, tuple[int, int]]:
    """(treated households, converted) from the report of each of the SUMMARISED most recently changed
    campaigns that have left draft (a draft has reached nobody): a long history keeps the page fast."""
    sent = sorted((r for r in records if r.status != store.DRAFT), key=lambda r: r.updated_ms, reverse=True)
    out = {}
    for r in sent[:SUMMARISED]:
        treated = build_report(warehouse, r)["treated"]
        out[r.id] = (int(treated["households"]), int(treated["converted"]))
    return out


def routes(c: Console) -> list[Route]:
    async def listing(request: Request) -> Response:
        user = await c.require(request)
        rows = await c.db.call(store.list_all)
        counts = await c.db.call(summaries, rows)
        return c.render(request, "campaigns.html", user, title="Campaigns", rows=rows, counts=counts,
                        summarised=SUMMARISED)

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
            campaign = await c.db.call(store.create, text, draft=True, actor=user.name)
        except CampaignError as exc:
            return await new_form(request, user, fields, error=str(exc), status=400)
        await record(c.db, user.name, "campaign.create", f"campaign:{campaign.id}", "draft")
        return RedirectResponse(f"/campaigns/{campaign.id}", status_code=303)

    async def show(request: Request) -> Response:
        user = await c.require(request)
        cid = request.path_params["id"]
        try:
            found = await c.db.call(store.get, cid)
        except UnknownCampaign as exc:
            return c.render(request, "error.html", user, status=404, title="No such campaign", message=str(exc))
        report: dict[str, Any] = await c.db.call(build_report, found)
        history = (await c.db.call(store.history, cid))[::-1][:100]
        decisions = await c.db.rows("SELECT status, count() FROM {db}.deliveries WHERE campaign = %(id)s "
                                    "GROUP BY status ORDER BY status", {"id": cid})
        return c.render(request, "campaign.html", user, title=f"Campaign {cid}", row=found, campaign=found.campaign,
                        log=history, deliveries=decisions, **page_context(report))

    async def action(request: Request) -> Response:
        user = await c.require(request, "marketer")
        cid, verb = request.path_params["id"], request.path_params["action"]
        if verb not in store.TRANSITIONS:
            return c.render(request, "error.html", user, status=404, title="Not found",
                            message=f"no action {verb!r}: approve, pause or resume")
        try:
            changed = await c.db.call(store.change_status, cid, verb, actor=user.name)
        except UnknownCampaign as exc:
            return c.render(request, "error.html", user, status=404, title="No such campaign", message=str(exc))
        except CampaignError as exc:
            return c.render(request, "error.html", user, status=409, title="Not done", message=str(exc))
        await record(c.db, user.name, f"campaign.{verb}", f"campaign:{cid}", f"-> {changed.status}")
        return RedirectResponse(f"/campaigns/{cid}", status_code=303)

    return [Route("/campaigns", listing), Route("/campaigns/new", new, methods=["GET"]),
            Route("/campaigns/new", create, methods=["POST"]), Route("/campaigns/{id}", show),
            Route("/campaigns/{id}/{action:str}", action, methods=["POST"])]
