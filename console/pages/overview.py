"""/ (overview): ingest health, store size, model versions; /audit (admin): the audit log.

Ingest health comes from the store (events received in the last 5 minutes, how late they came,
dead letters of the last 24 hours by reason) and, when `[sources] collector_metrics_url` is set,
from the collector's own Prometheus counters (read with a short timeout: a down collector is
shown as such, it never slows the page).
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.audit import recent
from console.db import now_ms
from console.settings import ConsoleSettings
from console.web import Console

WINDOW_S = 300
METRICS = ("collector_events_received_total", "collector_rows_written_total", "collector_dead_letters_total",
           "collector_buffered_messages", "collector_mqtt_connected", "collector_store_errors_total")


def read_metrics(url: str, timeout_s: float = 0.5) -> dict[str, float] | str:
    """The collector's headline counters (summed over labels), or why they could not be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            text = reply.read(2_000_000).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        return f"collector metrics unavailable: {type(exc).__name__}"
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in METRICS:
            try:
                found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return found


def model_versions(folder: str) -> dict[str, object] | None:
    """The CURRENT version and the versions on disk of a model folder (recommender or churn)."""
    if not folder:
        return None
    root = Path(folder)
    try:
        current = (root / "CURRENT").read_text().strip()
    except OSError:
        current = ""
    versions = sorted(p.name for p in (root / "versions").iterdir()) if (root / "versions").is_dir() else []
    return {"folder": folder, "current": current, "versions": versions[-5:]}


def routes(c: Console) -> list[Route]:
    settings: ConsoleSettings = c.extras["settings"]

    async def overview(request: Request) -> Response:
        user = await c.require(request)
        now = now_ms()
        since = now - WINDOW_S * 1000
        ingest = await c.db.rows(
            "SELECT count(), avg(received_ms - ts_ms) FROM {db}.events "
            "WHERE device_ts_ms >= %(early)s AND received_ms >= %(since)s",
            {"since": since, "early": since - 86_400_000})
        total = await c.db.rows("SELECT count(), max(received_ms) FROM {db}.events")
        dead = await c.db.rows("SELECT reason, count() FROM {db}.dead_letters WHERE received_ms >= %(since)s "
                               "GROUP BY reason ORDER BY count() DESC", {"since": now - 86_400_000})
        parts = await c.db.rows(
            "SELECT table, sum(rows), sum(bytes) FROM system.parts WHERE database = %(db)s AND active "
            "GROUP BY table ORDER BY sum(bytes) DESC", {"db": c.db.database})
        schema = await c.db.rows("SELECT max(version) FROM {db}.schema_migrations")
        url = settings.sources.collector_metrics_url
        metrics = await asyncio.to_thread(read_metrics, url) if url else None
        count, lag_ms = ingest[0] if ingest else (0, 0)
        return c.render(request, "overview.html", user, title="Overview",
                        rate=int(count) / WINDOW_S, recent=int(count), lag_s=float(lag_ms or 0) / 1000,
                        total_events=int(total[0][0]), last_ms=int(total[0][1] or 0),
                        quiet_s=(now - int(total[0][1])) / 1000 if int(total[0][0]) else None,
                        dead=[(str(r), int(n)) for r, n in dead],
                        parts=[(str(t), int(r), int(b)) for t, r, b in parts],
                        size=sum(int(b) for _, _, b in parts), schema=int(schema[0][0] or 0),
                        metrics=metrics, metrics_url=url,
                        models={"recommender": model_versions(settings.sources.recommender_model_dir),
                                "churn": model_versions(settings.sources.churn_model_dir)})

    async def audit(request: Request) -> Response:
        user = await c.require(request, "admin")
        return c.render(request, "audit.html", user, title="Audit log", rows=await recent(c.db))

    return [Route("/", overview), Route("/audit", audit)]
