"""The agent: accept events, spool them, publish them as wire-format v1 batches.

    async with Agent(settings) as agent:
        agent.record(make_event("power", now_ms, 1))     # non-blocking; False if rejected
        ...
        await agent.drain(timeout=30)                     # optional: wait until delivered

Asyncio-native, so one process can run thousands (the fleet simulator does). Each agent
owns one task: a connection loop that publishes from the spool, several batches in
flight, and removes records from the spool only when their PUBACK has arrived, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from agent.settings import AgentSettings
from agent.spool import Position, Record, Spool
from proto.telemetry import InvalidMessage, check_event, encode_batch, topic_for
from stbcommon.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass
class AgentStats:
    accepted: int = 0
    rejected: int = 0
    batches_published: int = 0
    events_published: int = 0
    reconnects: int = 0

    def as_dict(self, spool: Spool) -> dict[str, int]:
        return {**self.__dict__, "spool_bytes": spool.bytes_used, "dropped": spool.dropped_events}


class Agent:
    def __init__(self, settings: AgentSettings, *, clock_ms: Callable[[], int] | None = None) -> None:
        self.settings = settings
        self.stats = AgentStats()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._spool = Spool(settings.spool.dir, max_bytes=settings.spool.max_bytes, fsync=settings.spool.fsync)
        self._topic = topic_for(settings.device.region, settings.device.id)
        self._status_topic = self._topic.rsplit("/", 1)[0] + "/status"
        self._wake = asyncio.Event()
        self._delivered = asyncio.Event()
        self._pending = 0 if self._spool.empty else settings.batch.max_events  # backlog: send at once
        self._oldest_pending = time.monotonic()
        self._flush = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    # -- firmware-facing API ----------------------------------------------------------------

    def record(self, event: list[Any]) -> bool:
        """Accept one event `[kind, ts_ms, field...]`; never blocks on the network.

        Returns False (and counts it) for an event that breaks the wire contract."""
        try:
            check_event(event)
        except InvalidMessage as exc:
            self.stats.rejected += 1
            if self.stats.rejected in (1, 10, 100) or self.stats.rejected % 1000 == 0:
                log.warning("event rejected", extra={"reason": exc.reason.value, "detail": exc.detail,
                                                     "rejected": self.stats.rejected})
            return False
        self._spool.append(event)
        self.stats.accepted += 1
        if self._pending == 0:
            self._oldest_pending = time.monotonic()
            self._wake.set()  # re-arms the publisher's age timer
        self._pending += 1
        if self._pending >= self.settings.batch.max_events:
            self._wake.set()
        return True

    @property
    def spool_empty(self) -> bool:
        return self._spool.empty

    @property
    def spool(self) -> Spool:
        return self._spool

    async def drain(self, timeout: float | None = None) -> bool:
        """Publish everything now and wait until the spool is empty; False on timeout."""
        self._flush = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                while not self._spool.empty:
                    self._delivered.clear()
                    await self._delivered.wait()
        except TimeoutError:
            return False
        return True

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        self._task = asyncio.create_task(self._run(), name=f"agent-{self.settings.device.id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, grace_s: float | None = None) -> None:
        """Publish what can be published within the grace period; the rest stays spooled."""
        if self._task is None:
            return
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        if grace > 0 and self.connected:
            await self.drain(grace)
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._spool.close()

    # -- publishing -------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self.settings.mqtt.reconnect_min_s, self.settings.mqtt.reconnect_max_s)
        while not self._closing:
            try:
                async with self._client() as client:
                    self.connected = True
                    backoff.reset()
                    await client.publish(self._status_topic, b"online", qos=1, retain=True)
                    await self._publish_loop(client)
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                if self.connected:
                    log.info("agent disconnected", extra={"device_id": self.settings.device.id, "error": str(exc)})
                self.connected = False
                self.stats.reconnects += 1
                await asyncio.sleep(backoff.next_delay())
            finally:
                self.connected = False

    def _client(self) -> aiomqtt.Client:
        m, dev = self.settings.mqtt, self.settings.device
        url = urlsplit(m.url)
        tls_context = None
        if url.scheme == "mqtts":
            tls_context = ssl.create_default_context(cafile=m.ca_file or None)
            if m.cert_file:
                tls_context.load_cert_chain(m.cert_file, m.key_file or None)
            if m.tls_insecure:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            url.hostname or "localhost", url.port or (8883 if url.scheme == "mqtts" else 1883),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            identifier=dev.id, protocol=aiomqtt.ProtocolVersion.V5, keepalive=m.keepalive_s,
            will=aiomqtt.Will(self._status_topic, b"offline", qos=1, retain=True),
            max_inflight_messages=m.inflight, tls_context=tls_context, timeout=m.publish_timeout_s)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        """Publish from the spool head (everything unacknowledged goes again after a
        reconnect: the collector deduplicates), keep `inflight` batches outstanding."""
        cursor = self._spool.head
        backlog_end = self._spool.tail  # everything spooled before this connection goes out at once
        inflight: deque[tuple[Position, asyncio.Task[None], int]] = deque()
        try:
            while True:
                await self._complete(inflight, block=len(inflight) >= self.settings.mqtt.inflight)
                behind = (cursor.segment, cursor.offset) < (backlog_end.segment, backlog_end.offset)
                if cursor == self._spool.tail or not (behind or self._due()):
                    if not inflight and self._flush and self._spool.empty:
                        self._flush = False
                    await self._wait_for_work(inflight)
                    continue
                if (cursor.segment, cursor.offset) < (self._spool.head.segment, self._spool.head.offset):
                    cursor = self._spool.head  # the oldest records were dropped (spool full)
                records = self._next_batch(cursor)
                if not records:
                    continue
                dev = self.settings.device
                payload = encode_batch(device_id=dev.id, household_id=dev.household_id, firmware=dev.firmware,
                                       seq0=records[0].seq, sent_ms=self._clock_ms(), events=[r.event for r in records])
                task = asyncio.create_task(client.publish(self._topic, payload, qos=1,
                                                          timeout=self.settings.mqtt.publish_timeout_s))
                cursor = records[-1].end
                inflight.append((cursor, task, len(records)))
                self._pending = max(0, self._pending - len(records))
                if self._pending:
                    self._oldest_pending = time.monotonic()
        finally:
            for _, task, _ in inflight:
                task.cancel()

    def _due(self) -> bool:
        b = self.settings.batch
        return (self._flush or self._pending >= b.max_events
                or time.monotonic() - self._oldest_pending >= b.max_age_s
                or self._pending * 48 >= b.max_bytes)

    def _next_batch(self, cursor: Position) -> list[Record]:
        records = self._spool.read(cursor, self.settings.batch.max_events, self.settings.batch.max_bytes)
        for i in range(1, len(records)):  # a batch carries consecutive seqs only
            if records[i].seq != records[i - 1].seq + 1:
                return records[:i]
        return records

    async def _wait_for_work(self, inflight: deque[tuple[Position, asyncio.Task[None], int]]) -> None:
        self._wake.clear()
        timeout = max(0.0, self.settings.batch.max_age_s - (time.monotonic() - self._oldest_pending))
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if inflight:
            waiters.append(inflight[0][1])  # type: ignore[arg-type]
        await asyncio.wait(waiters, timeout=timeout if self._pending else None, return_when=asyncio.FIRST_COMPLETED)
        waiters[0].cancel()

    async def _complete(self, inflight: deque[tuple[Position, asyncio.Task[None], int]], *, block: bool) -> None:
        """Acknowledge finished publishes in order; a failed one ends the connection."""
        if block and inflight:
            await asyncio.wait({inflight[0][1]})
        while inflight and inflight[0][1].done():
            end, task, count = inflight.popleft()
            task.result()  # raises MqttError / TimeoutError → reconnect, republish from the head
            self._spool.ack(end)
            self.stats.batches_published += 1
            self.stats.events_published += count
            self._delivered.set()
