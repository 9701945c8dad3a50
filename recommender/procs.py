"""`recommender serve --processes N` (`serve.processes`): N serving processes on one port, one model in memory.

One Python process is bound by one core (grpc.aio and scoring share an event loop). The
supervisor started by `--processes N` runs N ordinary `serve` processes on the same address:
gRPC sets SO_REUSEPORT, so each binds the port and the kernel spreads incoming connections
over them (per connection: a client with one channel stays on one process). With port 0 the
supervisor picks the port first, holding it with a SO_REUSEPORT socket that never listens.

Each process loads the model version itself, but the artifact's arrays and FAISS index are
memory-mapped read-only (recommender/arrays.py), so the processes share one copy in the
page cache; what each adds is its private working set (the Python runtime, gRPC, the
schedule, the fold-in overlay). Each hot-reloads on its own (`model-watch`), runs its own
store sync, serves Prometheus metrics on `metrics.port + i` (i = 0..N-1; 0 stays off) and
logs with `process=i`.

The supervisor writes `ready_file` once every process serves; SIGTERM/SIGINT are passed on
and it exits 0 when all exit 0. A process that dies is restarted (after 1 s, then doubling
up to 30 s while it keeps dying within a minute).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from recommender.settings import RecommenderSettings

log = logging.getLogger("recommender.procs")
START_TIMEOUT_S = 300.0


@dataclass
class Child:
    index: int
    argv: list[str]
    ready: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = 1.0
    restart_at: float = field(default=0.0)

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.argv)
        self.started = time.monotonic()


def hold_port(host: str, port: int) -> tuple[socket.socket | None, int]:
    """(socket holding the port, port): a free port when `port` is 0, kept reserved."""
    if port:
        return None, port
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), 0))
    return sock, int(sock.getsockname()[1])


def child_argv(argv: list[str], index: int, listen: str, metrics_port: int, ready: Path) -> list[str]:
    """The command line of process `index`: the supervisor's own, later flags overriding."""
    return [sys.executable, "-m", "recommender", *argv, "--processes", "1", "--process-index", str(index),
            "--listen", listen, "--metrics-port", str(metrics_port + index if metrics_port else 0),
            "--ready-file", str(ready)]


def run_processes(settings: RecommenderSettings, argv: list[str], n: int) -> int:
    """Run `n` serving processes until SIGTERM/SIGINT; `argv`: the supervisor's own arguments."""
    s = settings.serve
    host, _, port_text = s.listen.rpartition(":")
    holder, port = hold_port(host, int(port_text))
    listen = f"{host}:{port}"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="recommender-procs-") as tmp:
        children = [Child(i, child_argv(argv, i, listen, settings.metrics.port, Path(tmp) / f"ready-{i}"),
                          Path(tmp) / f"ready-{i}") for i in range(n)]
        for child in children:
            child.start()
        log.info("serving processes started", extra={"processes": n, "listen": listen,
                                                     "pids": [c.proc.pid for c in children if c.proc]})
        try:
            if not _wait_ready(children, stop):
                return 1 if not stop.is_set() else _stop(children, s.shutdown_grace_s)
            if s.ready_file:
                tmp_ready = Path(s.ready_file + ".tmp")
                tmp_ready.write_text(listen + "\n")
                os.replace(tmp_ready, s.ready_file)
            log.info("all serving processes ready", extra={"processes": n, "listen": listen})
            _supervise(children, stop)
            return _stop(children, s.shutdown_grace_s)
        finally:
            for child in children:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.kill()
            if holder is not None:
                holder.close()


def _wait_ready(children: list[Child], stop: threading.Event) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(c.ready.exists() for c in children):
        dead = [c for c in children if c.proc is not None and c.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            log.error("a serving process did not start", extra={"process": dead[0].index if dead else None,
                                                                "exit": dead[0].proc.returncode if dead and
                                                                dead[0].proc else None})
            return False
        if stop.wait(0.05):
            return False
    return True


def _supervise(children: list[Child], stop: threading.Event) -> None:
    """Until SIGTERM/SIGINT: restart a process that exits, with a growing pause."""
    while not stop.wait(0.2):
        now = time.monotonic()
        for c in children:
            if c.proc is None or c.proc.poll() is None:
                continue
            if not c.restart_at:
                lived = now - c.started
                c.backoff_s = 1.0 if lived > 60 else min(c.backoff_s * 2, 30.0)
                c.restart_at = now + c.backoff_s
                log.error("serving process exited; restarting", extra={
                    "process": c.index, "exit": c.proc.returncode, "restart_in_s": c.backoff_s})
            elif now >= c.restart_at:
                c.restart_at = 0.0
                c.start()


def _stop(children: list[Child], grace_s: float) -> int:
    for c in children:
        if c.proc is not None and c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    codes = []
    for c in children:
        if c.proc is None:
            continue
        try:
            codes.append(c.proc.wait(grace_s + 15))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            codes.append(c.proc.wait())
    log.info("serving processes stopped", extra={"exit_codes": codes})
    return 0 if all(code == 0 for code in codes) else 1
