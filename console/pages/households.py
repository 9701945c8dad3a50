"""/households and /households/{id}: one household's profile, tags, churn score with reasons, recent
viewing, live recommendations and contact history.

Roles without personal-data access (viewers) see and address households only by pseudonym
(console.security.Pseudonyms): `/households/h0123...`; a numeric id from them is refused (403).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console.recs import RecommenderClient
from console.users import User
from console.web import Console, Forbidden


def resolve(c: Console, user: User, key: str) -> int | None:
    """The household id a path names, as this user may name it."""
    if key.isdigit():
        if not user.sees_ids:
            raise Forbidden("your role sees households by pseudonym only (h + 16 hex digits)")
        value = int(key)
        return value if value < 2**64 else None
    return c.pseudonyms.decode(key)


async def _titles(c: Console, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await c.db.rows("SELECT programme_id, argMax(title, updated_ms) FROM {db}.programmes "
                           "WHERE programme_id IN %(ids)s GROUP BY programme_id", {"ids": tuple(ids)})
    return {int(p): str(t) for p, t in rows}


async def household(c: Console, hid: int) -> dict[str, Any]:
    """Everything the page shows about one household."""
    params = {"hh": hid}
    profile = await c.db.rows(
        "SELECT toString(day), minutes_7d, minutes_28d, active_days_28d, days_since_view, trend, region, status, "
        "products, tenure_days FROM {db}.household_profiles WHERE household_id = %(hh)s "
        "ORDER BY day DESC, computed_ms DESC LIMIT 1", params)
    tags: list[tuple[Any, ...]] = []
    if profile:
        tags = await c.db.rows(
            "SELECT tag, level, score FROM {db}.household_tags WHERE household_id = %(hh)s AND day = toDate(%(day)s) "
            "AND computed_ms = (SELECT max(computed_ms) FROM {db}.household_tags WHERE day = toDate(%(day)s)) "
            "ORDER BY tag", {"hh": hid, "day": str(profile[0][0])})
    churn = await c.db.rows(
        "SELECT toString(day), score, band, reasons, model_version FROM {db}.churn_scores "
        "WHERE household_id = %(hh)s ORDER BY day DESC, computed_ms DESC LIMIT 1", params)
    viewing = await c.db.rows(
        "SELECT ts_ms, toString(kind), channel_id, programme_id, duration_s FROM {db}.events "
        "WHERE household_id = %(hh)s AND kind IN ('view', 'vod_play', 'rec_click', 'msg_response') "
        "ORDER BY ts_ms DESC LIMIT 20", params)
    contacts = await c.db.rows(
        "SELECT campaign, wave, state, variant, holdout, at_ms FROM {db}.contacts WHERE household_id = %(hh)s "
        "ORDER BY at_ms DESC LIMIT 50", params)
    subscriber = await c.db.rows(
        "SELECT argMax(status, imported_ms), argMax(products, imported_ms), argMax(region, imported_ms) "
        "FROM {db}.subscribers WHERE household_id = %(hh)s GROUP BY household_id", params)
    titles = await _titles(c, {int(r[3]) for r in viewing if int(r[3])})
    return {"profile": profile[0] if profile else None, "tags": tags, "churn": churn[0] if churn else None,
            "viewing": [(*r, titles.get(int(r[3]), "")) for r in viewing], "contacts": contacts,
            "subscriber": subscriber[0] if subscriber else None}


def routes(c: Console) -> list[Route]:
    client: list[RecommenderClient] = []
    settings = c.extras["settings"].recommender

    async def lookup(request: Request) -> Response:
        user = await c.require(request)
        key = request.query_params.get("q", "").strip()
        if key:
            return RedirectResponse(f"/households/{key}", status_code=303)
        sample = await c.db.rows("SELECT household_id FROM {db}.household_profiles "
                                 "WHERE day = (SELECT max(day) FROM {db}.household_profiles) "
                                 "ORDER BY household_id LIMIT 20")
        return c.render(request, "household_lookup.html", user, title="Households", sample=[r[0] for r in sample])

    async def page(request: Request) -> Response:
        user = await c.require(request)
        hid = resolve(c, user, request.path_params["key"])
        if hid is None:
            return c.render(request, "error.html", user, status=404, title="No such household",
                            message="that is not a household id or pseudonym")
        data = await household(c, hid)
        recs: Any = None
        if settings.address:
            if not client:
                client.append(RecommenderClient(settings))
            recs = await asyncio.to_thread(client[0].recommend, hid)
            if not isinstance(recs, str):
                titles = await _titles(c, {i[0] for i in recs.items})
                recs = {"model_version": recs.model_version,
                        "items": [(*i, titles.get(i[0], "")) for i in recs.items]}
        known = any(data[k] for k in ("profile", "churn", "viewing", "contacts", "subscriber"))
        return c.render(request, "household.html", user, title=f"Household {c.household(user, hid)}", hid=hid,
                        known=known, recs=recs, recs_configured=bool(settings.address), **data)

    return [Route("/households", lookup), Route("/households/{key}", page)]
