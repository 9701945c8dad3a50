"""One MQTT 5 connection as an asyncio Protocol over the `mqtt5` codec (sans-I/O, in Rust).

The hot path is `data_received`: runs of plain PUBLISH packets in the bytes read become
`Message`s appended straight to the owner's buffer list in one C call (`collector/_mqttscan.c`,
when built); every other packet (and every packet, without the extension) is decoded by
`mqtt5.read`. No per-message futures, callbacks or tasks. A packet split across reads waits in a
bytearray until its announced length is there. PUBACKs for a whole batch go out in one
`transport.write`.

The owner (`collector.mqtt_source.MqttSource`) opens a connection per generation, drives
`tick()` for keep-alive and decides when to reconnect; this class only speaks the protocol:
CONNECT → CONNACK → SUBSCRIBE → SUBACK (then `ready` resolves), PUBLISH in, PUBACK out,
PINGREQ, DISCONNECT.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import mqtt5

log = logging.getLogger(__name__)

_read = mqtt5.read
try:
    _scan: Any = importlib.import_module("collector._mqttscan").publishes
except ImportError:  # not compiled (setup.py marks it optional): the codec reads every packet
    _scan = None
_Publish = mqtt5.PublishPacket
_PINGREQ = mqtt5.PingReqPacket().write()
_DISCONNECT_NORMAL = mqtt5.DisconnectPacket().write()  # reason 0: the broker keeps the session
_PUBACK = 0x4002_0000  # PUBACK fixed header (0x40, remaining length 2) above a 16-bit packet id
_DEAD_AFTER = 1.5  # keep-alive periods without a byte from the broker before we call it dead
_ABORT_GRACE_S = 2.0  # after transport.abort(), closed at the latest this much later


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int  # packet id; 0 for a QoS 0 message (nothing to acknowledge)
    dup: bool
    received_ms: int
    session: int  # connection generation; acks for an older connection are skipped


class Inbox(Protocol):
    """Where a connection puts what it receives (the source)."""

    buffer: list[Message]  # appended to directly: the cheapest hand-over there is
    receiving: bool

    def received(self, count: int, nbytes: int) -> None: ...


class BrokerRefused(ConnectionError):
    """The broker refused the connection or the subscription (retried with backoff)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"broker refused the {what}: {reason}")
        self.what = what
        self.reason = reason


def puback_bytes(mids: list[int]) -> bytes:
    """PUBACKs (success, short form: no reason code, no properties) for `mids`, in order."""
    return struct.pack(f">{len(mids)}I", *[_PUBACK | mid for mid in mids])


