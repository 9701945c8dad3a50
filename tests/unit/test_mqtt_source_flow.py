"""MqttSource's flow control, keep-alive and shutdown, against the scripted transport of
tests/unit/mqtt_fakes.py (no sockets)."""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

from collector import metrics
from collector.mqtt_source import MqttSource
from tests.unit.mqtt_fakes import FakeBroker, broker_fixture, gauge, publish, settings, source_fixture, until  # noqa: F401

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
