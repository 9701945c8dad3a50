"""/jobs/{id}: a long report's page (progress, then the result); /jobs/{id}.json its progress for the
page's script; /jobs/{id}.csv the file of a finished export. Only the user who asked sees a job: for
anyone else it does not exist (404)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console.jobs import Job
from console.reports import show
from console.users import User
from console.web import Console


def routes(c: Console) -> list[Route]:
    async def mine(request: Request) -> tuple[User, Job]:
        user = await c.require(request)
        job = c.jobs.get(user.name, request.path_params["job_id"])
        if job is None:
            raise HTTPException(404)
        return user, job

    async def page(request: Request) -> Response:
        user, job = await mine(request)
        return show(c, request, user, job)

    async def progress(request: Request) -> Response:
        _, job = await mine(request)
        return JSONResponse(job.progress(), headers={"cache-control": "no-store"})

    async def as_csv(request: Request) -> Response:
        _, job = await mine(request)
        if job.state != "done" or "csv" not in job.result:
            raise HTTPException(404)
        return Response(job.result["csv"], media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="{job.result["filename"]}"'})

    return [Route("/jobs/{job_id}.json", progress), Route("/jobs/{job_id}.csv", as_csv),
            Route("/jobs/{job_id}", page)]
