"""The application factory: the store, the secret, templates, pages and error pages in one place.

    app = create_app(settings, warehouse)      # a Starlette app; uvicorn serves it (console.serve)

The app's lifespan owns the report jobs' worker threads: at shutdown running reports stop before
their next step and the threads are joined before the store closes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console.db import Db
from console.jobs import JobLimits, Jobs
from console.pages import audience, campaigns, churn, households, jobs, login, overview, recommender, segments
from console.security import Pseudonyms, Signer, load_or_create_secret
from console.settings import ConsoleSettings
from console.web import Console, Forbidden, NeedLogin, SessionMiddleware, login_redirect
from warehouse import Warehouse

HERE = Path(__file__).parent


def _when(ms: int | float) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(float(ms) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    env.filters["pct"] = lambda v: f"{100 * float(v):.1f} %"
    env.filters["num"] = lambda v: f"{float(v):,.2f}".rstrip("0").rstrip(".") if v == v else "-"
    return Jinja2Templates(env=env)


def create_app(settings: ConsoleSettings, warehouse: Warehouse, limits: JobLimits | None = None) -> Starlette:
    secret = load_or_create_secret(Path(settings.http.secret_file))
    key = Path(settings.privacy.key_file).read_bytes().strip() if settings.privacy.key_file else \
        hmac.new(secret, b"console-pseudonyms", hashlib.sha256).digest()
    console = Console(Db(warehouse), templates(), Signer(secret), Pseudonyms(key), Jobs(limits or JobLimits()),
                      {"settings": settings})
    routes = [route for module in (login, overview, audience, households, segments, campaigns, churn, recommender,
                                   jobs) for route in module.routes(console)]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))

    async def need_login(request: Request, exc: Exception) -> Response:
        return login_redirect(request)

    async def forbidden(request: Request, exc: Exception) -> Response:
        why = exc.why if isinstance(exc, Forbidden) else "forbidden"
        return console.render(request, "error.html", await console.user(request), status=403,
                              title="403 forbidden", message=why)

    async def not_found(request: Request, exc: Exception) -> Response:
        return HTMLResponse("<h1>404 not found</h1><p><a href='/'>overview</a></p>", 404)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(console.jobs.close)

    app = Starlette(routes=routes, exception_handlers={NeedLogin: need_login, Forbidden: forbidden,
                                                       404: not_found}, lifespan=lifespan)
    app.add_middleware(SessionMiddleware, signer=console.signer, max_age_s=settings.http.session_hours * 3600,
                       trust_proxy=settings.http.proxy_headers)
    app.state.console = console
    return app
