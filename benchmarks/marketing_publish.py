"""The marketing publisher alone: N campaign messages (one variant, N boxes) built and published at
QoS 1 with expiry to a local mosquitto, until the last PUBACK.

Nobody subscribes to the topics, so the broker answers each PUBLISH with 0x10 without queueing
it: this measures the sender and the broker's intake, not the fan-out to boxes (their cost). The
messages are built first (ids, payloads, topics: timed apart), then published on uvloop with
the default `[mqtt] window`. CPU seconds of this process and of the broker are reported beside
the rate; the issue needs well over 50k msg/s for 1M households resolved, capped and published
in <= 60 s.

    python -c "from benchmarks.marketing_publish import run; run()"
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import cpu_seconds
from marketing.downlink import encode_many, message_ids, topic
from marketing.mqtt_settings import MarketingMqttSettings
from marketing.publisher import Outgoing, publish_blocking
from stbcommon.localservers import Mosquitto

TITLE = "Tonight: the final"
BODY = "The final on Sport One at 20:00. Press OK to watch."
ACTION = {"type": "tune", "channel_id": 101, "programme_id": "ep-2026-12-18-final", "start": 1_797_620_400_000}


def build(messages: int, expires_ms: int) -> list[Outgoing]:
    households = np.arange(1, messages + 1, dtype=np.uint64)
    ids = message_ids("euro-final", households, np.ones(messages, dtype=np.int64))
    payloads = encode_many(ids.tolist(), "euro-final", "a", TITLE, BODY, ACTION, expires_ms)
    expiry_s = max(1, (expires_ms - time.time_ns() // 1_000_000) // 1000)
    return [Outgoing(topic("north", f"stb-{h}"), p, expiry_s) for h, p in zip(households.tolist(), payloads,
                                                                                    strict=True)]


def run(messages: int = 1_000_000) -> dict[str, Any]:
    started = time.monotonic()
    outgoing = build(messages, time.time_ns() // 1_000_000 + 6 * 3_600_000)
    build_s = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="mkt-publish-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            assert broker.proc is not None
            me, broker_cpu = cpu_seconds(os.getpid()), cpu_seconds(broker.proc.pid)
            result = publish_blocking(MarketingMqttSettings(url=broker.url), outgoing)
            me, broker_cpu = cpu_seconds(os.getpid()) - me, cpu_seconds(broker.proc.pid) - broker_cpu
        finally:
            broker.kill()
    figures = {
        "messages": messages, "build_s": round(build_s, 2), "publish_s": round(result.seconds, 2),
        "msg_per_s": round(result.messages_per_s), "no_subscribers": result.no_subscribers,
        "accepted": result.accepted, "refused": result.refused, "connections": result.connections,
        "publisher_cpu_s": round(me, 2), "broker_cpu_s": round(broker_cpu, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "payload_bytes": len(outgoing[0].payload) if outgoing else 0,
    }
    print(f"built {messages:,} messages in {build_s:.2f} s; published in {result.seconds:.2f} s = "
          f"{result.messages_per_s:,.0f} msg/s (publisher CPU {me:.1f} s, broker CPU {broker_cpu:.1f} s)",
          flush=True)
    return figures


if __name__ == "__main__":
    print(run())
