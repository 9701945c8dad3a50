"""Serve: Recommend latency and QPS of the real gRPC server, vs a null handler on the same stack.

The real server (`python -m recommender serve`) loads a synthetic model artifact published into
a temp model dir exactly as `train` publishes one (benchmarks/serve_model.py: 1M households,
5,000 and 50,000 contents, 200 channels x 3 days of airings), with an empty embedded chdb
store; its store-sync task runs as in production (the schedule refresh at start finds no
airings and keeps the artifact's, which is waited for before measuring; the next refresh and
the first fold-in are 10 and 15 minutes away, after the server's run). The reference, in the
same run: `benchmarks.null_server`, the same gRPC stack (`recommender.server.start_grpc`)
whose Recommend returns an empty response at once.

Variants of the real server, each against the same null handler: micro-batching off
(`serve.batch_max = 1`, each call scored alone), on (the default), and on with two serving
processes on the port (`--processes 2`, SO_REUSEPORT: the kernel spreads *connections*, and
the load generator opens one per client process, so `calls_per_process` shows how a run was
balanced). Each server's memory is the proportional set size (PSS) of its process tree:
the model is memory-mapped and shared, so RSS would count it once per process.

The engine alone (benchmarks/serve_engine.py): CPU per call of `recommend_batch` in this
process at batch sizes 1-64 on the same model and requests, beside the null handler's per-call
CPU (server_cpu_pct / qps): the engine's cost against the gRPC stack's.

A spawned pool of client processes (benchmarks/serve_client.py) holds the concurrency as
in-flight calls (split evenly), warms up, then measures a fixed window per level: p50/p99
latency, QPS, non-OK statuses, and the CPU of the server and of the clients. Client and
server share the machine's cores: on 2 cores the client's CPU is part of what is measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import serve_client, serve_engine, serve_model
from benchmarks.common import Result, cpu_seconds, proc_status_kib, table
from recommender.settings import DAY_MS
from stbcommon.ports import free_ports

LEVELS = (1, 8, 32, 128)
CLIENT_PROCESSES = 2
TARGET_P99_MS = 10.0   # issue 15: p99 <= 10 ms and >= 0.8 of the null handler at concurrency 32
TARGET_RATIO = 0.8
# (label suffix, environment, processes): the real server's variants, each measured at every level
VARIANTS: tuple[tuple[str, dict[str, str], int], ...] = (
    (" unbatched", {"STB_RECOMMENDER__SERVE__BATCH_MAX": "1"}, 1),
    ("", {}, 1),                      # the defaults: micro-batching on
    (" x2", {}, 2),                   # two serving processes on the port
)
_STORE_SYNCED = ("keeping the schedule in use", "schedule refreshed", "serving from the model artifact")


@dataclass
class Server:
    """A serving process started for the benchmark, its log in a file."""

    label: str
    proc: subprocess.Popen[bytes]
    log: Path
    address: str = ""
    start_s: float = 0.0

    @classmethod
    def start(cls, label: str, argv: list[str], work: Path, wait_for: tuple[str, ...] = (),
              env: dict[str, str] | None = None, processes: int = 1) -> Server:
        ready, log = work / f"{label}.ready", work / f"{label}.log"
        ready.unlink(missing_ok=True)  # a stale one would name a dead server's port
        t = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", *argv, "--ready-file", str(ready)], stdout=out,
                                    stderr=subprocess.STDOUT,
                                    env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})})
        server = cls(label, proc, log)
        server._wait(lambda: ready.exists() and ready.read_text().endswith("\n"), "ready")
        server.address = ready.read_text().strip()
        if wait_for:  # the first store sync runs at start (in every process): not inside the measurement
            server._wait(lambda: sum(log.read_text().count(w) for w in wait_for) >= processes, "store synced")
        server.start_s = round(time.monotonic() - t, 2)
        return server

    def _wait(self, done: Callable[[], bool], what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"{self.label}: not {what}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def peak_rss_mib(self) -> float:
        return round(proc_status_kib(self.proc.pid)["VmHWM"] / 1024, 1)

    def pss_mib(self) -> float:
        """Proportional set size of the server's process tree (shared pages split between them)."""
        return round(sum(_smaps_kib(pid).get("Pss", 0) for pid in _tree(self.proc.pid)) / 1024, 1)

    def stop(self) -> None:
        self.proc.terminate()
        if self.proc.wait(30) != 0:
            raise RuntimeError(f"{self.label}: exit {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for c in children for p in _tree(int(c)))]


def _smaps_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def _served_calls(metrics_port: int, processes: int) -> list[int]:
    """Recommend calls answered by each serving process (its /metrics on metrics_port + i)."""
    import re
    import urllib.request

    out = []
    for i in range(processes):
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port + i}/metrics", timeout=5) as r:
            text = r.read().decode()
        out.append(int(sum(float(v) for v in re.findall(
            r'^recommender_requests_total\{method="Recommend",status="OK"\} ([0-9.e+]+)$', text, re.M))))
    return out


