"""Background report jobs: a long report runs step by step in a worker thread while its page shows
"step k of n" and refreshes itself; the result is kept for its owner a few minutes.

    jobs = Jobs(JobLimits())
    job = jobs.start("mia", key, "Audience, 90 days", "audience_report.html", steps, finish)
    jobs.get("mia", job.id)        # the job, or None: unknown, expired, or another user's
    jobs.close()                   # cancels what runs (between steps) and joins the threads

A step is a blocking callable (it reads the store through console.db.Db's blocking methods, so the
store still sees one statement at a time and other pages' queries interleave between steps);
`finish(results)` turns the steps' results into the template's context. Limits: a user runs at most
`per_user` jobs at once, everyone together `running`; beyond that `start` raises TooManyJobs. A job is
forgotten `ttl_s` after its owner last looked at it or after it finished, whichever is later; a
running job forgotten so stops before its next step. The registry lives in memory: a restart forgets it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from console import ConsoleError

log = logging.getLogger(__name__)

Step = Callable[[], Any]
Finish = Callable[[list[Any]], dict[str, Any]]


class TooManyJobs(ConsoleError):
    retryable = True

    def __init__(self, running: int, limit: int, *, mine: bool) -> None:
        who = "you are" if mine else "the console is"
        super().__init__(f"{who} already running {running} long reports (at most {limit} at once): "
                         "wait for one to finish, then ask again")
        self.running, self.limit, self.mine = running, limit, mine


@dataclass(frozen=True)
class JobLimits:
    per_user: int = 2            # running jobs of one user
    running: int = 4             # running jobs of everyone (also the number of worker threads)
    ttl_s: float = 600.0         # forgotten this long after the owner's last look or the finish

    def __post_init__(self) -> None:
        if self.per_user < 1 or self.running < self.per_user or self.ttl_s <= 0:
            raise ValueError("JobLimits: need 1 <= per_user <= running and ttl_s > 0")


@dataclass
class Job:
    id: str
    owner: str
    key: str                     # what was asked (the report and its parameters): one running job per key
    title: str
    template: str                # the fragment that shows the result
    total: int
    done: int = 0
    state: str = "running"       # running | done | failed | cancelled
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    seen: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def progress(self) -> dict[str, Any]:
        """What the JSON progress endpoint answers."""
        return {"id": self.id, "title": self.title, "state": self.state, "step": self.done, "steps": self.total,
                "error": self.error}


class Jobs:
    def __init__(self, limits: JobLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self._clock = limits, clock
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=limits.running, thread_name_prefix="console-report")
        self._closed = False

    def start(self, owner: str, key: str, title: str, template: str, steps: Sequence[Step], finish: Finish) -> Job:
        """A new job (or the owner's running job with the same key); TooManyJobs beyond the limits."""
        with self._lock:
            if self._closed:
                raise ConsoleError("the console is shutting down")
            now = self._clock()
            self._sweep(now)
            for job in self._jobs.values():
                if job.owner == owner and job.key == key and job.running:
                    job.seen = now
                    return job
            running = [j for j in self._jobs.values() if j.running]
            mine = sum(1 for j in running if j.owner == owner)
            if mine >= self.limits.per_user:
                raise TooManyJobs(mine, self.limits.per_user, mine=True)
            if len(running) >= self.limits.running:
                raise TooManyJobs(len(running), self.limits.running, mine=False)
            job = Job(secrets.token_urlsafe(12), owner, key, title, template, len(steps), started=now, seen=now)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, list(steps), finish)
        return job

    def get(self, owner: str, job_id: str) -> Job | None:
        """The job if it exists and belongs to `owner` (a look: it keeps the job alive another ttl_s)."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner:
                return None
            job.seen = now
            return job

    def running(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.running)

    def close(self) -> None:
        """Cancel every job (each stops before its next step) and wait for the threads."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _sweep(self, now: float) -> None:
        ttl = self.limits.ttl_s
        for job in [j for j in self._jobs.values() if now - max(j.seen, j.finished) > ttl]:
            job.cancel.set()
            del self._jobs[job.id]

    def _run(self, job: Job, steps: list[Step], finish: Finish) -> None:
        results: list[Any] = []
        try:
            for step in steps:
                if job.cancel.is_set():
                    self._end(job, "cancelled")
                    return
                results.append(step())
                with self._lock:
                    job.done += 1
            result = finish(results)
        except Exception as exc:  # a report's failure is shown on its page, never lost in a thread
            log.warning("report failed", extra={"title": job.title, "error": type(exc).__name__})
            self._end(job, "failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            return
        self._end(job, "done", result=result)

    def _end(self, job: Job, state: str, *, result: dict[str, Any] | None = None, error: str = "") -> None:
        with self._lock:
            job.result, job.error, job.finished = result or {}, error, self._clock()
            job.state = state  # last: a page that sees the state sees the result
