"""The collector as a child process, observed through its /metrics endpoint.

Used by the integration tests, the benchmarks and `make demo`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stbcommon.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]


class CollectorProcess:
    """`python -m collector` in a subprocess, observed through its /metrics endpoint."""

    def __init__(self, mqtt_url: str, store_url: str, tmp: Path, *, group: str = "test", workers: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        self.mqtt_url, self.store_url, self.group, self.workers = mqtt_url, store_url, group, workers
        self.metrics_port = free_ports(workers)[0]  # worker i serves metrics on port + i
        self.log_path = tmp / f"collector-{self.metrics_port}.log"
        self.env = {**os.environ, "STB_COLLECTOR__BATCH__MAX_AGE_S": "0.2",
                    "STB_COLLECTOR__STORE__RETRY_MAX_S": "1.0",
                    "STB_COLLECTOR__MQTT__RECONNECT_MAX_S": "1.0", **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_connected: bool = True) -> CollectorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector", "--mqtt", self.mqtt_url, "--store", self.store_url,
                 "--group", self.group, "--metrics-port", str(self.metrics_port), "--log-format", "text",
                 "--workers", str(self.workers)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait_connected:
            self.wait_for(lambda m: m.get("collector_mqtt_connected") == 1, 30, "collector connected")
        return self

    def metrics(self, worker: int = 0) -> dict[str, float]:
        try:
            url = f"http://127.0.0.1:{self.metrics_port + worker}/metrics"
            text = urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.decode().splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    def rows_written(self) -> float:
        return self.metrics().get('collector_rows_written_total{table="events"}', 0.0)

    def dead_letters_written(self) -> float:
        return self.metrics().get('collector_rows_written_total{table="dead_letters"}', 0.0)

    def wait_for(self, check: Callable[[dict[str, float]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited ({self.proc.returncode}) waiting for {what}:\n"
                                     + self.log_tail())
            if check(self.metrics()):
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; metrics={self.metrics()}\n{self.log_tail()}")

    def wait_rows(self, rows: int, timeout: float = 60) -> None:
        self.wait_for(lambda m: m.get('collector_rows_written_total{table="events"}', 0) >= rows,
                      timeout, f"{rows} rows written")

    def wait_quiet(self, quiet_s: float = 1.5, timeout: float = 60) -> None:
        """Until nothing was received or acked for `quiet_s` and nothing is buffered."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            m = self.metrics()
            now = (m.get("collector_messages_received_total"), m.get("collector_acks_total"))
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s and m.get("collector_buffered_messages", 1) == 0:
                return
            time.sleep(0.1)
        raise AssertionError("collector never went quiet\n" + self.log_tail())

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop_cleanly(self, timeout: float = 30) -> None:
        """SIGTERM, then fail with the log's tail unless the collector exits 0."""
        code = self.terminate(timeout)
        if code != 0:
            raise AssertionError(f"collector exited {code} on SIGTERM:\n{self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
