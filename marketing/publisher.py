"""A fast MQTT 5 QoS 1 publisher for messages to the boxes: returns once every message has its PUBACK.

    result = await publish(settings.mqtt, [Outgoing(topic, payload, expiry_s), ...])
    result.reason_codes[i]      # the broker's PUBACK reason code for messages[i]

One clean connection (clean start, no session: nothing is left on the broker between cycles),
a deep window of PUBLISHes in flight (`[mqtt] window`, capped by the broker's Receive Maximum,
below the 65,535 packet ids), each with a Message Expiry Interval so a box that stays off past it
never gets it. Packet ids are handed out from a free list and mapped back to message indexes on
PUBACK, so acknowledgements may come in any order.

Reason codes (MQTT 5 PUBACK):
- 0x00 accepted: the broker routed the message; to a box that is off, its persistent session
  queues it (until the expiry). 0x00 does not mean shown: the box reports that (kinds 8 and 9).
- 0x10 no matching subscribers: accepted, but nobody holds a subscription for that topic, so the
  message is gone (a box that never connected with messages on). mosquitto counts a subscription
  kept by an offline persistent session as a match (0x00). A success here: nothing to resend.
- >= 0x80 refused (0x87 not authorised: the ACL; 0x97 quota exceeded, ...): reported per message,
  never retried here. Two are decided locally, without sending: 0x90 (a topic the codec refuses)
  and 0x95 (larger than the broker's Maximum Packet Size).

On a lost connection the publisher reconnects (capped, jittered backoff) and sends again, with
DUP set, every message not yet acknowledged; the box drops a copy by its message id. With no
PUBACK and no connection for `ack_timeout_s`, or a refused CONNECT, it gives up with
`PublishIncomplete` (a `marketing.errors.PublishError`) carrying the codes known so far.
Logs carry counts and seconds only: never payloads or topics (they name devices).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mqtt5

from marketing.errors import PublishError
from marketing.mqtt_link import Link, LinkRefused, open_link
from marketing.mqtt_settings import MAX_WINDOW, MarketingMqttSettings
from stbcommon.backoff import Backoff

log = logging.getLogger(__name__)
ACCEPTED = 0x00
NO_SUBSCRIBERS = 0x10
TOPIC_INVALID = 0x90
TOO_LARGE = 0x95
PENDING = -1                 # in PublishIncomplete.reason_codes: never acknowledged
_CHUNK = 2_000               # PUBLISHes per write
_TICK_S = 0.25               # timeouts, keep-alive and progress are looked at this often
_RETRY_CONNACK = frozenset({0x88, 0x89, 0x97, 0x9F})  # unavailable, busy, quota, rate: worth another try
_QOS1 = mqtt5.QoS.AT_LEAST_ONCE
Progress = Callable[[int, int], None]  # (acknowledged, total)


@dataclass(slots=True)
class Outgoing:
    """One message; treat as immutable (not frozen: a frozen dataclass takes 2x as long to build,
    1.9 s per 1M here)."""

    topic: str
    payload: bytes
    expiry_s: int       # MQTT Message Expiry Interval: 1 .. 2**32-1 seconds

    def __post_init__(self) -> None:
        if not 1 <= self.expiry_s <= 0xFFFF_FFFF:
            raise ValueError("expiry_s: 1 .. 2**32-1 seconds (an expired message is not sent)")
        t = self.topic
        if not t or "+" in t or "#" in t or "\0" in t:
            raise ValueError("topic: non-empty, without wildcards or NUL")


@dataclass(frozen=True)
class PublishResult:
    reason_codes: list[int]   # per message, in order
    accepted: int             # 0x00
    no_subscribers: int       # 0x10 (accepted too; see the module docstring)
    refused: int              # >= 0x80
    seconds: float            # connect to the last PUBACK
    connections: int
    resent: int               # PUBLISHes sent again (DUP) after a lost connection

    @property
    def messages_per_s(self) -> float:
        return len(self.reason_codes) / self.seconds if self.seconds > 0 else 0.0


class PublishIncomplete(PublishError):
    """Gave up: `reason_codes` holds what was acknowledged, PENDING (-1) for the rest."""

    def __init__(self, reason: str, reason_codes: list[int]) -> None:
        pending = sum(1 for c in reason_codes if c == PENDING)
        super().__init__(f"{pending} of {len(reason_codes)} messages not acknowledged: {reason}")
        self.reason = reason
        self.reason_codes = reason_codes
        self.pending = pending


async def publish(settings: MarketingMqttSettings, messages: Sequence[Outgoing], *,
                  progress: Progress | None = None) -> PublishResult:
    """Publish every message at QoS 1 and return when each has its PUBACK (see the module docstring)."""
    return await _Run(settings, messages, progress).run()


def publish_blocking(settings: MarketingMqttSettings, messages: Sequence[Outgoing], *,
                     progress: Progress | None = None) -> PublishResult:
    """`publish` on a fresh uvloop event loop (the default loop if uvloop is missing), for callers
    without a loop of their own: uvloop roughly halves the loop's share of the CPU here."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(publish(settings, messages, progress=progress))
    return uvloop.run(publish(settings, messages, progress=progress))


