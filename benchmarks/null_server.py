"""The serve benchmark's reference: the Recommender gRPC stack with a null handler.

    python -m benchmarks.null_server --listen 127.0.0.1:0 --ready-file PATH [--processes N]

Same process shape as `python -m recommender serve` (uvloop, `recommender.server.start_grpc`:
same grpc.aio options, health, reflection; Prometheus endpoint, one-thread BLAS and FAISS),
but Recommend answers an empty response at once, so the difference to the real server is the
model's work per request. SIGTERM/SIGINT stop it like the real one. `--processes N` runs N-1
more null processes on the same port (SO_REUSEPORT, as `recommender serve --processes N`), the
reference for a multi-process server. Benchmark use only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop

from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from recommender.server import start_grpc
from recommender.settings import ServeSettings
from stbcommon import logs
from stbcommon.localservers import free_port
from stbcommon.metrics import metrics_endpoint


class NullServicer(pb_grpc.RecommenderServicer):
    async def Recommend(self, request: pb.RecommendRequest, context: grpc.aio.ServicerContext) -> Any:
        return pb.RecommendResponse()


async def _serve(settings: ServeSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stack = await start_grpc(NullServicer(), settings)
    if stack is None:
        return 1
    await stop.wait()
    await stack.stop(settings.shutdown_grace_s)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.null_server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:0", help="gRPC address (port 0 = any)")
    p.add_argument("--ready-file", default="", help="write HOST:PORT here once serving")
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port, 0 = off")
    p.add_argument("--processes", type=int, default=1, help="null processes on the port (SO_REUSEPORT)")
    args = p.parse_args(argv)
    logs.configure("WARNING", "text")
    import faiss  # loaded by the real server too (its OpenBLAS and OpenMP threads)

    faiss.omp_set_num_threads(1)
    listen = args.listen
    if args.processes > 1 and listen.endswith(":0"):
        listen = f"{listen.rsplit(':', 1)[0]}:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="null-server-") as tmp:
        others = _start_others(listen, args.processes - 1, Path(tmp))
        try:
            settings = ServeSettings(listen=listen, ready_file=args.ready_file)
            with metrics_endpoint("127.0.0.1", args.metrics_port):
                return uvloop.run(_serve(settings))
        finally:
            for proc in others:
                proc.terminate()
            for proc in others:
                proc.wait(30)


def _start_others(listen: str, count: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    """`count` more null servers on `listen`, each serving before this returns."""
    readies = [tmp / f"ready-{i}" for i in range(count)]
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.null_server", "--listen", listen,
                               "--ready-file", str(r)]) for r in readies]
    deadline = time.monotonic() + 60
    while not all(r.exists() and r.read_text().endswith("\n") for r in readies):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for proc in procs:
                proc.kill()
            raise SystemExit("null_server: an extra process did not start")
        time.sleep(0.05)
    return procs


if __name__ == "__main__":
    sys.exit(main())
