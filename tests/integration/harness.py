"""Drive the real collector as a subprocess and generate realistic wire traffic for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from proto.telemetry import encode_batch, make_event, topic_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Traffic:
    """Messages from `devices` STBs, `events_per_message` events each, distinct (device, seq)."""

    devices: int
    messages_per_device: int
    events_per_message: int
    region: str = "north"
    device_prefix: str = "stb"
    sent_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for m in range(self.messages_per_device):
            for d in range(self.devices):
                device = f"{self.device_prefix}-{d:05d}"
                ts = self.sent_ms - 3_600_000 + m * 1000
                events = [make_event("view", ts + i, 100 + d % 50, 7000 + i, 30 + i, 0)
                          for i in range(self.events_per_message)]
                yield topic_for(self.region, device), encode_batch(
                    device_id=device, household_id=1000 + d // 2, firmware="4.2.0",
                    seq0=m * self.events_per_message, sent_ms=self.sent_ms, events=events)

    @property
    def total_events(self) -> int:
        return self.devices * self.messages_per_device * self.events_per_message


class Collector:
    """`python -m collector` in a subprocess, observed through its /metrics endpoint."""

    def __init__(self, mqtt_url: str, store_url: str, tmp: Path, *, group: str = "test", workers: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        self.mqtt_url, self.store_url, self.group, self.workers = mqtt_url, store_url, group, workers
        self.metrics_port = free_port()
        self.log_path = tmp / f"collector-{self.metrics_port}.log"
        self.env = {**os.environ, "STB_COLLECTOR__BATCH__MAX_AGE_S": "0.2",
                    "STB_COLLECTOR__STORE__RETRY_MAX_S": "1.0",
                    "STB_COLLECTOR__MQTT__RECONNECT_MAX_S": "1.0", **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_connected: bool = True) -> Collector:
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

    def wait_for(self, check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
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


def count_events(store_url: str, *, final: bool = True) -> int:
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        sql = f"SELECT count() FROM {wh.database}.events{' FINAL' if final else ''}"
        return int(wh.query_rows(sql)[0][0])
    finally:
        wh.close()


def dead_letter_reasons(store_url: str) -> dict[str, int]:
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        return {str(r): int(c) for r, c in wh.query_rows(
            f"SELECT reason, count() FROM {wh.database}.dead_letters GROUP BY reason")}
    finally:
        wh.close()


def publish(mqtt_url: str, messages: Iterator[tuple[str, bytes]] | list[tuple[str, bytes]],
            *, timeout: float = 120) -> int:
    """Publish QoS 1 and wait for every PUBACK; returns how many the broker accepted."""
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt

    url = urlsplit(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{free_port()}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise AssertionError("broker did not acknowledge a test publish in time")
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()