class _Run:
    """One call of `publish`: which message each packet id carries, what is acknowledged."""

    def __init__(self, settings: MarketingMqttSettings, messages: Sequence[Outgoing],
                 progress: Progress | None) -> None:
        self.settings = settings
        self.messages = messages
        self.progress = progress
        self.total = len(messages)
        self.codes = [PENDING] * self.total
        self.done = 0                     # messages with a code (acknowledged or decided here)
        self.cursor = 0                   # next message never sent
        self.resend: deque[int] = deque()  # sent on a lost connection, not acknowledged: DUP
        self.slot = [-1] * 65_536         # packet id -> message index, -1 when free
        self.free = list(range(65_535, 0, -1))
        self.inflight = 0
        self.unknown_acks = 0
        self.connections = 0
        self.resent = 0
        self.max_packet = 0               # the broker's Maximum Packet Size, 0 = none
        self.window = 1
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)

    # -- the PUBACK path (called from Link.data_received) -----------------------------------

    def ack(self, packet_id: int, reason: int) -> None:
        index = self.slot[packet_id]
        if index < 0:
            self.unknown_acks += 1        # an id not in flight: nothing to do with it
            return
        self.slot[packet_id] = -1
        self.free.append(packet_id)
        self.inflight -= 1
        self.codes[index] = reason
        self.done += 1

    # -- the driver -------------------------------------------------------------------------

    async def run(self) -> PublishResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.last_progress, self.last_done = started, 0
        backoff = self.backoff
        while self.done < self.total:
            link = await self._connect(backoff)
            try:
                await self._pump(link)
            except ConnectionError as exc:
                self._lost(str(exc))
            finally:
                await link.aclose(graceful=self.done == self.total, timeout=min(self.settings.connect_timeout_s, 5.0))
            if self.done < self.total:
                await self._pause(backoff)
        seconds = loop.time() - started
        result = self._result(seconds)
        if self.progress is not None:
            self.progress(self.done, self.total)
        log.info("messages published", extra={
            "messages": self.total, "accepted": result.accepted, "no_subscribers": result.no_subscribers,
            "refused": result.refused, "seconds": round(seconds, 3), "per_s": round(result.messages_per_s),
            "connections": self.connections, "resent": self.resent})
        return result

    async def _connect(self, backoff: Backoff) -> Link:
        while True:
            try:
                link, connack = await open_link(self.settings, self.ack)
            except LinkRefused as exc:
                if exc.code not in _RETRY_CONNACK:
                    raise PublishIncomplete(str(exc), self.codes) from None
                reason = str(exc)
            except ssl.SSLCertVerificationError as exc:
                raise PublishIncomplete(f"TLS: {exc.verify_message}", self.codes) from None
            except (OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                self.connections += 1
                self.window = min(self.settings.window, connack.receive_max or MAX_WINDOW, MAX_WINDOW)
                self.max_packet = connack.max_packet_size or 0
                return link
            log.warning("broker not reachable; retrying", extra={"reason": reason[:200]})
            await self._pause(backoff)

    async def _pause(self, backoff: Backoff) -> None:
        """The back-off before the next attempt; PublishIncomplete past ack_timeout_s without progress."""
        delay = backoff.next_delay()
        loop = asyncio.get_running_loop()
        if loop.time() + delay - self.last_progress > self.settings.ack_timeout_s:
            raise PublishIncomplete(f"no progress for {self.settings.ack_timeout_s} s", self.codes)
        await asyncio.sleep(delay)

    async def _pump(self, link: Link) -> None:
        """Keep the window full until every message has its code; ConnectionError when the link drops."""
        loop = asyncio.get_running_loop()
        ticker = _Ticker(loop, link.wake)
        last_write = last_report = loop.time()
        try:
            while self.done < self.total:
                link.wake.clear()
                if link.closed:
                    raise ConnectionError(link.close_reason)
                now = loop.time()
                if self.done != self.last_done:
                    self.last_done, self.last_progress = self.done, now
                    self.backoff.reset()
                elif now - self.last_progress > self.settings.ack_timeout_s:
                    link.abort("no PUBACK in time")
                    raise PublishIncomplete(f"no PUBACK for {self.settings.ack_timeout_s} s", self.codes)
                if self.progress is not None and now - last_report >= _TICK_S:
                    last_report = now
                    self.progress(self.done, self.total)
                room = self.window - self.inflight
                if link.writable and room > 0 and (self.resend or self.cursor < self.total):
                    self._fill(link, min(room, _CHUNK))
                    last_write = now
                    await asyncio.sleep(0)  # let the PUBACKs in before the next chunk
                    continue
                if link.keepalive_s and now - last_write >= link.keepalive_s / 2:
                    link.ping()
                    last_write = now
                await link.wake.wait()
        finally:
            ticker.cancel()

    def _fill(self, link: Link, count: int) -> None:
        parts: list[bytes] = []
        messages, slot, free, resend = self.messages, self.slot, self.free, self.resend
        max_packet = self.max_packet
        while count > 0 and (resend or self.cursor < self.total):
            if resend:
                index, dup = resend.popleft(), True
            else:
                index, dup = self.cursor, False
                self.cursor += 1
            m = messages[index]
            packet_id = free.pop()
            try:
                packet = mqtt5.PublishPacket(m.topic, m.payload, qos=_QOS1, packet_id=packet_id, duplicate=dup,
                                             message_expiry_interval=m.expiry_s).write()
            except (ValueError, OverflowError):
                free.append(packet_id)
                self._decide(index, TOPIC_INVALID)
                continue
            if max_packet and len(packet) > max_packet:
                free.append(packet_id)
                self._decide(index, TOO_LARGE)
                continue
            slot[packet_id] = index
            parts.append(packet)
            count -= 1
        self.inflight += len(parts)
        link.write(b"".join(parts))

    def _decide(self, index: int, reason: int) -> None:
        self.codes[index] = reason
        self.done += 1

    def _lost(self, reason: str) -> None:
        """Everything in flight goes back to be sent again, in message order, with DUP set."""
        waiting = sorted(index for index in self.slot if index >= 0)
        self.resend.extendleft(reversed(waiting))
        self.resent += len(waiting)
        self.slot = [-1] * 65_536
        self.free = list(range(65_535, 0, -1))
        self.inflight = 0
        log.warning("broker connection lost; resending what is not acknowledged", extra={
            "reason": reason[:200], "in_flight": len(waiting), "acknowledged": self.done, "total": self.total})

    def _result(self, seconds: float) -> PublishResult:
        codes = self.codes
        accepted = codes.count(ACCEPTED)
        no_subscribers = codes.count(NO_SUBSCRIBERS)
        refused = sum(1 for c in codes if c >= 0x80)
        return PublishResult(codes, accepted, no_subscribers, refused, seconds, self.connections, self.resent)


class _Ticker:
    """Sets `event` every _TICK_S so the pump looks at its timeouts even when nothing arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop, self._event = loop, event
        self._handle = loop.call_later(_TICK_S, self._tick)

    def _tick(self) -> None:
        self._event.set()
        self._handle = self._loop.call_later(_TICK_S, self._tick)

    def cancel(self) -> None:
        self._handle.cancel()