def _warm(_: int) -> int:
    time.sleep(0.5)  # long enough that every pool process is spawned and has imported grpc
    return os.getpid()


def level(pool: concurrent.futures.ProcessPoolExecutor, server: Server, base: serve_client.Load,
          concurrency: int, warmup_s: float, seconds: float) -> dict[str, Any]:
    """One concurrency level: the in-flight calls split over the client processes, each sending
    from now, measuring from now + warmup_s for `seconds`; the server's CPU over that window."""
    shares = [len(a) for a in np.array_split(np.arange(concurrency), min(concurrency, CLIENT_PROCESSES))]
    t_start = time.monotonic() + warmup_s
    loads = [replace(base, inflight=n, seed=base.seed + 97 * i + concurrency, t_start=t_start,
                     t_end=t_start + seconds) for i, n in enumerate(shares)]
    futures = [pool.submit(serve_client.measure, load) for load in loads]
    time.sleep(max(0.0, t_start - time.monotonic()))
    pids = _tree(server.proc.pid)  # with --processes: the supervisor and its serving processes
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    time.sleep(max(0.0, t_start + seconds - time.monotonic()))
    server_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
    parts = [f.result(timeout=seconds + 120) for f in futures]
    lat = np.concatenate([p["latencies"] for p in parts]) * 1e3
    return {"concurrency": concurrency, "client_processes": len(shares), "requests": len(lat),
            "qps": len(lat) / seconds, "p50_ms": float(np.percentile(lat, 50)) if len(lat) else 0.0,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else 0.0,
            "errors": sum(p["errors"] for p in parts), "empty": sum(p["empty"] for p in parts),
            "server_cpu_pct": round(server_cpu / seconds * 100, 1),
            "client_cpu_pct": round(sum(p["cpu_s"] for p in parts) / seconds * 100, 1)}


def measure_server(result: Result, pool: concurrent.futures.ProcessPoolExecutor, server: Server,
                   base: serve_client.Load, contents: int, warmup_s: float, seconds: float,
                   processes: int = 1) -> None:
    """Every level; QPS as a share of the one-process null handler's and, with several processes,
    of the null handler with as many (`qps_ratio_to_null_same_processes`)."""
    null = {r["concurrency"]: r["qps"] for r in result.rows if r["server"] == "null"}
    same = {r["concurrency"]: r["qps"] for r in result.rows if r["server"] == f"null x{processes}"}
    for c in LEVELS:
        row = level(pool, server, replace(base, address=server.address), c, warmup_s, seconds)
        is_null = server.label.startswith("null")
        ratio = row["qps"] / null[c] if not is_null and null.get(c) else 1.0
        if processes > 1 and not is_null and same.get(c):
            row["qps_ratio_to_null_same_processes"] = round(row["qps"] / same[c], 3)
        result.add(server=server.label, contents=contents, **row, qps_ratio_to_null=round(ratio, 3))
    result.params["servers"][server.label] = {"start_s": server.start_s, "peak_rss_mib": server.peak_rss_mib(),
                                              "pss_mib": server.pss_mib()}


