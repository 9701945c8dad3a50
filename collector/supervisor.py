"""`--workers N`: N worker processes, each its own shared-subscription member.

Worker i uses client id <group>-<host>-w<i>, or <client_id>-w<i> when one is set (its
persistent session survives restarts), and metrics port P+i. The supervisor forwards
SIGTERM and restarts a worker that dies.

The signal handler only records the signal and wakes the main loop; the loop alone
starts, stops and restarts workers. So a SIGTERM that arrives while a worker is being
restarted (during the back-off, or while it is being spawned) is never missed: no worker
is started once stopping, and every worker alive when stopping begins is told to stop.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from collector.settings import CollectorSettings
from stbcommon import logs
from stbcommon.backoff import Backoff

log = logging.getLogger("collector.supervisor")
WorkerMain = Callable[[CollectorSettings, int], None]


def _worker_main(settings: CollectorSettings, worker: int) -> None:
    from collector.daemon import run_worker

    logs.configure(settings.log.level, settings.log.format)
    raise SystemExit(run_worker(settings, worker))


def supervise(settings: CollectorSettings, *, worker_main: WorkerMain = _worker_main,
              restart_backoff: tuple[float, float] = (1.0, 30.0)) -> int:
    """Run the workers until SIGTERM/SIGINT; the worst worker exit code."""
    ctx = mp.get_context("spawn")
    stop = _Flag()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()  # only this: the main loop may be inside start() right now, and it does the rest

    def start(i: int) -> BaseProcess:
        proc = ctx.Process(target=worker_main, args=(worker_settings(settings, i), i), name=f"collector-w{i}")
        proc.start()
        return proc

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs: dict[int, BaseProcess] = {}
    for i in range(settings.workers):
        if stop.is_set():
            break
        procs[i] = start(i)
    backoffs = {i: Backoff(*restart_backoff) for i in range(settings.workers)}
    restart_at: dict[int, float] = {}
    log.info("supervising workers", extra={"workers": settings.workers})
    worst = 0
    forwarded = False
    while procs or (restart_at and not stop.is_set()):
        if stop.is_set() and not forwarded:
            forwarded = True
            restart_at.clear()
            for proc in procs.values():
                if proc.is_alive():
                    proc.terminate()  # SIGTERM: each worker drains and acks
        for i, proc in list(procs.items()):
            proc.join(timeout=0.2 / max(1, len(procs)))
            if proc.exitcode is None:
                continue
            worst = max(worst, proc.exitcode if proc.exitcode > 0 else 0)
            del procs[i]
            if not stop.is_set():
                delay = backoffs[i].next_delay()
                log.error("worker died, restarting", extra={"worker": i, "exitcode": proc.exitcode,
                                                             "restart_in_s": round(delay, 2)})
                restart_at[i] = time.monotonic() + delay
        now = time.monotonic()
        for i, when in list(restart_at.items()):
            if now >= when and not stop.is_set():
                del restart_at[i]
                procs[i] = start(i)
        if not procs and restart_at and not stop.is_set():
            time.sleep(min(0.1, max(0.0, min(restart_at.values()) - time.monotonic())))
    return worst


def worker_settings(settings: CollectorSettings, worker: int) -> CollectorSettings:
    """A fixed client id made unique per worker: with one id, the workers would knock each
    other off the broker (MQTT keeps one connection per client id), for ever."""
    if not settings.mqtt.client_id:
        return settings  # the default id already ends in -w<worker>
    return dataclasses.replace(settings, mqtt=dataclasses.replace(
        settings.mqtt, client_id=f"{settings.mqtt.client_id}-w{worker}"[:128]))


class _Flag:
    """Set from a signal handler. Not threading.Event: its set() takes a lock that the main
    thread may hold at that moment (inside Event.wait), which would deadlock the handler."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set
