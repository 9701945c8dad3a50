"""The collector's MQTT source on an asyncio Protocol with the `mqtt5` codec.

It replaced a paho-mqtt source with the same interface: paho's pure-Python packet handling
was about 40 % of the collector's CPU. Works on uvloop and on the default loop.

Guarantees, as before: a message is acknowledged only when the pipeline calls `ack` (after
its rows are committed), in the order given, and only on the connection it came from;
MQTT 5 persistent session (clean start off, Session Expiry), so the broker keeps our queue
and our un-acked messages while we are away and redelivers them; shared (`$share/<group>/…`)
or exclusive subscription, connected only once the SUBACK grants it; Receive Maximum;
keep-alive with dead-peer detection; reconnect with capped jittered backoff (each
connection is a new generation, `Message.session`); TLS and username/password from the
URL; backpressure by not reading the socket; DISCONNECT with reason 0 on close.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import mqtt5

from collector import metrics
from collector.mqtt_protocol import BrokerRefused, Message, MqttProtocol
from collector.settings import MqttSettings
from stbcommon.backoff import Backoff
from stbcommon.settings import redact_url

__all__ = ["BrokerRefused", "Message", "MqttSource"]

log = logging.getLogger(__name__)

_TICKS_PER_KEEPALIVE = 4  # dead-peer detection lands between 1.5 and 1.75 keep-alive periods
_CLOSE_TIMEOUT_S = 5.0  # aclose(): for the broker to read our PUBACKs and DISCONNECT and close


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MqttSource:
    """Receives QoS 1 messages of a (shared) subscription; `ack` after commit, in order."""

    def __init__(self, settings: MqttSettings, *, worker: int = 0) -> None:
        self._settings = settings
        self._client_id = settings.client_id_for(worker)
        url = urlsplit(settings.url)
        self._tls = url.scheme == "mqtts"
        self._host = url.hostname or "localhost"
        self._port = url.port or (8883 if self._tls else 1883)
        self._ssl = self._ssl_context() if self._tls else None
        self._connect_packet = mqtt5.ConnectPacket(
            self._client_id,
            username=unquote(url.username) if url.username is not None else None,
            password=unquote(url.password).encode() if url.password is not None else None,
            clean_start=False,  # resume the persistent session: queue and un-acked messages
            keep_alive=settings.keepalive_s,
            session_expiry_interval=settings.session_expiry_s,
            receive_max=settings.receive_maximum,
            topic_alias_max=0,  # every PUBLISH carries its topic: no alias table to keep
        ).write()
        self._subscribe_packet = mqtt5.SubscribePacket(1, [mqtt5.TopicFilter(
            self.subscription_filter, max_qos=mqtt5.QoS.AT_LEAST_ONCE, retain_as_published=False)]).write()
        self._max_buffered = settings.max_buffered_bytes
        # Inbox (read by MqttProtocol): messages not yet handed out are buffer[_head:].
        self.buffer: list[Message] = []
        self.receiving = True
        self._head = 0
        self._buffered_bytes = 0
        self._unacked = 0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        # Connection.
        self._proto: MqttProtocol | None = None
        self._generation = 0
        self._connected = False
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> MqttSource:
        """Returns once subscribed. Messages are taken from the CONNACK on: `get_batch` may be
        called meanwhile (the collector's pipeline runs while this waits for the SUBACK)."""
        self._spawn(self._keepalive(), "mqtt-keepalive")  # first: it guards the wait for the SUBACK
        try:
            await self._connect_until_up()
        except BaseException:  # cancelled (it retries everything else): no task may outlive us
            await self.aclose()
            raise
        self._spawn(self._keep_connected(), "mqtt-reconnect")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def subscription_filter(self) -> str:
        s = self._settings
        return f"$share/{s.group}/{s.topic}" if s.subscription == "shared" else s.topic

    @property
    def connected(self) -> bool:
        return self._connected

    async def stop_receiving(self) -> None:
        """Shutdown, step 1: hand out no new messages (those already buffered remain).
        The socket is still read so pings and PUBACK writes keep the connection healthy;
        messages arriving now stay unacknowledged, and the broker redelivers them later."""
        self.receiving = False
        if self._waiter is not None:
            _wake(self._waiter)

    async def aclose(self) -> None:
        """Stop reconnecting, then DISCONNECT (reason 0: the session is kept) behind the
        PUBACKs already written, and wait for the transport to flush and close."""
        if self._closing:
            return
        self._closing = True
        self.receiving = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        proto = self._proto
        if proto is not None:
            proto.disconnect()
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await proto.wait_closed()
            except TimeoutError:
                log.warning("mqtt broker did not close after DISCONNECT; closing",
                            extra={"client_id": self._client_id})
                proto.abort("close timed out")
                await proto.wait_closed()
        if self._waiter is not None:
            _wake(self._waiter)
        self._set_connected(False)

    # -- receiving and acknowledging -------------------------------------------------------

    async def get_batch(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to `max_messages` in receive order; waits up to `timeout` for the first one."""
        if self._head >= len(self.buffer) and timeout > 0 and self.receiving:
            await self._wait(timeout)
        buf, head = self.buffer, self._head
        available = len(buf) - head
        if available <= 0 or max_messages <= 0:
            return []
        if max_messages >= available:
            if head == 0:
                batch = buf
                self.buffer = []  # hand the whole list over: no copy (the protocol re-reads it)
            else:
                batch = buf[head:]
                buf.clear()
            self._head = 0
        else:
            end = head + max_messages
            batch = buf[head:end]
            if end >= 4096 and end * 2 >= len(buf):
                del buf[:end]  # compact now and then, not on every call
                end = 0
            self._head = end
        self._buffered_bytes -= sum([len(m.payload) for m in batch])
        if self._paused and self._buffered_bytes <= self._max_buffered // 2:
            self._set_paused(False)
        return batch

    def ack(self, messages: Sequence[Message]) -> None:
        """PUBACK each message, in the order given, in one write; skip those from a closed
        connection (the broker redelivers them on the new one)."""
        proto = self._proto
        generation = proto.generation if proto is not None and proto.can_ack else -1
        mids = [m.mid for m in messages if m.session == generation]
        stale = len(messages) - len(mids)
        if 0 in mids:  # QoS 0: nothing to acknowledge
            mids = [mid for mid in mids if mid]
        if mids:
            assert proto is not None
            proto.ack(mids)
            metrics.ACKS.inc(len(mids))
        if stale:
            metrics.STALE_ACKS.inc(stale)
        self._unacked -= len(messages)
        metrics.BUFFERED_MESSAGES.set(self._unacked)

    def received(self, count: int, nbytes: int) -> None:
        """From MqttProtocol, after it appended `count` messages to `buffer`."""
        self._unacked += count
        self._buffered_bytes += nbytes
        metrics.BUFFERED_MESSAGES.set(self._unacked)
        if self._waiter is not None:
            _wake(self._waiter)
        if self._buffered_bytes > self._max_buffered and not self._paused:
            self._set_paused(True)

    async def _wait(self, timeout: float) -> None:
        # A bare future and a timer: cheaper than wait_for (which wraps a task each call).
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _set_paused(self, paused: bool) -> None:
        """Backpressure: past max_buffered_bytes stop reading the socket (the broker holds
        the rest, within Receive Maximum); read again below half of it."""
        self._paused = paused
        metrics.READING_PAUSED.set(1 if paused else 0)
        if self._proto is not None:
            if paused:
                self._proto.pause()
            else:
                self._proto.resume()

    # -- connection management -------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        s = self._settings
        context = ssl.create_default_context(cafile=s.ca_file or None)
        context.check_hostname = not s.tls_insecure  # like paho's tls_insecure: the chain is still checked
        if s.cert_file:  # our identity, for brokers that authenticate clients by certificate
            context.load_cert_chain(s.cert_file, s.key_file or None)
        return context

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        self._generation += 1
        proto = MqttProtocol(self, self._generation, connect=self._connect_packet,
                             subscribe=self._subscribe_packet, keepalive_s=self._settings.keepalive_s)
        self._proto = proto  # now: acks are valid from the CONNACK on (messages follow it at once)
        if self._paused:
            self._set_paused(False)  # a new socket; received() pauses it again if still full
        try:
            async with asyncio.timeout(max(10.0, self._settings.keepalive_s)):
                await loop.create_connection(lambda: proto, self._host, self._port, ssl=self._ssl,
                                             server_hostname=self._host if self._ssl else None)
                await proto.connacked
        except BaseException:
            proto.abort("connect failed")
            raise
        try:
            # No deadline for the SUBACK: mosquitto sends it behind the whole backlog it pushes
            # at once (measured: 1M queued messages, 6-8 s), which the pipeline is already
            # taking; a dead broker is found by keep-alive (the _keepalive task is running).
            connack = await proto.ready  # CONNACK and SUBACK both succeeded
        except asyncio.CancelledError:
            raise  # shutting down: aclose() sends DISCONNECT behind the PUBACKs already written
        except BaseException:
            proto.abort("subscribe failed")
            raise
        self._set_connected(True)
        metrics.MQTT_CONNECTS.inc()
        log.info("mqtt connected", extra={
            "broker": redact_url(self._settings.url), "client_id": self._client_id,
            "session_present": connack.session_present, "generation": proto.generation})

    async def _connect_until_up(self) -> None:
        backoff = Backoff(self._settings.reconnect_min_s, self._settings.reconnect_max_s)
        while True:
            try:
                await self._connect_once()
                return
            except (OSError, ConnectionError, TimeoutError) as exc:  # ConnectionError ⊂ OSError; explicit
                delay = backoff.next_delay()
                log.warning("mqtt connect failed, retrying", extra={
                    "broker": redact_url(self._settings.url), "error": str(exc) or type(exc).__name__,
                    "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)

    async def _keep_connected(self) -> None:
        while True:
            proto = self._proto
            assert proto is not None
            await proto.wait_closed()
            if self._closing:
                return
            self._set_connected(False)
            log.warning("mqtt connection lost", extra={
                "reason": proto.close_reason, "client_id": self._client_id, "generation": proto.generation})
            try:
                await self._connect_until_up()
            except Exception:  # a bug, or a TLS file gone bad: never let this task die silently
                log.exception("mqtt reconnect failed unexpectedly; retrying")
                await asyncio.sleep(self._settings.reconnect_max_s)

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            proto = self._proto
            # The broker's Server Keep Alive wins; 0 (no keep-alive) still must not spin here.
            period = (proto.keepalive_s if proto is not None else 0) or self._settings.keepalive_s or 60
            await asyncio.sleep(period / _TICKS_PER_KEEPALIVE)
            if self._proto is not None:
                self._proto.tick(loop.time())

    def _set_connected(self, value: bool) -> None:
        self._connected = value
        metrics.MQTT_CONNECTED.set(1 if value else 0)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
