"""MqttSource on the mqtt5 codec against a scripted in-memory transport (no sockets).

The fake transport answers CONNECT with CONNACK, SUBSCRIBE with SUBACK and DISCONNECT by
closing, like a broker would; everything the source writes is decoded with the codec.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import mqtt5
import pytest

from collector import metrics
from collector.daemon import _serve
from collector.decoder import Decoder
from collector.mqtt_protocol import Message, MqttProtocol, packet_size, puback_bytes
from collector.mqtt_source import MqttSource
from collector.pipeline import Pipeline
from collector.settings import BatchSettings, MqttSettings
from collector.sink import NullSink

Q1 = mqtt5.QoS.AT_LEAST_ONCE


def publish(mid: int, payload: bytes = b"", *, topic: str = "stb/v1/n/d/events", dup: bool = False) -> bytes:
    qos = Q1 if mid else mqtt5.QoS.AT_MOST_ONCE
    return mqtt5.PublishPacket(topic, payload, qos=qos, packet_id=mid or None, duplicate=dup).write()


def decode_all(data: bytes) -> list[Any]:
    packets, view, offset = [], memoryview(data), 0
    while offset < len(data):
        packet, size = mqtt5.read(view[offset:])
        packets.append(packet)
        offset += size
    return packets


def gauge(g: Any) -> float:
    return float(g._value.get())


@dataclass
class FakeBroker:
    """Answers the handshake; `connack`/`suback` script the next answers (then success)."""

    connacks: list[mqtt5.ConnAckReasonCode] = field(default_factory=list)
    subacks: list[mqtt5.SubAckReasonCode] = field(default_factory=list)
    server_keep_alive: int | None = None
    transports: list[FakeTransport] = field(default_factory=list)
    handshake_extra: bytes = b""  # sent right behind the CONNACK, in the same read
    suback_held: bool = False  # like mosquitto behind a large backlog: the SUBACK comes later

    async def create_connection(self, factory: Callable[[], MqttProtocol], host: str, port: int,
                                **_: Any) -> tuple[FakeTransport, MqttProtocol]:
        proto = factory()
        transport = FakeTransport(self, proto)
        self.transports.append(transport)
        proto.connection_made(transport)  # type: ignore[arg-type]
        return transport, proto

    @property
    def last(self) -> FakeTransport:
        return self.transports[-1]


class FakeTransport:
    def __init__(self, broker: FakeBroker, proto: MqttProtocol) -> None:
        self.broker, self.proto = broker, proto
        self.writes: list[bytes] = []
        self.reading_paused = False
        self.closed = False
        self.aborted = False
        self._loop = asyncio.get_running_loop()

    @property
    def packets(self) -> list[Any]:
        return decode_all(b"".join(self.writes))

    def pubacks(self) -> list[int]:
        return [p.packet_id for p in self.packets if isinstance(p, mqtt5.PubAckPacket)]

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))
        for packet in decode_all(bytes(data)):
            if isinstance(packet, mqtt5.ConnectPacket):
                code = self.broker.connacks.pop(0) if self.broker.connacks else mqtt5.ConnAckReasonCode.SUCCESS
                reply = mqtt5.ConnAckPacket(reason_code=code,
                                            server_keep_alive=self.broker.server_keep_alive).write()
                if code == mqtt5.ConnAckReasonCode.SUCCESS:
                    reply += self.broker.handshake_extra
                self._loop.call_soon(self.feed, reply)
            elif isinstance(packet, mqtt5.SubscribePacket) and not self.broker.suback_held:
                granted = self.broker.subacks.pop(0) if self.broker.subacks else \
                    mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE
                self._loop.call_soon(self.feed, mqtt5.SubAckPacket(packet.packet_id, [granted]).write())
            elif isinstance(packet, mqtt5.DisconnectPacket):
                self._loop.call_soon(self.drop)  # the broker closes behind a DISCONNECT

    def feed(self, data: bytes) -> None:
        if not self.closed:
            self.proto.data_received(data)

    def drop(self, exc: Exception | None = None) -> None:
        """The connection ends (broker closed it, or the network failed)."""
        if not self.closed:
            self.closed = True
            self._loop.call_soon(self.proto.connection_lost, exc)

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def close(self) -> None:
        self.drop()

    def abort(self) -> None:
        self.aborted = True
        self.drop()


def settings(**overrides: Any) -> MqttSettings:
    base: dict[str, Any] = {"url": "mqtt://127.0.0.1:1883", "client_id": "unit", "reconnect_min_s": 0.001,
                            "reconnect_max_s": 0.002}
    return MqttSettings(**{**base, **overrides})


@pytest.fixture
async def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", fake.create_connection)
    return fake


@pytest.fixture
async def source(broker: FakeBroker) -> AsyncIterator[MqttSource]:
    async with MqttSource(settings()) as src:
        yield src


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run callbacks until `check()` holds (reconnects take a few loop turns)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (a condition with a deadline, not a fixed sleep)
            await asyncio.sleep(0)


# -- the codec glue ---------------------------------------------------------------------------


def test_puback_bytes_equal_the_codecs() -> None:
    mids = [1, 7, 255, 256, 65535]
    assert puback_bytes(mids) == b"".join(mqtt5.PubAckPacket(m).write() for m in mids)
    assert puback_bytes([]) == b""


def test_packet_size_from_a_partial_fixed_header() -> None:
    big = publish(5, b"x" * 300_000)  # remaining length takes 3 bytes
    view = memoryview(big)
    assert packet_size(view, 0) == len(big)
    assert packet_size(view[:3], 0) == 0  # the length itself is incomplete
    assert packet_size(memoryview(b"xx" + big), 2) == len(big)


# -- handshake --------------------------------------------------------------------------------


async def test_connect_packet_asks_for_a_persistent_session(broker: FakeBroker) -> None:
    s = settings(url="mqtt://coll%40ector:p%3As%2Fw%25d@broker:1883", session_expiry_s=3600,
                 receive_maximum=1234, keepalive_s=17, group="north", topic="stb/v1/north/+/events")
    async with MqttSource(s) as src:
        assert src.connected and gauge(metrics.MQTT_CONNECTED) == 1
        connect, subscribe = broker.last.packets[:2]
    assert isinstance(connect, mqtt5.ConnectPacket)
    assert connect.clean_start is False
    assert connect.session_expiry_interval == 3600
    assert connect.receive_max == 1234
    assert connect.keep_alive == 17
    assert (connect.username, connect.password) == ("coll@ector", b"p:s/w%d")  # percent-decoded
    assert connect.client_id == "unit"
    assert isinstance(subscribe, mqtt5.SubscribePacket)
    [topic_filter] = subscribe.topic_filters
    assert topic_filter.pattern == "$share/north/stb/v1/north/+/events"
    assert topic_filter.max_qos == Q1
    assert not src.connected and gauge(metrics.MQTT_CONNECTED) == 0


async def test_exclusive_subscription_is_the_plain_topic(broker: FakeBroker) -> None:
    async with MqttSource(settings(subscription="exclusive")) as src:
        assert src.subscription_filter == "stb/v1/+/+/events"
        assert broker.last.packets[1].topic_filters[0].pattern == "stb/v1/+/+/events"


async def test_refused_connect_and_subscription_are_retried(broker: FakeBroker) -> None:
    broker.connacks = [mqtt5.ConnAckReasonCode.NOT_AUTHORIZED, mqtt5.ConnAckReasonCode.SERVER_BUSY]
    broker.subacks = [mqtt5.SubAckReasonCode.NOT_AUTHORIZED]
    connects = metrics.MQTT_CONNECTS._value.get()
    async with MqttSource(settings()) as src:
        assert src.connected
        assert len(broker.transports) == 4
        assert all(t.aborted for t in broker.transports[:3])
    assert metrics.MQTT_CONNECTS._value.get() == connects + 1


async def test_messages_right_behind_the_connack_belong_to_the_new_connection(broker: FakeBroker) -> None:
    broker.handshake_extra = publish(1, b"queued", dup=True)  # the session's backlog, same read
    async with MqttSource(settings()) as src:
        [msg] = await src.get_batch(10, 0)
        assert (msg.payload, msg.dup, msg.mid) == (b"queued", True, 1)
        src.ack([msg])
        assert broker.last.pubacks() == [1]
        assert msg.session == broker.last.proto.generation


async def test_the_backlog_is_taken_and_acked_before_the_suback(broker: FakeBroker) -> None:
    broker.suback_held = True
    broker.handshake_extra = publish(1, b"queued") + publish(2, b"queued")
    source = MqttSource(settings())
    pipeline = Pipeline(source, NullSink(), Decoder(), BatchSettings(max_age_s=0.01))
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve(source, pipeline, stop, grace_s=5))
    await until(lambda: pipeline.committed_messages == 2)  # (dead letters: the payloads are not msgpack)
    assert broker.last.pubacks() == [1, 2] and not source.connected
    stop.set()  # SIGTERM before the SUBACK: drained on the live connection, then closed
    assert await serving == 0
    await source.aclose()
    assert isinstance(broker.last.packets[-1], mqtt5.DisconnectPacket)


# -- decoding ---------------------------------------------------------------------------------


def _stream(n: int) -> tuple[bytes, list[bytes]]:
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.choice([0, 1, 10, 127, 128, 5000, 70_000])) for _ in range(n)]
    return b"".join(publish(i + 1, p, topic=f"stb/v1/r/d{i}/events") for i, p in enumerate(payloads)), payloads


@pytest.mark.parametrize("chunking", ["bytewise", "one_chunk", "random"])
async def test_packets_split_across_reads(source: MqttSource, broker: FakeBroker, chunking: str) -> None:
    data, payloads = _stream(60)
    if chunking == "bytewise":
        chunks = [data[i:i + 1] for i in range(len(data))]
    elif chunking == "one_chunk":
        chunks = [data]
    else:
        rng, chunks, i = random.Random(3), [], 0
        while i < len(data):
            step = rng.choice([1, 2, 3, 5, 100, 4096, 65536])
            chunks.append(data[i:i + step])
            i += step
    for chunk in chunks:
        broker.last.proto.data_received(chunk)
    got = await source.get_batch(1000, 0)
    assert [m.payload for m in got] == payloads
    assert [m.mid for m in got] == list(range(1, 61))
    assert [m.topic for m in got] == [f"stb/v1/r/d{i}/events" for i in range(60)]
    assert all(type(m.payload) is bytes and not m.dup for m in got)
    assert await source.get_batch(1000, 0) == []


async def test_malformed_bytes_drop_the_connection_and_it_reconnects(source: MqttSource, broker: FakeBroker) -> None:
    first = broker.last
    first.proto.data_received(publish(1, b"ok") + b"\x00\x00garbage")
    await until(lambda: len(broker.transports) == 2 and source.connected)
    assert first.aborted
    assert [m.payload for m in await source.get_batch(10, 0)] == [b"ok"]


async def test_broker_disconnect_packet_leads_to_a_reconnect(source: MqttSource, broker: FakeBroker) -> None:
    broker.last.proto.data_received(
        mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SERVER_SHUTTING_DOWN).write())
    await until(lambda: len(broker.transports) == 2 and source.connected)
    assert "SERVER_SHUTTING_DOWN" in broker.transports[0].proto.close_reason


# -- get_batch ----------------------------------------------------------------------------------


async def test_get_batch_in_receive_order_and_in_pieces(source: MqttSource, broker: FakeBroker) -> None:
    broker.last.proto.data_received(b"".join(publish(i, b"%d" % i) for i in range(1, 10_001)))
    got: list[Message] = []
    while batch := await source.get_batch(3000, 0):
        got += batch
    assert [m.mid for m in got] == list(range(1, 10_001))
    broker.last.proto.data_received(publish(1, b"again"))  # the buffer still works after compaction
    assert [m.payload for m in await source.get_batch(5, 0)] == [b"again"]


async def test_get_batch_wakes_on_arrival_and_times_out_empty(source: MqttSource, broker: FakeBroker) -> None:
    waiting = asyncio.create_task(source.get_batch(10, 30.0))
    await until(lambda: source._waiter is not None)
    broker.last.feed(publish(1, b"x"))
    assert [m.payload for m in await asyncio.wait_for(waiting, 5)] == [b"x"]
    assert await source.get_batch(10, 0.01) == []
    assert await source.get_batch(0, 0) == []


# -- acknowledgements -------------------------------------------------------------------------


async def test_ack_in_the_order_given_in_one_write(source: MqttSource, broker: FakeBroker) -> None:
    transport = broker.last
    transport.proto.data_received(b"".join(publish(i) for i in range(1, 101)))
    msgs = await source.get_batch(100, 0)
    acks = metrics.ACKS._value.get()
    writes = len(transport.writes)
    source.ack(msgs[:50])
    source.ack(list(reversed(msgs[50:])))
    assert len(transport.writes) == writes + 2
    assert transport.pubacks() == list(range(1, 51)) + list(range(100, 50, -1))
    assert metrics.ACKS._value.get() == acks + 100
    assert gauge(metrics.BUFFERED_MESSAGES) == 0


async def test_qos0_messages_are_not_acknowledged(source: MqttSource, broker: FakeBroker) -> None:
    broker.last.proto.data_received(publish(1) + publish(0, b"qos0") + publish(2))
    msgs = await source.get_batch(10, 0)
    assert [m.mid for m in msgs] == [1, 0, 2]
    source.ack(msgs)
    assert broker.last.pubacks() == [1, 2]


async def test_acks_of_an_older_connection_are_skipped(source: MqttSource, broker: FakeBroker) -> None:
    first = broker.last
    first.proto.data_received(publish(1, b"a") + publish(2, b"b"))
    old = await source.get_batch(10, 0)
    first.drop(ConnectionResetError("reset"))
    await until(lambda: len(broker.transports) == 2 and source.connected)
    second = broker.last
    second.proto.data_received(publish(1, b"a", dup=True) + publish(3, b"c"))
    new = await source.get_batch(10, 0)
    assert {m.session for m in old} != {m.session for m in new}
    stale = metrics.STALE_ACKS._value.get()
    source.ack(old + new)  # a batch that straddles the reconnect
    assert metrics.STALE_ACKS._value.get() == stale + 2
    assert second.pubacks() == [1, 3]
    assert first.pubacks() == []


async def test_acks_while_disconnected_are_stale_not_written(source: MqttSource, broker: FakeBroker) -> None:
    broker.connacks = [mqtt5.ConnAckReasonCode.SERVER_BUSY] * 3
    first = broker.last
    first.proto.data_received(publish(1))
    msgs = await source.get_batch(10, 0)
    first.drop()
    await until(lambda: not source.connected)
    source.ack(msgs)
    assert first.pubacks() == []
    await until(lambda: source.connected)
    assert broker.last.pubacks() == []


# -- backpressure -----------------------------------------------------------------------------


async def test_reading_pauses_past_max_buffered_and_resumes_below_half(broker: FakeBroker) -> None:
    async with MqttSource(settings(max_buffered_bytes=10_000)) as src:
        transport = broker.last
        transport.proto.data_received(b"".join(publish(i, b"x" * 1000) for i in range(1, 11)))
        assert not transport.reading_paused  # exactly at the limit
        transport.proto.data_received(publish(11, b"x" * 1000))
        assert transport.reading_paused and gauge(metrics.READING_PAUSED) == 1
        await src.get_batch(5, 0)  # 6,000 bytes left: above half
        assert transport.reading_paused
        await src.get_batch(1, 0)  # 5,000: resume
        assert not transport.reading_paused and gauge(metrics.READING_PAUSED) == 0
        assert [m.mid for m in await src.get_batch(100, 0)] == list(range(7, 12))


async def test_pause_waits_for_the_suback(broker: FakeBroker) -> None:
    # The session's backlog arrives before the SUBACK: pausing then would stall the handshake.
    broker.handshake_extra = b"".join(publish(i, b"x" * 1000) for i in range(1, 21))
    async with MqttSource(settings(max_buffered_bytes=5000)) as src:
        assert src.connected
        assert broker.last.reading_paused
        assert len(await src.get_batch(100, 0)) == 20
        assert not broker.last.reading_paused


# -- keep-alive -------------------------------------------------------------------------------


async def test_keepalive_pings_and_detects_a_silent_broker(source: MqttSource, broker: FakeBroker) -> None:
    proto, transport = broker.last.proto, broker.last
    t0 = proto._last_ping
    pings = lambda: sum(isinstance(p, mqtt5.PingReqPacket) for p in transport.packets)  # noqa: E731
    proto.tick(t0 + 29)
    assert pings() == 0
    proto.tick(t0 + 30)
    assert pings() == 1
    proto.data_received(mqtt5.PingRespPacket().write())
    proto.tick(t0 + 40)  # bytes came: alive
    proto.tick(t0 + 60)
    assert pings() == 2 and not transport.aborted
    proto.tick(t0 + 85)  # 45 s = 1.5 keep-alives of silence: alive still
    assert not transport.aborted
    proto.tick(t0 + 86)
    assert transport.aborted and "no bytes" in proto.close_reason
    await until(lambda: len(broker.transports) == 2 and source.connected)


async def test_silence_while_paused_is_not_a_dead_broker(source: MqttSource, broker: FakeBroker) -> None:
    proto, transport = broker.last.proto, broker.last
    t0 = proto._last_ping
    proto.pause()
    for t in range(0, 300, 10):
        proto.tick(t0 + t)
    assert not transport.aborted
    assert sum(isinstance(p, mqtt5.PingReqPacket) for p in transport.packets) == 9  # the broker still hears us


async def test_server_keep_alive_replaces_ours(broker: FakeBroker) -> None:
    broker.server_keep_alive = 10
    async with MqttSource(settings(keepalive_s=60)):
        assert broker.last.proto.keepalive_s == 10


# -- shutdown ---------------------------------------------------------------------------------


async def test_stop_receiving_keeps_the_buffer_and_takes_nothing_new(source: MqttSource, broker: FakeBroker) -> None:
    broker.last.proto.data_received(publish(1) + publish(2))
    await source.stop_receiving()
    broker.last.proto.data_received(publish(3))  # left un-acked: the broker redelivers it later
    assert [m.mid for m in await source.get_batch(10, 30.0)] == [1, 2]
    assert await asyncio.wait_for(source.get_batch(10, 30.0), 1) == []  # no waiting once stopped


async def test_aclose_flushes_pubacks_then_disconnects_with_reason_0(broker: FakeBroker) -> None:
    src = MqttSource(settings())
    await src.__aenter__()
    transport = broker.last
    transport.proto.data_received(publish(1) + publish(2))
    src.ack(await src.get_batch(10, 0))
    await src.aclose()
    assert transport.closed and not transport.aborted  # the broker closed after the DISCONNECT
    packets = transport.packets
    assert [type(p) for p in packets[-2:]] == [mqtt5.PubAckPacket, mqtt5.DisconnectPacket]
    assert packets[-1].reason_code == mqtt5.DisconnectReasonCode.NORMAL_DISCONNECTION
    assert not src.connected
    assert len(broker.transports) == 1  # and no reconnect after
    await src.aclose()  # idempotent


async def test_aclose_gives_up_on_a_broker_that_does_not_close(broker: FakeBroker,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collector.mqtt_source._CLOSE_TIMEOUT_S", 0.05)
    src = MqttSource(settings())
    await src.__aenter__()
    monkeypatch.setattr(broker.last, "drop", lambda exc=None: None)  # ignores the DISCONNECT
    monkeypatch.setattr(broker.last, "abort", lambda: broker.last.proto.connection_lost(None))
    await src.aclose()
    assert broker.last.proto.closing
