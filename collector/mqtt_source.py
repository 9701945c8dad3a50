"""The collector's MQTT source: paho-mqtt 2 on the asyncio loop, with manual acknowledgement.

aiomqtt has no manual ack, so this drives paho the way aiomqtt does (socket callbacks
registered with the event loop, a periodic `loop_misc`) and acknowledges a message only
when the pipeline says its rows are committed. MQTT 5 with clean start off and a session
expiry: the broker keeps our shared-subscription queue, and the in-flight messages we
never acknowledged, while we are away, and redelivers them when we come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector import metrics
from collector.settings import MqttSettings
from stbcommon.backoff import Backoff
from stbcommon.settings import redact_url

log = logging.getLogger(__name__)

_READS_PER_WAKEUP = 512  # packets read per readable event before yielding to the loop


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    dup: bool
    received_ms: int
    session: int  # connection generation; acks for an older connection are skipped


class MqttSource:
    """Receives QoS 1 messages of a shared subscription; `ack` after commit, in order."""

    def __init__(self, settings: MqttSettings, *, worker: int = 0) -> None:
        self._settings = settings
        self._client_id = settings.client_id_for(worker)
        self._url = urlsplit(settings.url)
        self._buffer: deque[Message] = deque()
        self._buffered_bytes = 0
        self._unacked = 0
        self._wakeup = asyncio.Event()
        self._session = 0
        self._connected = False
        self._receiving = True
        self._paused = False
        self._closing = False
        self._sock_fd = -1
        self._received_count = 0
        self._connack: asyncio.Future[Any] | None = None
        self._suback: asyncio.Future[None] | None = None
        self._lost = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._client = self._make_client()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> MqttSource:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self._connect_until_up()
        self._spawn(self._keep_connected(), "mqtt-reconnect")
        self._spawn(self._misc_loop(), "mqtt-misc")
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
        self._receiving = False
        self._wakeup.set()

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        await self._flush_writes(timeout=5.0)
        if self._connected:
            self._client.disconnect()  # reason 0: the session (and its queue) is kept
            await self._flush_writes(timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._drop_socket_callbacks()
        self._set_connected(False)

    # -- receiving and acknowledging -------------------------------------------------------

    async def get_batch(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to `max_messages` in receive order; waits up to `timeout` for the first one."""
        if not self._buffer and timeout > 0:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
        count = min(max_messages, len(self._buffer))
        batch = [self._buffer.popleft() for _ in range(count)]
        self._buffered_bytes -= sum(len(m.payload) for m in batch)
        if self._paused and self._buffered_bytes <= self._settings.max_buffered_bytes // 2:
            self._resume_reading()
        return batch

    def ack(self, messages: Sequence[Message]) -> None:
        """PUBACK each message, in the order given; skip those from a closed connection."""
        acked = stale = 0
        for msg in messages:
            if msg.session == self._session and self._connected:
                self._client.ack(msg.mid, 1)
                acked += 1
            else:
                stale += 1
        self._unacked -= len(messages)
        metrics.ACKS.inc(acked)
        if stale:
            metrics.STALE_ACKS.inc(stale)
        metrics.BUFFERED_MESSAGES.set(self._unacked)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._received_count += 1
        if not self._receiving:
            return  # shutting down: left un-acked for the broker to redeliver
        payload = bytes(msg.payload)  # already bytes: the same object, no copy
        self._buffer.append(Message(msg.topic, payload, msg.mid, bool(msg.dup),
                                    time.time_ns() // 1_000_000, self._session))
        self._buffered_bytes += len(payload)
        self._unacked += 1
        self._wakeup.set()
        if self._buffered_bytes > self._settings.max_buffered_bytes and not self._paused:
            self._pause_reading()

    # -- paho wiring -------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True, reconnect_on_failure=False)
        if self._url.username:
            client.username_pw_set(unquote(self._url.username), unquote(self._url.password or ""))
        if self._url.scheme == "mqtts":
            client.tls_set(ca_certs=self._settings.ca_file or None, certfile=self._settings.cert_file or None,
                           keyfile=self._settings.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(self._settings.tls_insecure)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    def _on_socket_open(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # Called from the executor thread that runs the blocking connect().
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._add_reader, sock.fileno())

    def _add_reader(self, fd: int) -> None:
        assert self._loop is not None
        sock = self._client.socket()
        if sock is None or sock.fileno() != fd:
            return  # closed before the loop got here
        self._sock_fd = fd
        if not self._paused:
            self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        # One readable event drains many packets: loop_read reads one PUBLISH per call.
        for _ in range(_READS_PER_WAKEUP):
            before = self._received_count
            rc = self._client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS or self._received_count == before or self._paused:
                break

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        fd = sock.fileno()
        if fd > -1:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._sock_fd = -1

    def _on_socket_register_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # On the loop thread, register now: a deferred add_writer could land after paho
        # has already unregistered, leaving a writer that spins on an empty queue.
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            self._add_writer(sock.fileno())
        else:  # from the executor thread running connect()
            self._loop.call_soon_threadsafe(self._add_writer, sock.fileno())

    def _add_writer(self, fd: int) -> None:
        assert self._loop is not None
        sock = self._client.socket()
        if sock is not None and sock.fileno() == fd and self._client.want_write():
            self._loop.add_writer(fd, self._client.loop_write)

    def _on_socket_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock.fileno())

    def _drop_socket_callbacks(self) -> None:
        if self._loop is not None and self._sock_fd > -1:
            self._loop.remove_reader(self._sock_fd)
            self._loop.remove_writer(self._sock_fd)

    def _pause_reading(self) -> None:
        self._paused = True
        metrics.READING_PAUSED.set(1)
        if self._loop is not None and self._sock_fd > -1:
            self._loop.remove_reader(self._sock_fd)

    def _resume_reading(self) -> None:
        self._paused = False
        metrics.READING_PAUSED.set(0)
        if self._loop is not None and self._sock_fd > -1:
            self._loop.add_reader(self._sock_fd, self._on_readable)

    # -- connection management -----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            if self._connack is not None and not self._connack.done():
                self._connack.set_exception(ConnectionError(f"broker refused connection: {reason}"))
            return
        # Here, not after awaiting the CONNACK: the broker sends queued messages right
        # behind it, in the same read, and they belong to the new generation.
        self._session += 1
        self._connected = True
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(flags)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any,
                      _properties: Any) -> None:
        if self._suback is None or self._suback.done():
            return
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._suback.set_exception(ConnectionError(f"subscription refused: {failed[0]}"))
        else:
            self._suback.set_result(None)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        was_connected = self._connected
        self._set_connected(False)
        for pending in (self._connack, self._suback):
            if pending is not None and not pending.done():
                pending.set_exception(ConnectionError(f"disconnected during connect: {reason}"))
        if was_connected and not self._closing:
            log.warning("mqtt connection lost", extra={"reason": str(reason), "client_id": self._client_id})
            self._lost.set()

    def _set_connected(self, value: bool) -> None:
        self._connected = value
        metrics.MQTT_CONNECTED.set(1 if value else 0)

    async def _connect_once(self) -> None:
        assert self._loop is not None
        self._connack = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._settings.session_expiry_s
        props.ReceiveMaximum = self._settings.receive_maximum
        host, port = self._url.hostname or "localhost", self._url.port or (
            8883 if self._url.scheme == "mqtts" else 1883)
        await self._loop.run_in_executor(None, lambda: self._client.connect(
            host, port, keepalive=self._settings.keepalive_s, clean_start=False, properties=props))
        timeout = max(10.0, self._settings.keepalive_s)
        flags = await asyncio.wait_for(self._connack, timeout=timeout)
        self._lost.clear()
        # Connected only once the broker has the subscription: until its SUBACK, new
        # publishes may find no subscriber (mosquitto does not persist shared ones).
        self._suback = self._loop.create_future()
        self._client.subscribe(self.subscription_filter, options=SubscribeOptions(qos=1))
        await asyncio.wait_for(self._suback, timeout=timeout)
        self._set_connected(True)
        metrics.MQTT_CONNECTS.inc()
        log.info("mqtt connected", extra={
            "broker": redact_url(self._settings.url), "client_id": self._client_id,
            "session_present": bool(getattr(flags, "session_present", False)), "generation": self._session})

    async def _connect_until_up(self) -> None:
        backoff = Backoff(self._settings.reconnect_min_s, self._settings.reconnect_max_s)
        while True:
            try:
                await self._connect_once()
                return
            except (OSError, ConnectionError, TimeoutError) as exc:
                self._drop_socket_callbacks()
                with contextlib.suppress(Exception):
                    self._client.disconnect()
                delay = backoff.next_delay()
                log.warning("mqtt connect failed, retrying", extra={
                    "broker": redact_url(self._settings.url), "error": str(exc),
                    "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)

    async def _keep_connected(self) -> None:
        while True:
            await self._lost.wait()
            self._drop_socket_callbacks()
            await self._connect_until_up()

    async def _misc_loop(self) -> None:
        """Keepalive pings and timeouts; also notices a dead connection paho has not reported."""
        while True:
            await asyncio.sleep(1.0)
            if self._connected and self._client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                self._set_connected(False)
                self._lost.set()

    async def _flush_writes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # paho exposes its write queue only as want_write(): poll it briefly.
        while self._connected and self._client.want_write() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
