"""Fakes for the collector's MQTT source tests: a scripted broker and transport (no sockets).

The fake transport answers CONNECT with CONNACK, SUBSCRIBE with SUBACK and DISCONNECT by
closing, like a broker would; everything the source writes is decoded with the codec.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import mqtt5
import pytest

from collector.mqtt_protocol import MqttProtocol
from collector.mqtt_source import MqttSource
from collector.settings import MqttSettings

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


@pytest.fixture(name="broker")
async def broker_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", fake.create_connection)
    return fake


@pytest.fixture(name="source")
async def source_fixture(broker: FakeBroker) -> AsyncIterator[MqttSource]:
    async with MqttSource(settings()) as src:
        yield src


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run callbacks until `check()` holds (reconnects take a few loop turns)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (a condition with a deadline, not a fixed sleep)
            await asyncio.sleep(0)
