"""MqttSource on the mqtt5 codec: the handshake, the byte stream, batches and acks, against
the scripted transport of tests/unit/mqtt_fakes.py (no sockets). Flow control, keep-alive and
shutdown: test_mqtt_source_flow.py."""

from __future__ import annotations

import asyncio
import random

import mqtt5
import pytest

from collector import metrics
from collector.daemon import _serve
from collector.decoder import Decoder
from collector.mqtt_protocol import Message, packet_size, puback_bytes
from collector.mqtt_source import MqttSource
from collector.pipeline import Pipeline
from collector.settings import BatchSettings
from collector.sink import NullSink
from tests.unit.mqtt_fakes import (  # noqa: F401 (the *_fixture names: fixtures)
    Q1,
    FakeBroker,
    broker_fixture,
    decode_all,
    gauge,
    publish,
    settings,
    source_fixture,
    until,
)

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
