"""Sessions, CSRF and roles for every request, and page rendering.

`SessionMiddleware` (plain ASGI) gives each visitor a signed session cookie (HttpOnly, SameSite=Lax,
Secure over HTTPS) holding a random nonce and, once logged in, the user's name. Every POST must be a
URL-encoded form whose `csrf_token` is the session's token (an HMAC of its nonce), else 403 before
any handler runs: no handler can forget the check. A login starts a new session (new nonce), so a
token seen before the login is worth nothing after it.

Handlers call `await require(request, role)`: not logged in raises `NeedLogin` (a redirect to
/login), a lower role `Forbidden` (403). The user's role is re-read from the store at most every
few seconds, so a disabled user or a changed role takes effect without a new login.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.db import Db
from console.jobs import Jobs
from console.security import Pseudonyms, Signer, new_nonce
from console.users import User, lookup

COOKIE = "stb_console"
MAX_FORM_BYTES = 256 * 1024
USER_CACHE_S = 5.0


@dataclass
class Session:
    nonce: str
    user: str = ""
    changed: bool = False

    def renew(self, user: str) -> None:
        """A new nonce (and user): after a login or a logout."""
        self.nonce, self.user, self.changed = new_nonce(), user, True


class NeedLogin(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class SessionMiddleware:
    def __init__(self, app: ASGIApp, signer: Signer, max_age_s: float, trust_proxy: bool) -> None:
        self.app, self.signer, self.max_age_s, self.trust_proxy = app, signer, max_age_s, trust_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        session = self._read(headers.get("cookie", ""))
        scope.setdefault("state", {})["session"] = session
        if scope["method"] == "POST":
            body = await _read_body(receive)
            if body is None:
                await PlainTextResponse("form too large", 413)(scope, receive, send)
                return
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            token = parse_qs(body.decode("latin-1")).get("csrf_token", [""])[0] \
                if ctype == "application/x-www-form-urlencoded" else ""
            if not self.signer.csrf_ok(session.nonce, token):
                await PlainTextResponse("403 forbidden: missing or invalid csrf_token (reload the page)",
                                        403)(scope, receive, send)
                return
            receive = _replay(body)
        secure = scope.get("scheme") == "https" or (
            self.trust_proxy and headers.get("x-forwarded-proto", "") == "https")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.changed:
                value = self.signer.sign({"n": session.nonce, "u": session.user}, self.max_age_s)
                cookie = f"{COOKIE}={value}; Path=/; Max-Age={int(self.max_age_s)}; HttpOnly; SameSite=Lax"
                message["headers"] = [*message.get("headers", []),
                                      (b"set-cookie", (cookie + ("; Secure" if secure else "")).encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _read(self, cookie_header: str) -> Session:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:  # a malformed Cookie header from a client: treat as no cookie
            jar = SimpleCookie()
        value = self.signer.unsign(jar[COOKIE].value) if COOKIE in jar else None
        if value and isinstance(value.get("n"), str) and isinstance(value.get("u"), str):
            return Session(value["n"], value["u"])
        return Session(new_nonce(), "", changed=True)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class Console:
    """What handlers share: the store, the templates, the signer, pseudonyms, the report jobs, the
    settings' sources."""

    def __init__(self, db: Db, templates: Jinja2Templates, signer: Signer, pseudonyms: Pseudonyms, jobs: Jobs,
                 extras: dict[str, Any]) -> None:
        self.db, self.templates, self.signer, self.pseudonyms, self.extras = db, templates, signer, pseudonyms, extras
        self.jobs = jobs
        self._users: dict[str, tuple[float, User | None]] = {}

    async def user(self, request: Request) -> User | None:
        name = session_of(request).user
        if not name:
            return None
        cached = self._users.get(name)
        if cached is None or time.monotonic() - cached[0] > USER_CACHE_S:
            found = await self.db.call(lookup, name)
            cached = (time.monotonic(), found[0] if found else None)
            self._users[name] = cached
        return cached[1]

    def forget_user(self, name: str) -> None:
        self._users.pop(name, None)

    async def require(self, request: Request, role: str = "viewer") -> User:
        user = await self.user(request)
        if user is None:
            raise NeedLogin()
        if not user.can(role):
            raise Forbidden(f"this needs the {role} role; you are {user.name} ({user.role})")
        return user

    def household(self, user: User | None, household_id: int) -> str:
        """How a household is named to this user: its id, or its pseudonym."""
        return str(household_id) if user and user.sees_ids else self.pseudonyms.encode(household_id)

    def render(self, request: Request, template: str, user: User | None, status: int = 200,
               **context: Any) -> HTMLResponse:
        session = session_of(request)
        return self.templates.TemplateResponse(request, template, {
            "user": user, "csrf_token": self.signer.csrf_token(session.nonce),
            "hh": lambda hid: self.household(user, int(hid)), "path": request.url.path, **context},
            status_code=status)


def session_of(request: Request) -> Session:
    session: Session = request.scope["state"]["session"]
    return session


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Response(status_code=303, headers={"location": f"/login?next={quote(target, safe='')}"})
