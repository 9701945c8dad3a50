"""Prometheus export for the standalone agent, imported only when `metrics.port` is set.

A custom collector reads the agent's plain counters at scrape time: nothing is updated
per event, and prometheus_client (a few MB of RSS) is never imported on a box that
does not serve /metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

from agent.core import Agent
from agent.ingest_socket import IngestSocket


class AgentCollector:
    def __init__(self, agent: Agent, ingest: IngestSocket | None = None) -> None:
        self.agent = agent
        self.ingest = ingest

    def collect(self) -> Iterator[Any]:
        s, spool = self.agent.stats, self.agent.spool
        counters = {
            "events_accepted": (s.accepted, "events taken into the spool"),
            "events_rejected": (s.rejected, "events refused for breaking the wire contract"),
            "events_refused": (s.refused, "valid events not taken (closing, disk error, queue full)"),
            "batches_published": (s.batches_published, "batches acknowledged by the broker"),
            "events_published": (s.events_published, "events in acknowledged batches"),
            "events_dropped": (spool.dropped_events, "unpublished events dropped because the spool was full"),
            "reconnects": (s.reconnects, "broker connections lost or attempts failed"),
            "io_errors": (s.io_errors, "spool disk errors (full disk, I/O error), counted and survived"),
            "publish_refused": (s.publish_refused, "publishes the broker refused (e.g. not authorized); kept spooled"),
        }
        inbox = self.agent.inbox
        if inbox is not None:
            counters["messages_delivered"] = (inbox.delivered, "messages for the box handed to the UI")
            counters["messages_dropped"] = (inbox.duplicates + inbox.expired + inbox.invalid,
                                            "messages for the box dropped: duplicate, expired or invalid")
        if self.ingest is not None:
            counters["datagrams_received"] = (self.ingest.received, "local datagrams accepted as events")
            counters["datagrams_malformed"] = (self.ingest.malformed_count, "local datagrams dropped as malformed")
        for name, (value, doc) in counters.items():
            yield CounterMetricFamily(f"stb_agent_{name}", doc, value=value)
        gauges = {
            "spool_bytes": (spool.bytes_used, "unacknowledged bytes in the spool"),
            "spool_events": (spool.pending_events, "unacknowledged events in the spool"),
            "spool_disk_bytes": (spool.disk_bytes, "bytes of spool segment files"),
            "connected": (int(self.agent.connected), "1 while connected to the broker"),
        }
        for name, (value, doc) in gauges.items():
            yield GaugeMetricFamily(f"stb_agent_{name}", doc, value=value)


def register(agent: Agent, ingest: IngestSocket | None = None) -> None:
    REGISTRY.register(AgentCollector(agent, ingest))
