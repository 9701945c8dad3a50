"""One MQTT 5 publishing connection as an asyncio Protocol over the `mqtt5` codec (sans-I/O, Rust).

Only what a QoS 1 publisher needs: CONNECT (clean start, no session) -> CONNACK, PUBLISH out
(written by the owner, `publisher.py`), PUBACK in, PINGREQ, DISCONNECT. PUBACKs are the hot path:
the broker answers every message, so `data_received` reads the 4- and 5-byte forms itself
(`40 02 id id`, `40 03 id id rc`) and hands the rest to the codec. Each PUBACK goes to the
`on_ack(packet_id, reason_code)` callback; `wake` is set after every read, write resumption and
close so the owner can wait on one event. Modelled on collector/mqtt_protocol.py (the same
codec and uvloop caveats), which marketing does not import.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast
from urllib.parse import SplitResult, unquote, urlsplit

import mqtt5

from marketing.mqtt_settings import MarketingMqttSettings

_read = mqtt5.read
_PINGREQ = mqtt5.PingReqPacket().write()
_DISCONNECT = mqtt5.DisconnectPacket().write()
KEEPALIVE_S = 60  # asked for; the broker's Server Keep Alive replaces it


class LinkRefused(ConnectionError):
    """The broker answered CONNECT with a failure reason (bad credentials, not authorised...)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(f"broker refused the connection: {reason} (0x{code:02x})")
        self.reason = reason
        self.code = code


class Link(asyncio.Protocol):
    def __init__(self, connect: bytes, on_ack: Callable[[int, int], None]) -> None:
        loop = asyncio.get_running_loop()
        self._connect = connect
        self._on_ack = on_ack
        self.connack: asyncio.Future[mqtt5.ConnAckPacket] = loop.create_future()
        self.wake = asyncio.Event()
        self._gone = asyncio.Event()  # connection_lost ran: the socket is closed
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_reason = ""
        self.writable = True     # False while the transport's buffer is above its high-water mark
        self._buf = bytearray()  # an incomplete packet carried over to the next read
        self.keepalive_s = KEEPALIVE_S

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses, same methods
        self.transport.set_write_buffer_limits(high=4 << 20)
        self.transport.write(self._connect)

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(f"connection error: {exc}" if exc else "closed by the broker")
        self._gone.set()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self.wake.set()

    def eof_received(self) -> bool:
        return False

    def data_received(self, data: bytes) -> None:
        if self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        used = self._parse(data)
        if used < len(data) and not self.closed:
            self._buf += data[used:]
        self.wake.set()

    # -- decoding ----------------------------------------------------------------------------

    def _parse(self, data: bytes) -> int:
        """Handle every complete packet in `data`; returns how many bytes they took."""
        on_ack = self._on_ack
        offset, end = 0, len(data)
        while offset < end and not self.closed:
            if data[offset] == 0x40 and offset + 1 < end and data[offset + 1] in (2, 3):  # short PUBACKs
                size = 2 + data[offset + 1]
                if offset + size > end:
                    break
                on_ack((data[offset + 2] << 8) | data[offset + 3], data[offset + 4] if size == 5 else 0)
                offset += size
                continue
            try:
                packet, size = _read(memoryview(data)[offset:])
            except IndexError:  # the codec's "not enough bytes yet"
                break
            except ValueError as exc:
                self.abort(f"malformed packet from the broker: {exc}")
                break
            offset += size
            self._control(packet)
        return offset

    def _control(self, packet: object) -> None:
        if isinstance(packet, mqtt5.PubAckPacket):
            self._on_ack(packet.packet_id, packet.reason_code.value)
        elif isinstance(packet, mqtt5.ConnAckPacket):
            if packet.reason_code.value != 0:
                self._fail_connack(LinkRefused(packet.reason_code.name, packet.reason_code.value))
                self.abort(f"connection refused: {packet.reason_code.name}")
                return
            if packet.server_keep_alive is not None:
                self.keepalive_s = packet.server_keep_alive
            if not self.connack.done():
                self.connack.set_result(packet)
        elif isinstance(packet, mqtt5.DisconnectPacket):
            self.abort(f"broker disconnected: {packet.reason_code.name}"
                       + (f" ({packet.reason_str})" if packet.reason_str else ""))
        elif not isinstance(packet, mqtt5.PingRespPacket | mqtt5.AuthPacket):
            self.abort(f"unexpected packet from the broker: {type(packet).__name__}")

    # -- commands from the owner -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def ping(self) -> None:
        self.write(_PINGREQ)

    async def aclose(self, *, graceful: bool, timeout: float) -> None:
        """Graceful: DISCONNECT (reason 0) and close, once everything is acknowledged. Else abort.
        Either way, wait until the transport is gone (a TLS close takes a round trip; a socket
        left to a loop that stops first would leak)."""
        if self.transport is None:
            self._close("closed by us")
            return
        if graceful and not self.closed:
            self.close_reason = "closed by us"
            self.transport.write(_DISCONNECT)
            self.transport.close()
        else:
            self.abort("closed by us")
        try:
            async with asyncio.timeout(timeout):
                await self._gone.wait()
        except TimeoutError:
            self.transport.abort()

    def abort(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows
        self._close(reason)

    def _close(self, reason: str) -> None:
        self.closed = True
        self.close_reason = self.close_reason or reason
        self._fail_connack(ConnectionError(self.close_reason))
        self.wake.set()

    def _fail_connack(self, exc: Exception) -> None:
        if not self.connack.done():
            self.connack.set_exception(exc)
            self.connack.exception()  # retrieved: the owner may have stopped waiting


def tls_context(settings: MarketingMqttSettings) -> ssl.SSLContext:
    """Server certificate and name checked (the default context); our certificate if given."""
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file or None)
    return context


async def open_link(settings: MarketingMqttSettings, on_ack: Callable[[int, int], None]
                    ) -> tuple[Link, mqtt5.ConnAckPacket]:
    """Connect and wait for a successful CONNACK, within connect_timeout_s (TimeoutError,
    OSError, ssl.SSLError or LinkRefused otherwise)."""
    url: SplitResult = urlsplit(settings.url)
    tls = url.scheme == "mqtts"
    host = url.hostname or "localhost"
    connect = mqtt5.ConnectPacket(
        settings.client_id, clean_start=True, keep_alive=KEEPALIVE_S, session_expiry_interval=0,
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password).encode() if url.password else None).write()
    loop = asyncio.get_running_loop()
    link = Link(connect, on_ack)
    async with asyncio.timeout(settings.connect_timeout_s):
        try:
            await loop.create_connection(lambda: link, host, url.port or (8883 if tls else 1883),
                                         ssl=tls_context(settings) if tls else None,
                                         server_hostname=host if tls else None)
            connack = await link.connack
        except BaseException:
            link.abort("connect failed")
            raise
    return link, connack