def _headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["server"], r["concurrency"]): r for r in rows}
    out: dict[str, Any] = {"null_qps": {c: round(by["null", c]["qps"]) for c in LEVELS},
                           "null_p99_ms": {c: round(by["null", c]["p99_ms"], 2) for c in LEVELS}}
    # CPU a call of the server's process tree at concurrency 32: the gRPC stack's own (null) and each server's
    out["server_cpu_ms_per_call_c32"] = {label: round(r["server_cpu_pct"] / 100 / r["qps"] * 1e3, 3)
                                         for (label, c), r in by.items() if c == 32 and r["qps"]}
    if ("null x2", 32) in by:
        out["null_x2_qps"] = {c: round(by["null x2", c]["qps"]) for c in LEVELS}
        out["null_x2_p99_ms"] = {c: round(by["null x2", c]["p99_ms"], 2) for c in LEVELS}
    for label in dict.fromkeys(r["server"] for r in rows if not r["server"].startswith("null")):
        c32 = by[label, 32]
        out[label] = {
            "qps_ratio_to_null": {c: by[label, c]["qps_ratio_to_null"] for c in LEVELS},
            "qps": {c: round(by[label, c]["qps"]) for c in LEVELS},
            "p50_ms": {c: round(by[label, c]["p50_ms"], 2) for c in LEVELS},
            "p99_ms": {c: round(by[label, c]["p99_ms"], 2) for c in LEVELS},
            "p99_ms_c32_vs_target": round(c32["p99_ms"] / TARGET_P99_MS, 2),
            "p99_target_met_c32": c32["p99_ms"] <= TARGET_P99_MS,
            "qps_ratio_target_met_c32": c32["qps_ratio_to_null"] >= TARGET_RATIO,
        }
        if "qps_ratio_to_null_same_processes" in c32:
            out[label]["qps_ratio_to_null_same_processes"] = {
                c: by[label, c].get("qps_ratio_to_null_same_processes") for c in LEVELS}
    out["errors"] = sum(r["errors"] for r in rows)
    out["empty_model_answers"] = sum(r["empty"] for r in rows if not r["server"].startswith("null"))
    out["targets"] = {"p99_ms_c32": TARGET_P99_MS, "qps_ratio_to_null": TARGET_RATIO}
    return out


