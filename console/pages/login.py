"""/login and /logout: a form post of username, password and csrf_token; a new session on success.

Failed logins are rate limited per user name and per client address (console.ratelimit: 5 in 5
minutes, then refused with 429 until the window has passed); the refusal is checked before any
password is, so a locked name costs no scrypt work.
"""

from __future__ import annotations

import asyncio
import math
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import LoginRefused
from console.audit import record
from console.ratelimit import LoginLimiter, login_keys
from console.users import authenticate
from console.web import Console, session_of


def _next(target: str) -> str:
    """Only a local path: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def locked_message(wait_s: float) -> str:
    minutes = max(1, math.ceil(wait_s / 60))
    return (f"Too many failed logins for this user name or from this address: "
            f"try again in {minutes} minute{'s' if minutes > 1 else ''}.")


def routes(c: Console) -> list[Route]:
    limiter = LoginLimiter()

    async def show(request: Request) -> Response:
        return c.render(request, "login.html", await c.user(request), next=_next(request.query_params.get("next", "/")))

    async def submit(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        target = _next(str(form.get("next", "/")))
        keys = login_keys(name, request.client.host if request.client else "")
        began = time.monotonic()
        wait = limiter.begin(keys, began)
        if wait > 0:
            reply = c.render(request, "login.html", None, status=429, next=target, error=locked_message(wait))
            reply.headers["retry-after"] = str(math.ceil(wait))
            return reply
        try:
            user = await c.db.call(authenticate, name, password)
        except LoginRefused as exc:
            await asyncio.sleep(0.2)
            return c.render(request, "login.html", None, status=401, next=target, error=str(exc))
        except BaseException:
            limiter.take_back(keys, began)  # the store failed, not the password: no failure counted
            raise
        limiter.take_back(keys, began)
        limiter.forget(keys[0])
        session_of(request).renew(user.name)
        c.forget_user(user.name)
        await record(c.db, user.name, "login", "console")
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        session_of(request).renew("")
        return RedirectResponse("/login", status_code=303)

    return [Route("/login", show, methods=["GET"]), Route("/login", submit, methods=["POST"]),
            Route("/logout", logout, methods=["POST"])]
