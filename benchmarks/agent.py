"""Agent footprint: resident memory and CPU of a standalone agent at 1 and 100 events/s,
and spool replay speed after an outage. Reference in the same run: a bare interpreter.

The agent runs as `python -m agent` against a local mosquitto and is fed over its UNIX
socket, as C firmware would feed it. CPU is utime+stime from /proc over the window.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

from benchmarks.common import Result, cpu_seconds, proc_status_kib, table
from proto.telemetry import make_event
from stbcommon.localservers import Mosquitto


def _rss_mib(pid: int) -> tuple[float, float]:
    status = proc_status_kib(pid)
    return status["VmRSS"] / 1024, status["VmHWM"] / 1024


def _start_agent(broker: Mosquitto, work: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    sock = work / f"{name}.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "--mqtt", broker.url, "--device-id", name, "--household-id", "1",
         "--region", "lab", "--spool", str(work / name), "--socket", str(sock), "--log-format", "text"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "STB_AGENT__MQTT__RECONNECT_MAX_S": "1"})
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("agent did not start")
        time.sleep(0.05)
    return proc, sock


def _unacked_bytes(spool: Path) -> int:
    """Bytes after the spool's persisted head (what the broker has not acknowledged)."""
    try:
        segment, offset = (int(x) for x in (spool / "head").read_text().split())
    except (OSError, ValueError):
        segment, offset = -1, 0
    sizes = {int(p.stem): p.stat().st_size for p in spool.glob("*.seg")}
    return sum(size for seg, size in sizes.items() if seg >= segment) - (offset if segment in sizes else 0)


def _feed(sock: Path, rate: float, seconds: float) -> int:
    sent = 0
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                s.sendto(msgpack.packb(make_event("view", int(time.time() * 1000), 101, 5, 60, 0)), str(sock))
                sent += 1
            time.sleep(min(0.05, 1 / rate))
    return sent


def run(args: argparse.Namespace) -> Result:
    seconds = 10.0 if args.quick else 60.0
    result = Result("agent", {"seconds_per_rate": seconds, "quick": args.quick})
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        work = Path(tmp)
        bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(1.0)
        bare_rss, _ = _rss_mib(bare.pid)
        bare.kill()
        bare.wait()
        result.add(process="bare python", rate=0, rss_mib=round(bare_rss, 1), peak_rss_mib=round(bare_rss, 1),
                   cpu_pct=0.0, rss_vs_bare=1.0)
        with Mosquitto(work / "mosquitto") as broker:
            for rate in (1.0, 100.0):
                proc, sock = _start_agent(broker, work, f"agent-{int(rate)}")
                time.sleep(2.0)  # start-up settles
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                _feed(sock, rate, seconds)
                cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
                rss, peak = _rss_mib(proc.pid)
                proc.terminate()
                proc.wait(30)
                result.add(process="agent", rate=rate, rss_mib=round(rss, 1), peak_rss_mib=round(peak, 1),
                           cpu_pct=round(cpu, 2), rss_vs_bare=round(rss / bare_rss, 2))
            # Replay: events spooled during an outage, delivered when the broker is back.
            proc, sock = _start_agent(broker, work, "agent-replay")
            broker.stop()
            backlog = 2_000 if args.quick else 20_000
            _feed(sock, backlog / 2.0, 2.0)
            time.sleep(0.5)
            spool = work / "agent-replay"
            spooled = _unacked_bytes(spool)
            broker.start()
            t0 = time.monotonic()
            while _unacked_bytes(spool) > 0 and time.monotonic() - t0 < 120:
                time.sleep(0.05)
            replay_s = time.monotonic() - t0
            proc.terminate()
            proc.wait(30)
            result.add(process="replay", rate=backlog, rss_mib=0.0, peak_rss_mib=0.0, cpu_pct=0.0, rss_vs_bare=0.0,
                       spooled_kib=round(spooled / 1024), replay_s=round(replay_s, 2),
                       replay_events_per_s=round(backlog / replay_s))
    rows = {r["rate"]: r for r in result.rows if r["process"] == "agent"}
    result.headline = {"rss_mib_at_1": rows[1.0]["rss_mib"], "cpu_pct_at_1": rows[1.0]["cpu_pct"],
                       "rss_mib_at_100": rows[100.0]["rss_mib"], "cpu_pct_at_100": rows[100.0]["cpu_pct"],
                       "bare_python_rss_mib": round(bare_rss, 1),
                       "rss_ratio_to_bare_at_1": rows[1.0]["rss_vs_bare"],
                       "replay_events_per_s": result.rows[-1]["replay_events_per_s"],
                       "targets": {"rss_mib_at_1": 30, "cpu_pct_at_1": 1.0}}
    print()
    print(table(result.rows, ["process", "rate", "rss_mib", "peak_rss_mib", "cpu_pct", "rss_vs_bare"]))
    return result
