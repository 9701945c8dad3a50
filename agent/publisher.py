"""One agent's MQTT side: connect, publish sealed spool ranges, reconnect with backoff.

MQTT 5 over aiomqtt, QoS 1, clean start (the spool, not the broker session, is the
durable state), client id = device id. A last will marks the box `offline` (retained) on
`stb/v1/{region}/{device}/status`; `online` is published on every connect and `offline`
on a clean close. Up to `mqtt.inflight` batches are published at once, but the spool's head
moves only in publish order, as PUBACKs arrive, so a reconnect resends exactly what was not
acknowledged, in order (the collector deduplicates by (device, seq)).

A resend is byte-identical to the first send. A batch is cut from the spool and stamped
(household, firmware, `sent`) the first time it is published, and the cut is journalled
(agent/journal.py) before the PUBLISH goes out; a resend from the head, after a reconnect
or a restart, reuses the journalled cut exactly, even if the household, the firmware or
the batch limits changed meanwhile.

`sent` is stamped when a batch is first published, never when it was sealed: a batch
replayed after an outage carries its real send time, which the collector's clock
correction needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.batcher import consecutive, next_batch
from agent.journal import Cut
from agent.mqtt_client import CheckedClient, PublishRefused
from agent.settings import AgentSettings
from agent.spool import Position, Record, Spool
from agent.stats import AgentStats
from proto.telemetry import MAX_PAYLOAD_BYTES, encode_batch, topic_for
from stbcommon.backoff import Backoff

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)
_EXPECTED = (aiomqtt.MqttError, OSError, TimeoutError)  # a broker or network problem, not a bug


class _InFlight(NamedTuple):
    end: Position
    seq_end: int     # the seq after its last event
    events: int
    task: asyncio.Task[None]


class Publisher:
    """Owns the connection task; `release(position)` makes spooled records up to it publishable."""

    def __init__(self, settings: AgentSettings, spool: Spool, stats: AgentStats, *,
                 clock_ms: Callable[[], int], on_delivered: Callable[[], None],
                 on_downlink: Callable[[bytes], None] | None = None) -> None:
        self._settings = settings
        self._spool = spool
        self._stats = stats
        self._clock_ms = clock_ms
        self._on_delivered = on_delivered
        self._device = settings.device.id
        self.topic = topic_for(settings.device.region, settings.device.id)
        self.status_topic = self.topic.rsplit("/", 1)[0] + "/status"
        self.messages_topic = self.topic.rsplit("/", 1)[0] + "/messages"
        self._on_downlink = on_downlink  # None: no subscription, a clean session
        self._released = spool.head
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._tls: ssl.SSLContext | None = None
        self.connected = False

    # -- control ---------------------------------------------------------------------------

    @property
    def released(self) -> Position:
        return self._released

    def release(self, upto: Position) -> None:
        if upto > self._released:
            self._released = upto
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"agent-{self._device}-mqtt")

    async def aclose(self) -> None:
        """Say `offline` if connected (a clean disconnect does not fire the will), then stop."""
        if self._task is None:
            return
        client = self._client
        if client is not None and self.connected:
            try:
                await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=2)
            except _EXPECTED:
                pass  # the will says it instead, once the broker notices
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        # aiomqtt cancels its keepalive task through call_soon_threadsafe on disconnect: let it
        # run before a caller closes the loop (AgentThread does), or the task leaks.
        for _ in range(3):
            await asyncio.sleep(0)

    # -- connection loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        m = self._settings.mqtt
        backoff = Backoff(m.reconnect_min_s, m.reconnect_max_s)
        down_since: float | None = None
        quiet = False  # one warning per outage; further failed attempts log at debug
        while True:
            error: BaseException | None = None
            try:
                await self._connection(backoff, down_since)
            except* Exception as group:
                error = _first(group)
            was_connected, self.connected, self._client = self.connected, False, None
            self._stats.reconnects += 1
            if was_connected or down_since is None:
                down_since = time.monotonic()
                quiet = False
            delay = backoff.next_delay()
            fields = {"device_id": self._device, "error": f"{type(error).__name__}: {error}"[:300],
                      "retry_in_s": round(delay, 2)}
            if isinstance(error, PublishRefused):  # kept spooled; an operator must mend the ACL or identity
                self._stats.publish_refused += 1
                log.error("the broker refuses this box's events; they stay spooled", extra=fields)
            elif error is not None and not isinstance(error, _EXPECTED):
                log.error("publisher failed unexpectedly; reconnecting", extra=fields, exc_info=error)
            elif not quiet:
                log.warning("disconnected from broker" if was_connected else "broker unreachable", extra=fields)
                quiet = True
            else:
                log.debug("reconnect failed", extra=fields)
            await asyncio.sleep(delay)

    async def _connection(self, backoff: Backoff, down_since: float | None) -> None:
        """One connection's life; returns only by raising (disconnect, timeout, failure)."""
        client = self._make_client()
        await self._connect(client)
        try:
            self._client, self.connected = client, True
            backoff.reset()
            log.info("connected to broker", extra={
                "device_id": self._device, "pending_events": self._spool.pending_events,
                **({"down_s": round(time.monotonic() - down_since, 1)} if down_since is not None else {})})
            await client.publish(self.status_topic, b"online", qos=1, retain=True)
            if self._on_downlink is not None:  # again on every connect: cheap, and survives a lost session
                await client.subscribe(self.messages_topic, qos=1)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(client), name=f"agent-{self._device}-watch")
                tg.create_task(self._pump(client, tg), name=f"agent-{self._device}-pump")
        finally:
            await _disconnect(client)

    @staticmethod
    async def _connect(client: aiomqtt.Client) -> None:
        """Connect; if cancelled meanwhile, finish connecting and disconnect before giving in.

        aiomqtt connects in an executor thread that a cancellation does not stop: abandoned,
        it would leave an open socket and a task on a loop that may be closing."""
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(entering)
        except asyncio.CancelledError:
            try:
                await entering
            except Exception:
                pass  # not connected: nothing to undo
            else:
                await _disconnect(client)
            raise

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Hands downlink messages to the inbox. Also: aiomqtt does not fail pending publishes
        when the connection drops; its message iterator does raise, so this ends the
        connection at once instead of at a timeout."""
        async for message in client.messages:
            if self._on_downlink is not None and message.topic.value == self.messages_topic:
                payload = message.payload
                self._on_downlink(payload if isinstance(payload, bytes) else bytes(str(payload), "utf-8"))
        raise aiomqtt.MqttError("message iterator ended")

    async def _pump(self, client: CheckedClient, tg: asyncio.TaskGroup) -> None:
        """Publish from the spool head (all that is unacknowledged), keep the window full,
        acknowledge in order. A failed publish fails the task group: the connection ends."""
        spool, window = self._spool, self._settings.mqtt.inflight
        loop = asyncio.get_running_loop()
        cursor = spool.head
        inflight: deque[_InFlight] = deque()
        while True:
            if inflight and inflight[0].task.done():
                acked = 0
                while inflight and inflight[0].task.done():
                    done = inflight.popleft()
                    done.task.result()
                    spool.ack(done.end)
                    acked = done.seq_end
                    self._stats.batches_published += 1
                    self._stats.events_published += done.events
                # The head file is a hint: once per wake-up, not once per batch. Journal entries go
                # only once it is written: a restart resends from the head on disk, identically.
                if spool.save_head():
                    spool.journal.forget_before(acked)
                self._on_delivered()
            cursor = max(cursor, spool.head)  # the oldest records may have been dropped (spool full)
            if len(inflight) < window and cursor < self._released:
                batch = self._next_payload(cursor)
                if batch is not None:
                    records, payload = batch
                    task = tg.create_task(
                        client.publish_qos1(self.topic, payload, timeout=self._settings.mqtt.publish_timeout_s),
                        name=f"agent-{self._device}-publish-{records[0].seq}")
                    cursor = records[-1].end
                    inflight.append(_InFlight(cursor, records[-1].seq + 1, len(records), task))
                    continue
                cursor = self._released
            self._wake = loop.create_future()
            await asyncio.wait([self._wake, *([inflight[0].task] if inflight else [])],
                               return_when=asyncio.FIRST_COMPLETED)
            self._wake = None

    def _next_payload(self, cursor: Position) -> tuple[list[Record], bytes] | None:
        """The next batch from `cursor` and its payload: as journalled if it was published
        before (same records, same header: the same bytes), else cut and journalled now."""
        spool = self._spool
        records = next_batch(spool, cursor, self._released, self._settings.batch)
        if not records:
            return None
        if cursor == spool.head and spool.head_saved:
            spool.journal.forget_before(records[0].seq)  # e.g. acknowledged before a restart
        cut = spool.journal.get(records[0].seq)
        if cut is not None and cut.events != len(records):
            again = spool.read(cursor, self._released, cut.events, MAX_PAYLOAD_BYTES // 2)
            if len(again) == cut.events and consecutive(again):
                records = again
            else:
                cut = None  # not all there (dropped when the spool was full): cut afresh
        if cut is None:
            d = self._settings.device
            cut = Cut(records[0].seq, len(records), self._clock_ms(), d.household_id, d.firmware)
            spool.journal.add(cut)  # before the PUBLISH leaves
        payload = encode_batch(device_id=self._device, household_id=cut.household_id, firmware=cut.firmware,
                               seq0=cut.seq0, sent_ms=cut.sent_ms, events=[r.event for r in records])
        return records, payload

    def _make_client(self) -> CheckedClient:
        m = self._settings.mqtt
        url = urlsplit(m.url)
        if url.scheme == "mqtts" and self._tls is None:
            self._tls = self._tls_context()
        return CheckedClient(
            url.hostname or "localhost", url.port or (8883 if url.scheme == "mqtts" else 1883),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            # With downlink, a persistent session: the broker queues messages while the box is
            # off. Uplink needs none (the spool is the durable state).
            identifier=self._device, protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=self._on_downlink is None, properties=self._connect_properties(),
            keepalive=m.keepalive_s, will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            max_inflight_messages=m.inflight + 1, tls_context=self._tls, timeout=m.publish_timeout_s)

    def _connect_properties(self) -> Properties | None:
        if self._on_downlink is None:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._settings.messages.session_expiry_s
        return props

    def _tls_context(self) -> ssl.SSLContext:
        import ssl

        m = self._settings.mqtt
        context = ssl.create_default_context(cafile=m.ca_file or None)
        if m.cert_file:
            context.load_cert_chain(m.cert_file, m.key_file or None)
        if m.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


async def _disconnect(client: aiomqtt.Client) -> None:
    """Leave the connection; a failure here must not replace what ended it (or a cancellation)."""
    try:
        await client.__aexit__(None, None, None)
    except Exception as exc:
        log.debug("disconnect failed", extra={"error": str(exc)})


def _first(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: what ended the connection."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
