"""The publisher's logic against an in-memory broker speaking MQTT 5 (the same `mqtt5` codec) on a
local socket: Receive Maximum honoured, PUBACKs in any order, refusals per message, DUP resend
after a dropped connection, and giving up in time. The real broker: tests/integration/test_mkt_delivery.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import mqtt5
import pytest

from marketing.errors import PublishError
from marketing.mqtt_link import Link
from marketing.mqtt_settings import MarketingMqttSettings
from marketing.publisher import (
    NO_SUBSCRIBERS,
    PENDING,
    TOO_LARGE,
    Outgoing,
    PublishIncomplete,
    publish,
)


@dataclass
class Seen:
    topic: str
    packet_id: int
    dup: bool
    expiry: int | None
    connection: int


@dataclass
class FakeBroker:
    receive_max: int = 65_535
    max_packet: int | None = None
    connack_code: int = 0
    reason: Callable[[str], int] = lambda _topic: NO_SUBSCRIBERS
    drop_after: int = 0            # first connection: close after this many PUBLISHes (0: never)
    silent: bool = False           # never acknowledge
    published: list[Seen] = field(default_factory=list)
    connections: int = 0
    max_in_flight: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection, buf, in_flight = self.connections, b"", 0
        try:
            while data := await reader.read(1 << 16):
                buf += data
                acks: list[bytes] = []
                while buf:
                    try:
                        packet, size = mqtt5.read(memoryview(buf))
                    except IndexError:
                        break
                    buf = buf[size:]
                    if isinstance(packet, mqtt5.ConnectPacket):
                        writer.write(mqtt5.ConnAckPacket(reason_code=mqtt5.ConnAckReasonCode(self.connack_code),
                                                         receive_max=self.receive_max,
                                                         max_packet_size=self.max_packet).write())
                    elif isinstance(packet, mqtt5.PublishPacket):
                        in_flight += 1
                        self.max_in_flight = max(self.max_in_flight, in_flight)
                        self.published.append(Seen(packet.topic, packet.packet_id or 0, packet.duplicate,
                                                   packet.message_expiry_interval, connection))
                        if connection == 1 and self.drop_after and len(self.published) >= self.drop_after:
                            writer.close()
                            return
                        if not self.silent:
                            acks.append(mqtt5.PubAckPacket(packet.packet_id or 0, reason_code=mqtt5.PubAckReasonCode(
                                self.reason(packet.topic))).write())
                    elif isinstance(packet, mqtt5.DisconnectPacket):
                        writer.close()
                        return
                in_flight -= len(acks)
                writer.write(b"".join(reversed(acks)))  # out of order on purpose
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def settings(self, **changes: object) -> MarketingMqttSettings:
        base: dict[str, object] = {"url": f"mqtt://127.0.0.1:{self.port}", "ack_timeout_s": 2.0,
                                   "reconnect_min_s": 0.01, "reconnect_max_s": 0.05}
        return MarketingMqttSettings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture
async def broker() -> AsyncIterator[FakeBroker]:
    fake = FakeBroker()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake
        server.close()


def messages(n: int, *, expiry_s: int = 600) -> list[Outgoing]:
    return [Outgoing(f"stb/v1/north/stb-{i}/messages", b"m%d" % i, expiry_s + i) for i in range(n)]


async def test_every_message_gets_its_own_code_in_order(broker: FakeBroker) -> None:
    broker.reason = lambda topic: 0x87 if topic.endswith("7/messages") else 0x00
    broker.receive_max = 50
    progress: list[tuple[int, int]] = []
    result = await publish(broker.settings(window=1_000), messages(2_000),
                           progress=lambda done, total: progress.append((done, total)))
    expected = [0x87 if i % 10 == 7 else 0 for i in range(2_000)]
    assert result.reason_codes == expected
    assert (result.accepted, result.refused, result.no_subscribers) == (1_800, 200, 0)
    assert broker.max_in_flight <= 50                     # the broker's Receive Maximum, not our window
    assert [p.expiry for p in broker.published[:3]] == [600, 601, 602]
    assert not any(p.dup for p in broker.published) and result.connections == 1
    assert progress[-1] == (2_000, 2_000)


async def test_our_window_caps_a_generous_broker(broker: FakeBroker) -> None:
    result = await publish(broker.settings(window=10), messages(300))
    assert result.no_subscribers == 300 and broker.max_in_flight <= 10


@pytest.mark.parametrize("window", [65_534, 100])
async def test_a_lost_connection_resends_the_unacknowledged_with_dup(broker: FakeBroker, window: int) -> None:
    broker.drop_after = 150  # it hangs up on reading the 150th PUBLISH, without acknowledging its read
    result = await publish(broker.settings(window=window), messages(400))
    assert result.reason_codes == [NO_SUBSCRIBERS] * 400 and result.connections == 2
    first = [p for p in broker.published if p.connection == 1]
    again = [p for p in broker.published if p.connection == 2]
    assert len(first) == 150 and not any(p.dup for p in first)
    acked_before = 400 - len(again)
    assert (acked_before == 0) if window > 400 else (0 < acked_before < 150)
    assert [p.topic for p in again] == [m.topic for m in messages(400)[acked_before:]]  # in message order
    assert [p.dup for p in again] == [True] * result.resent + [False] * (len(again) - result.resent)
    assert result.resent >= 150 - acked_before   # at least what the broker read and never acknowledged


async def test_too_large_for_the_broker_is_refused_without_sending(broker: FakeBroker) -> None:
    broker.max_packet = 200
    batch = [*messages(2), Outgoing("stb/v1/north/big/messages", b"x" * 500, 60)]
    result = await publish(broker.settings(), batch)
    assert result.reason_codes == [NO_SUBSCRIBERS, NO_SUBSCRIBERS, TOO_LARGE] and result.refused == 1
    assert [p.topic for p in broker.published] == [m.topic for m in batch[:2]]


async def test_no_puback_in_time_gives_up_with_what_is_known(broker: FakeBroker) -> None:
    broker.silent = True
    with pytest.raises(PublishIncomplete) as caught:
        await publish(broker.settings(ack_timeout_s=0.3), messages(5))
    assert isinstance(caught.value, PublishError) and caught.value.retryable
    assert caught.value.reason_codes == [PENDING] * 5 and caught.value.pending == 5


async def test_a_refused_connection_is_not_retried(broker: FakeBroker) -> None:
    broker.connack_code = 0x87  # not authorised
    with pytest.raises(PublishIncomplete, match="NOT_AUTHORIZED"):
        await publish(broker.settings(ack_timeout_s=30), messages(3))
    assert broker.connections == 1


async def test_nobody_listening_gives_up_after_the_timeout() -> None:
    settings = MarketingMqttSettings(url="mqtt://127.0.0.1:9", ack_timeout_s=0.2, reconnect_min_s=0.01,
                                     reconnect_max_s=0.05)
    with pytest.raises(PublishIncomplete, match="no progress"):
        await publish(settings, messages(1))


async def test_nothing_to_publish_connects_nowhere() -> None:
    result = await publish(MarketingMqttSettings(url="mqtt://127.0.0.1:9"), [])
    assert result.reason_codes == [] and result.connections == 0


@pytest.mark.parametrize(("topic", "expiry"), [("", 5), ("stb/v1/+/x/messages", 5), ("stb/#", 5),
                                               ("a\0b", 5), ("a/b", 0), ("a/b", 2**32)])
def test_outgoing_refuses_what_cannot_be_sent(topic: str, expiry: int) -> None:
    with pytest.raises(ValueError):
        Outgoing(topic, b"x", expiry)


async def test_pubacks_split_across_reads_and_in_both_forms() -> None:
    acks: list[tuple[int, int]] = []
    link = Link(b"", lambda pid, code: acks.append((pid, code)))
    stream = (b"\x40\x02\x00\x01" + b"\x40\x03\x01\x00\x87"
              + mqtt5.PubAckPacket(7, reason_code=mqtt5.PubAckReasonCode.QUOTA_EXCEEDED, reason_str="full").write()
              + b"\x40\x02\xff\xff")
    for i in range(0, len(stream), 3):
        link.data_received(stream[i:i + 3])
    assert acks == [(1, 0), (256, 0x87), (7, 0x97), (65_535, 0)]


def test_settings_report_every_problem() -> None:
    problems = MarketingMqttSettings(url="http://x", client_id="", ca_file="/nope", window=70_000,
                                     ack_timeout_s=0, reconnect_min_s=2, reconnect_max_s=1).validate()
    assert len(problems) == 7
    assert MarketingMqttSettings().validate() == []