def packet_size(view: memoryview, offset: int) -> int:
    """Whole size of the packet starting at `offset` from its fixed header; 0 if the header
    itself is incomplete (its remaining length is a variable-byte integer of up to 4 bytes)."""
    value, shift, i, end = 0, 0, offset + 1, min(len(view), offset + 5)
    while i < end:
        byte = view[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return i + 1 - offset + value
        shift += 7
        i += 1
    return 0


class MqttProtocol(asyncio.Protocol):
    def __init__(self, inbox: Inbox, generation: int, *, connect: bytes, subscribe: bytes,
                 keepalive_s: float) -> None:
        self._inbox = inbox
        self.generation = generation
        self._connect_packet = connect
        self._subscribe_packet = subscribe
        self.keepalive_s = keepalive_s  # the broker's Server Keep Alive replaces it, if sent
        loop = asyncio.get_running_loop()
        self._loop = loop
        # CONNACK: the session's backlog follows at once, and may be taken and acknowledged;
        # SUBACK (`ready`): a broker that pushes the whole backlog first sends it behind all of that.
        self.connacked: asyncio.Future[mqtt5.ConnAckPacket] = loop.create_future()
        self.ready: asyncio.Future[mqtt5.ConnAckPacket] = loop.create_future()
        self._connack: mqtt5.ConnAckPacket | None = None
        self._closed = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self.can_ack = False  # CONNACK seen and the transport still open
        self.closing = False
        self.close_reason = ""
        self.paused = False  # wanted by the owner (buffer full)
        self._socket_paused = False  # done: only once subscribed, or the SUBACK could not be read
        self._buf = bytearray()  # an incomplete packet carried over to the next read
        self._need = 0  # ...and how many bytes it needs before decoding is worth a try
        self._rx = False  # bytes arrived since the last tick
        self._last_rx = 0.0
        self._last_ping = 0.0

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._connect_packet)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._mark_closed(f"connection error: {exc}" if exc else "closed by the broker")

    def data_received(self, data: bytes) -> None:
        self._rx = True
        buf = self._buf
        if not buf:  # the usual case: decode straight from the bytes read, no copy
            with memoryview(data) as view:
                used = self._parse(view)
                if used < len(view) and not self.closing:
                    buf += view[used:]
            return
        buf += data
        if len(buf) < self._need:
            return  # a big packet still arriving: no point decoding yet
        with memoryview(buf) as view:
            used = self._parse(view)
        del buf[:used]

    def eof_received(self) -> bool:
        return False  # half-closed MQTT is dead: let the transport close

    # -- decoding ------------------------------------------------------------------------

    def _parse(self, view: memoryview) -> int:
        """Handle every complete packet in `view`; returns how many bytes they took."""
        inbox = self._inbox
        buffer = inbox.buffer
        receiving = inbox.receiving  # after stop_receiving, PUBLISHes stay un-acked: redelivered later
        scan = _scan if receiving else None
        generation = self.generation
        now_ms = time.time_ns() // 1_000_000  # one clock read per read(): they arrived together
        offset, end, count, nbytes = 0, len(view), 0, 0
        try:
            while offset < end:
                if scan is not None:  # the plain PUBLISHes from here on, in one call
                    offset, taken, size = scan(view, offset, Message, now_ms, generation, buffer)
                    count += taken
                    nbytes += size
                    if offset >= end:
                        break
                packet, size = _read(view[offset:])
                offset += size
                if type(packet) is _Publish:  # QoS 0 or 1: the subscription grants at most 1
                    if receiving:
                        payload = packet.payload
                        buffer.append(Message(packet.topic, payload, packet.packet_id or 0, packet.duplicate,
                                              now_ms, generation))
                        count += 1
                        nbytes += len(payload)
                else:
                    self._control(packet)
                    if self.closing:
                        break
            self._need = 0
        except IndexError:  # the codec's "not enough bytes": the rest is an incomplete packet
            self._need = packet_size(view, offset)
        except ValueError as exc:
            self.abort(f"malformed packet from the broker: {exc}")
        if count:
            inbox.received(count, nbytes)
        return offset

    def _control(self, packet: object) -> None:
        if isinstance(packet, mqtt5.PingRespPacket):
            return  # data_received already noted that the broker is alive
        if isinstance(packet, mqtt5.ConnAckPacket):
            if packet.reason_code.value != 0:
                self._fail_ready(BrokerRefused("connection", packet.reason_code.name))
                self.abort(f"connection refused: {packet.reason_code.name}")
                return
            if packet.server_keep_alive is not None:
                self.keepalive_s = packet.server_keep_alive
            self.can_ack = True
            self._last_rx = self._last_ping = self._loop.time()
            self._connack = packet
            if not self.connacked.done():
                self.connacked.set_result(packet)
            assert self._transport is not None
            self._transport.write(self._subscribe_packet)
        elif isinstance(packet, mqtt5.SubAckPacket):
            refused = [code.name for code in packet.reason_codes if code.value >= 0x80]
            if refused:
                self._fail_ready(BrokerRefused("subscription", refused[0]))
                self.abort(f"subscription refused: {refused[0]}")
            elif not self.ready.done() and self._connack is not None:
                self.ready.set_result(self._connack)
                if self.paused:
                    self._pause_socket()
        elif isinstance(packet, mqtt5.DisconnectPacket):
            self.abort(f"broker disconnected: {packet.reason_code.name}"
                       + (f" ({packet.reason_str})" if packet.reason_str else ""))
        elif not isinstance(packet, mqtt5.PubAckPacket | mqtt5.AuthPacket):
            self.abort(f"unexpected packet from the broker: {type(packet).__name__}")

    # -- commands from the owner -----------------------------------------------------------

    def ack(self, mids: list[int]) -> None:
        """One write for all of them: per-message writes would cost more than decoding."""
        if mids and self._transport is not None and self.can_ack:
            self._transport.write(puback_bytes(mids))

    def tick(self, now: float) -> None:
        """Keep-alive, called a few times per period: PINGREQ every period, and the
        connection is dead when nothing at all came back for 1.5 periods."""
        if not self.can_ack or not self.keepalive_s:
            return
        if self._rx or self.paused:  # paused: unread bytes are not silence
            self._rx = False
            self._last_rx = now
        elif now - self._last_rx > _DEAD_AFTER * self.keepalive_s:
            self.abort(f"no bytes from the broker for {now - self._last_rx:.1f} s (keep-alive "
                       f"{self.keepalive_s} s)")
            return
        if now - self._last_ping >= self.keepalive_s:
            assert self._transport is not None
            self._transport.write(_PINGREQ)
            self._last_ping = now

    def pause(self) -> None:
        self.paused = True
        if self.ready.done():
            self._pause_socket()

    def resume(self) -> None:
        self.paused = False
        if self._socket_paused and self._transport is not None and not self.closing:
            self._transport.resume_reading()
        self._socket_paused = False

    def _pause_socket(self) -> None:
        if not self._socket_paused and self._transport is not None and not self.closing:
            self._transport.pause_reading()
            self._socket_paused = True

    def disconnect(self) -> None:
        """DISCONNECT with reason 0 (the session and its queue are kept) behind the PUBACKs
        already written (before the SUBACK too: messages are acknowledged from the CONNACK on).
        We do not close: the broker closes once it has read it, so when `wait_closed` returns,
        the broker has processed every PUBACK (closing ourselves lets a quick reconnect take the
        session over before they are read; measured)."""
        transport = self._transport
        if transport is None:
            self._mark_closed("closed by us")
            return
        if self.closing:
            return
        self.can_ack = False
        self.closing = True
        self.close_reason = self.close_reason or "closed by us"
        if not self.connacked.done():  # no session yet: nothing to say goodbye to
            transport.close()
            return
        transport.write(_DISCONNECT_NORMAL)
        if self._socket_paused:  # read again, or the broker's close would go unnoticed
            transport.resume_reading()
            self._socket_paused = False

    def abort(self, reason: str) -> None:
        """Drop the connection now (protocol error, dead peer); the owner reconnects."""
        self.can_ack = False
        self.closing = True
        self.close_reason = self.close_reason or reason
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows...
            # ...except, seen once in ~10 test runs, on a TLS transport already closing: then nothing
            # would ever wake `wait_closed` (the loop had no timer left; aclose hung for good).
            self._loop.call_later(_ABORT_GRACE_S, self._mark_closed, reason)
        else:
            self._mark_closed(reason)  # never connected: nothing will call connection_lost

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _mark_closed(self, reason: str) -> None:
        self.can_ack = False
        self.closing = True
        self.close_reason = self.close_reason or reason
        self._fail_ready(ConnectionError(self.close_reason))
        self._closed.set()

    def _fail_ready(self, exc: Exception) -> None:
        for future in (self.connacked, self.ready):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody may be waiting any more (e.g. a timeout)
