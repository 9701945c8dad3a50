"""/login and /logout: a form post of username, password and csrf_token; a new session on success."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import LoginRefused
from console.audit import record
from console.users import authenticate
from console.web import Console, session_of


def _next(target: str) -> str:
    """Only a local path: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def routes(c: Console) -> list[Route]:
    async def show(request: Request) -> Response:
        return c.render(request, "login.html", await c.user(request), next=_next(request.query_params.get("next", "/")))

    async def submit(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        target = _next(str(form.get("next", "/")))
        try:
            user = await c.db.call(authenticate, name, password)
        except LoginRefused as exc:
            await asyncio.sleep(0.2)
            return c.render(request, "login.html", None, status=401, next=target, error=str(exc))
        session_of(request).renew(user.name)
        c.forget_user(user.name)
        await record(c.db, user.name, "login", "console")
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        session_of(request).renew("")
        return RedirectResponse("/login", status_code=303)

    return [Route("/login", show, methods=["GET"]), Route("/login", submit, methods=["POST"]),
            Route("/logout", logout, methods=["POST"])]
