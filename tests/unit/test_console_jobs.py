"""The console's report job registry (console.jobs): progress step by step, the result, ownership,
limits, expiry on a fake clock, failures and shutdown. Steps wait on events, so every test is
deterministic; each wait is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from console.jobs import Job, JobLimits, Jobs, TooManyJobs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """Steps that each wait for a release, so a test sees the job between steps."""

    def __init__(self) -> None:
        self.released = threading.Semaphore(0)
        self.calls = 0

    def step(self, value: int) -> Callable[[], int]:
        def run() -> int:
            assert self.released.acquire(timeout=5), "step never released"
            self.calls += 1
            return value
        return run

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.released.release()


def wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def total(results: list[Any]) -> dict[str, Any]:
    return {"sum": sum(results)}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(clock: Clock) -> Iterator[Jobs]:
    registry = Jobs(JobLimits(per_user=2, running=3, ttl_s=60), clock=clock)
    yield registry
    registry.close()


def start(jobs: Jobs, owner: str, gate: Gate, key: str = "k", n: int = 3) -> Job:
    return jobs.start(owner, key, "A report", "t.html", [gate.step(i + 1) for i in range(n)], total)


def test_progress_step_by_step_then_the_result(jobs: Jobs) -> None:
    gate = Gate()
    job = start(jobs, "mia", gate)
    assert (job.state, job.done, job.total) == ("running", 0, 3)
    assert job.progress() == {"id": job.id, "title": "A report", "state": "running", "step": 0, "steps": 3,
                              "error": ""}
    gate.release()
    wait_for(lambda: job.done == 1)
    assert job.running and job.result == {}
    gate.release(2)
    wait_for(lambda: job.state == "done")
    assert job.done == 3 and job.result == {"sum": 6} and jobs.get("mia", job.id) is job


def test_only_the_owner_sees_a_job(jobs: Jobs) -> None:
    gate = Gate()
    job = start(jobs, "mia", gate)
    assert jobs.get("vic", job.id) is None
    assert jobs.get("mia", "no-such-job") is None
    assert jobs.get("mia", job.id) is job
    gate.release(3)


def test_the_same_report_asked_again_while_running_is_the_same_job(jobs: Jobs) -> None:
    gate = Gate()
    first = start(jobs, "mia", gate)
    assert start(jobs, "mia", gate) is first
    other = start(jobs, "vic", gate)  # another user's identical report is their own job
    assert other.id != first.id
    gate.release(6)
    wait_for(lambda: first.state == other.state == "done")
    again = start(jobs, "mia", Gate(), n=0)  # finished: asking again computes it afresh
    assert again.id != first.id


def test_running_jobs_are_bounded_per_user_and_in_all(jobs: Jobs) -> None:
    gate = Gate()
    start(jobs, "mia", gate, "a")
    start(jobs, "mia", gate, "b")
    with pytest.raises(TooManyJobs) as mine:
        start(jobs, "mia", gate, "c")
    assert mine.value.mine and mine.value.limit == 2 and "you are already running 2 long reports" in str(mine.value)
    start(jobs, "vic", gate, "a")
    with pytest.raises(TooManyJobs) as everyone:
        start(jobs, "ada", gate, "a")
    assert not everyone.value.mine and "the console is already running 3" in str(everyone.value)
    assert jobs.running() == 3
    gate.release(9)
    wait_for(lambda: jobs.running() == 0)
    start(jobs, "ada", Gate(), "a", n=0)  # room again once they finished


def test_a_finished_job_expires_ttl_after_its_last_look(jobs: Jobs, clock: Clock) -> None:
    gate = Gate()
    job = start(jobs, "mia", gate, n=1)
    gate.release()
    wait_for(lambda: job.state == "done")
    clock.now += 50
    assert jobs.get("mia", job.id) is job  # a look keeps it another ttl
    clock.now += 50
    assert jobs.get("mia", job.id) is job
    clock.now += 61
    assert jobs.get("mia", job.id) is None


def test_an_abandoned_running_job_is_forgotten_and_stops_before_its_next_step(jobs: Jobs, clock: Clock) -> None:
    gate = Gate()
    job = start(jobs, "mia", gate, n=3)
    gate.release()
    wait_for(lambda: job.done == 1)
    clock.now += 61
    assert jobs.get("mia", job.id) is None and jobs.running() == 0  # its slot is free at once
    gate.release()  # the step under way finishes; the third never starts
    wait_for(lambda: job.state == "cancelled")
    assert gate.calls == 2 and job.result == {}


def test_a_failing_step_fails_the_job_with_its_reason(jobs: Jobs) -> None:
    def broken() -> int:
        raise ValueError("no such day")

    job = jobs.start("mia", "k", "A report", "t.html", [broken], total)
    wait_for(lambda: job.state == "failed")
    assert job.error == "ValueError: no such day" and job.progress()["state"] == "failed"
    assert jobs.running() == 0


def test_close_cancels_running_jobs_and_refuses_new_ones(clock: Clock) -> None:
    registry = Jobs(JobLimits(), clock=clock)
    gate = Gate()
    job = start(registry, "mia", gate, n=3)
    gate.release()
    wait_for(lambda: job.done == 1)
    closer = threading.Thread(target=registry.close)
    closer.start()
    wait_for(lambda: job.cancel.is_set())
    gate.release()
    closer.join(timeout=5)
    assert not closer.is_alive() and job.state == "cancelled" and gate.calls == 2
    with pytest.raises(Exception, match="shutting down"):
        start(registry, "mia", Gate())


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        JobLimits(per_user=3, running=2)
    with pytest.raises(ValueError):
        JobLimits(ttl_s=0)
