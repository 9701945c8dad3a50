"""What every benchmark shares: the machine description, tables, JSON results, peak memory."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The facts a reader needs to judge the figures."""
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_kb = 0
    try:
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("paho-mqtt", "msgpack", "numpy", "clickhouse-driver", "chdb", "implicit", "faiss-cpu", "grpcio",
                "uvloop"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    for binary, flag in (("mosquitto", "-h"), ("clickhouse-server", "--version")):
        try:
            out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=10)
            versions[binary] = (out.stdout + out.stderr).strip().splitlines()[0][:80]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "note": "shared, noisy machine: compare ratios measured in the same run"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process so far, from /proc."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a live process and its live descendants (a supervisor and its workers)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # a thread that just ended
            continue
        for child in children:
            with contextlib.suppress(OSError):
                total += tree_cpu_seconds(int(child))
    return total


def proc_status_kib(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS: resident now, VmHWM: peak resident);
    empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: int(value.split()[0]) for key, value in (line.split(":", 1) for line in text.splitlines()
                                                          if line.endswith(" kB"))}


@dataclass
class Result:
    """One benchmark run: parameters, rows of figures, headline ratios."""

    name: str
    params: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        print(format_row(row), flush=True)

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.name, "started_unix": int(self.started),
                "duration_s": round(time.time() - self.started, 1), "machine": machine(),
                "params": self.params, "rows": self.rows, "headline": self.headline}

    def write(self, path: str | Path | None) -> Path:
        target = Path(path) if path else RESULTS_DIR / f"{self.name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return target


def format_row(row: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    return "  ".join(f"{k}={fmt(v)}" for k, v in row.items())


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(c) for c in columns]] + [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