def run(args: argparse.Namespace) -> Result:
    households = 20_000 if args.quick else 1_000_000
    catalogues = (2_000,) if args.quick else (5_000, 50_000)
    warmup_s, seconds = (0.5, 2.0) if args.quick else (2.0, 10.0)
    guide = serve_model.Guide(start_ms=int(time.time() * 1000) // DAY_MS * DAY_MS - DAY_MS, days=3, channels=200)
    result = Result("serve", {
        "quick": args.quick, "households": households, "contents": list(catalogues), "levels": list(LEVELS),
        "guide": {"channels": guide.channels, "days": guide.days, "slot_minutes": list(serve_model.SLOT_MINUTES)},
        "warmup_s": warmup_s, "seconds_per_level": seconds,
        "client": f"grpc.aio on uvloop, {serve_client.CONNECTIONS} connections per process",
        "client_processes": CLIENT_PROCESSES, "shared_machine": "client processes and server share the cores",
        "requests": "k 10, window 180 min, known households, half at prime time; 20 % with 60 channels, "
                    "10 % exclude_watched", "store": "empty embedded chdb, store-sync as in production",
        "servers": {}})
    base = serve_client.Load("", 0, 11, households, guide.start_ms, guide.days, guide.channels, 0.0, 0.0)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, \
            concurrent.futures.ProcessPoolExecutor(CLIENT_PROCESSES, mp_context=ctx) as pool:
        work = Path(tmp)
        list(pool.map(_warm, range(CLIENT_PROCESSES)))
        store = f"chdb://{work / 'chdb'}"
        subprocess.run([sys.executable, "-c", "import sys; from warehouse import open_warehouse; "
                        "w = open_warehouse(sys.argv[1]); w.migrate(); w.close()", store], check=True)
        for processes in (1, 2):
            label = "null" if processes == 1 else f"null x{processes}"
            null = Server.start(label, ["benchmarks.null_server", "--listen", "127.0.0.1:0", "--processes",
                                        str(processes)], work)
            try:
                measure_server(result, pool, null, base, 0, warmup_s, seconds)
            finally:
                null.stop()
        t = time.monotonic()
        users = serve_model.users(np.random.default_rng(1), households)
        for contents in catalogues:
            model_dir = work / f"models-{contents}"
            serve_model.publish(model_dir, users, contents, guide, seed=contents)
            result.params[f"model_build_s_{contents}"] = round(time.monotonic() - t, 1)
            engine_ms = serve_engine.engine_cpu_ms(model_dir, base)
            result.params[f"engine_cpu_ms_per_call_{contents}"] = engine_ms
            print(f"engine alone, {contents:,} contents: CPU ms a call by batch size {engine_ms}", flush=True)
            for suffix, env, processes in VARIANTS[: None if args.quick or contents == catalogues[0] else 2]:
                label = f"model {contents // 1000}k{suffix}"
                metrics_port = free_ports(processes)[0]  # serving process i: metrics_port + i
                server = Server.start(label, ["recommender", "serve", "--store", store, "--model-dir", str(model_dir),
                                              "--listen", "127.0.0.1:0", "--metrics-port", str(metrics_port),
                                              "--processes", str(processes), "--log-format", "text"],
                                      work, _STORE_SYNCED, env=env, processes=processes)
                try:
                    measure_server(result, pool, server, base, contents, warmup_s, seconds, processes)
                    calls = _served_calls(metrics_port, processes)
                    result.params["servers"][label].update(processes=processes, calls_per_process=calls, **env)
                finally:
                    server.stop()
            t = time.monotonic()
    result.headline = _headline(result.rows)
    print()
    print(table(result.rows, ["server", "concurrency", "client_processes", "requests", "qps", "p50_ms", "p99_ms",
                              "errors", "server_cpu_pct", "client_cpu_pct", "qps_ratio_to_null",
                              "qps_ratio_to_null_same_processes"]))
    return result


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_qps, ax_lat) = plt.subplots(1, 2, figsize=(11, 4))
    for label in dict.fromkeys(r["server"] for r in doc["rows"]):
        rows = [r for r in doc["rows"] if r["server"] == label]
        conc = [r["concurrency"] for r in rows]
        colour = "#999999" if label.startswith("null") else None
        ax_qps.plot(conc, [r["qps"] for r in rows], "o-", label=label, color=colour)
        (line,) = ax_lat.plot(conc, [r["p99_ms"] for r in rows], "o-", label=f"{label} p99", color=colour)
        ax_lat.plot(conc, [r["p50_ms"] for r in rows], "o--", color=line.get_color(), label=f"{label} p50")
    ax_lat.axhline(doc["headline"]["targets"]["p99_ms_c32"], color="red", lw=0.8, ls=":", label="p99 target")
    ax_lat.set_yscale("log")
    ax_qps.set_ylim(bottom=0)
    for ax, title, ylabel in ((ax_qps, "throughput", "requests/s"), (ax_lat, "latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(LEVELS), [str(c) for c in LEVELS])
        ax.set_xlabel("concurrency (in-flight calls)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"serve: Recommend on {doc['params']['households']:,} households vs a null handler (same run)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
