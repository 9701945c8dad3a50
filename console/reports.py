"""Reports whose cost grows with the range asked for: answered in the request when small, else run as
a background job (console.jobs) whose page shows "step k of n" and refreshes itself.

    report = Report(key, "Audience, 2026-09-01 to 2026-11-30", "audience_report.html", steps, finish,
                    direct_steps=AUDIENCE_DIRECT_DAYS)
    return await answer(c, request, user, report, "audience.html", days=days)

The rule: a step is one day of the range (one profiled day, one day of ratings or of impressions);
a report with more steps than its `direct_steps` runs as a job, the others in the request (their
steps one after another, off the event loop). The limits below keep a direct answer well under the
1 s budget on the demo data (docs/CONSOLE.md "Long reports").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from console.jobs import Finish, Job, Step, TooManyJobs
from console.users import User
from console.web import Console

AUDIENCE_DIRECT_DAYS = 31     # a day of ratings: one small read of ratings_daily (~10 ms)
SEGMENT_DIRECT_DAYS = 14      # a profiled day: one segment count (~40 ms at 100k households)
RECOMMENDER_DIRECT_DAYS = 28  # one statement over the window (~720 ms for 28 days of 500k impressions)
REFRESH_S = 1


@dataclass(frozen=True)
class Report:
    key: str                  # the report and its parameters: asking again while it runs shows the same job
    title: str
    template: str             # the fragment that shows the result (included by the page and by job.html)
    steps: Sequence[Step]
    finish: Finish
    direct_steps: int


def is_long(report: Report) -> bool:
    return len(report.steps) > report.direct_steps


async def run_here(report: Report) -> dict[str, Any]:
    """The report's result, computed in the request (its steps one after another, off the event loop)."""
    results = [await asyncio.to_thread(step) for step in report.steps]
    return report.finish(results)


async def answer(c: Console, request: Request, user: User, report: Report, page: str, **context: Any) -> Response:
    """The page with the report's result, or (a long report) the job's progress page."""
    if not is_long(report):
        return c.render(request, page, user, **{**context, **await run_here(report)})
    return start(c, request, user, report)


def start(c: Console, request: Request, user: User, report: Report) -> Response:
    """Start the report as a job (or find the user's running one) and answer its progress page;
    429 with the reason when too many run."""
    try:
        job = c.jobs.start(user.name, report.key, report.title, report.template, report.steps, report.finish)
    except TooManyJobs as exc:
        return c.render(request, "job.html", user, status=429, title=report.title, job=None, message=str(exc))
    return show(c, request, user, job)


def show(c: Console, request: Request, user: User, job: Job) -> Response:
    """A job's page: progress (202, refreshing itself) while it runs, then its result."""
    status = 202 if job.running else 500 if job.state == "failed" else 200
    context = {**job.result, "title": job.title, "job": job, "refresh": REFRESH_S,
               "ttl_min": round(c.jobs.limits.ttl_s / 60)}
    return c.render(request, "job.html", user, status=status, **context)
