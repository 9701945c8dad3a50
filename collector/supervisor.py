"""`--workers N`: N worker processes, each its own shared-subscription member.

Worker i uses client id <group>-<host>-w<i> (its persistent session survives restarts)
and metrics port P+i. The supervisor forwards SIGTERM and restarts a worker that dies.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from multiprocessing.process import BaseProcess

from collector.settings import CollectorSettings
from stbcommon import logs
from stbcommon.backoff import Backoff

log = logging.getLogger("collector.supervisor")


def _worker_main(settings: CollectorSettings, worker: int) -> None:
    from collector.daemon import run_worker

    logs.configure(settings.log.level, settings.log.format)
    raise SystemExit(run_worker(settings, worker))


def supervise(settings: CollectorSettings) -> int:
    ctx = mp.get_context("spawn")
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.is_alive() and proc.pid:
                proc.terminate()  # SIGTERM: each worker drains and acks

    def start(i: int) -> BaseProcess:
        proc = ctx.Process(target=_worker_main, args=(settings, i), name=f"collector-w{i}")
        proc.start()
        return proc

    procs = {i: start(i) for i in range(settings.workers)}
    backoffs = {i: Backoff(1.0, 30.0) for i in procs}
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("supervising workers", extra={"workers": settings.workers})
    worst = 0
    while procs:
        for i, proc in list(procs.items()):
            proc.join(timeout=0.2)
            if proc.exitcode is None:
                continue
            worst = max(worst, proc.exitcode if proc.exitcode > 0 else 0)
            if stopping:
                del procs[i]
            else:
                delay = backoffs[i].next_delay()
                log.error("worker died, restarting", extra={"worker": i, "exitcode": proc.exitcode,
                                                             "restart_in_s": round(delay, 2)})
                time.sleep(delay)
                procs[i] = start(i)
    return worst
