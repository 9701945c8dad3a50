"""Synthetic wire traffic for tests and benchmarks: many devices, distinct (device, seq).

Not the household model (that is `firmware_sim.behaviour`): this is the fastest way to
put a known number of valid events on a broker.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proto.telemetry import KIND_BY_NAME, encode_batch, topic_for

_VIEW = KIND_BY_NAME["view"].code


@dataclass
class Traffic:
    """`devices` STBs each send `messages_per_device` messages of `events_per_message` events."""

    devices: int
    messages_per_device: int
    events_per_message: int
    region: str = "north"
    device_prefix: str = "stb"
    sent_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def messages(self, devices: range | None = None) -> Iterator[tuple[str, bytes]]:
        for m in range(self.messages_per_device):
            for d in devices if devices is not None else range(self.devices):
                device = f"{self.device_prefix}-{d:05d}"
                ts = self.sent_ms - 3_600_000 + m * 1000
                # Known-valid `view` events, built directly (make_event's check per event
                # would make the generator, not the collector, the bottleneck).
                events = [[_VIEW, ts + i, 100 + d % 50, 7000 + i, 30 + i, 0] for i in range(self.events_per_message)]
                yield topic_for(self.region, device), encode_batch(
                    device_id=device, household_id=1000 + d // 2, firmware="4.2.0",
                    seq0=m * self.events_per_message, sent_ms=self.sent_ms, events=events)

    @property
    def total_messages(self) -> int:
        return self.devices * self.messages_per_device

    @property
    def total_events(self) -> int:
        return self.total_messages * self.events_per_message


def publish(mqtt_url: str, messages: Iterable[tuple[str, bytes]], *, timeout: float = 300,
            client_id: str | None = None) -> int:
    """Publish QoS 1 and wait for every PUBACK; returns how many the broker accepted."""
    import paho.mqtt.client as mqtt

    url = urlsplit(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"loadgen-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    if url.username:
        client.username_pw_set(url.username, url.password or "")
    client.max_inflight_messages_set(1000)
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("the broker did not acknowledge a publish in time")
        return len(infos)
    finally:
        client.disconnect()
        client.loop_stop()


def _publish_share(args: tuple[str, Traffic, int, int]) -> int:
    url, traffic, share, shares = args
    devices = range(share, traffic.devices, shares)
    return publish(url, traffic.messages(devices), client_id=f"loadgen-{share}-{time.monotonic_ns()}")


def publish_parallel(mqtt_url: str, traffic: Traffic, processes: int = 2) -> int:
    """The same traffic from several publisher processes (one paho publisher does ~7k msg/s)."""
    if processes <= 1:
        return publish(mqtt_url, traffic.messages())
    with mp.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_publish_share, [(mqtt_url, traffic, i, processes) for i in range(processes)]))


def chunked(items: Iterable[tuple[str, bytes]], size: int) -> Iterator[list[tuple[str, bytes]]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
