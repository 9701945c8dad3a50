"""Property: the C PUBLISH scanner (collector/_mqttscan.c) agrees with the `mqtt5` codec.

For any bytes, every message the scanner takes is what `mqtt5.read` reads at the same offset
(a PUBLISH with the same topic, payload, packet id, DUP flag and size), and it stops in front
of everything else. For any stream of packets (plain and unusual PUBLISHes, control packets,
cut anywhere), the protocol's loop (scanner, then the codec for the packet it stopped at)
yields exactly the messages the codec alone yields. Derandomised, so the suite is deterministic.
"""

from __future__ import annotations

import importlib
from typing import Any

import mqtt5
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.mqtt_protocol import Message

publishes = importlib.import_module("collector._mqttscan").publishes
SETTINGS = settings(derandomize=True, database=None, max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
EVERY_START = settings(SETTINGS, max_examples=60)  # each example scans from every offset
RECEIVED, SESSION = 1_700_000_000_000, 3

plain_topics = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="+#"),
                       min_size=1, max_size=40)
odd_topics = st.one_of(st.text(max_size=8).filter(lambda t: "+" not in t and "#" not in t and "\x00" not in t),
                       st.sampled_from(["stb/v1/é/d/events", "a\x01b", "a\x7fb"]))


@st.composite
def publish(draw: st.DrawFn) -> bytes:
    qos = draw(st.sampled_from([mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE]))
    topic = draw(st.one_of(plain_topics, plain_topics, odd_topics))
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:  # properties a publisher may set: the codec reads those
        extra = draw(st.sampled_from([{"payload_format_indicator": 1}, {"message_expiry_interval": 60},
                                      {"user_properties": [("k", "v")]}, {"content_type": "x"}]))
    if not topic:
        extra["topic_alias"] = 1  # an empty topic stands for an alias the broker set before
    packet = mqtt5.PublishPacket(
        topic, draw(st.binary(max_size=300)), qos=qos, retain=draw(st.booleans()),
        packet_id=draw(st.integers(1, 65535)) if qos == mqtt5.QoS.AT_LEAST_ONCE else None,
        duplicate=draw(st.booleans()) if qos == mqtt5.QoS.AT_LEAST_ONCE else False, **extra)
    return bytes(packet.write())


control = st.sampled_from([mqtt5.PingRespPacket().write(), mqtt5.PubAckPacket(9).write(),
                           mqtt5.SubAckPacket(1, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]).write()])
streams = st.lists(st.one_of(publish(), publish(), publish(), control.map(bytes)), max_size=12)


def fields(msg: Message) -> tuple[str, bytes, int, bool]:
    return msg.topic, msg.payload, msg.mid, msg.dup


def codec_step(view: memoryview, offset: int, out: list[tuple[str, bytes, int, bool]]) -> int:
    """One packet through the codec (a PUBLISH's fields appended to `out`); its size, or 0 where
    the codec stops (an incomplete or malformed packet)."""
    try:
        packet, size = mqtt5.read(view[offset:])
    except (IndexError, ValueError):
        return 0
    if isinstance(packet, mqtt5.PublishPacket):
        out.append((packet.topic, packet.payload, packet.packet_id or 0, packet.duplicate))
    return int(size)


def by_codec(data: bytes) -> tuple[list[tuple[str, bytes, int, bool]], int]:
    """Every PUBLISH the codec reads, and where it stops (an incomplete or malformed packet)."""
    out: list[tuple[str, bytes, int, bool]] = []
    view, offset = memoryview(data), 0
    while offset < len(data) and (size := codec_step(view, offset, out)):
        offset += size
    return out, offset


def by_protocol_loop(data: bytes) -> tuple[list[tuple[str, bytes, int, bool]], int]:
    """The loop of MqttProtocol._parse: the scanner, then the codec for the packet it stopped at."""
    messages: list[Message] = []
    taken: list[tuple[str, bytes, int, bool]] = []
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset, _, _ = publishes(view, offset, Message, RECEIVED, SESSION, messages)
        taken.extend(fields(m) for m in messages)
        messages.clear()
        if offset >= len(data) or not (size := codec_step(view, offset, taken)):
            break
        offset += size
    return taken, offset


@SETTINGS
@given(streams, st.data())
def test_the_protocol_loop_reads_what_the_codec_reads(packets: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(packets)
    cut = data.draw(st.integers(0, len(stream)))
    for chunk in (stream, stream[:cut]):
        assert by_protocol_loop(chunk) == by_codec(chunk)


@EVERY_START
@given(st.binary(max_size=64), streams)
@example(b"\x32\x05\x00\x01a\x00\x00", [])  # QoS 1, packet id 0: malformed, not taken
@example(b"\x38\x04\x00\x01a\x00", [])  # DUP on QoS 0: not taken
@example(b"\x30\xff\xff\xff\xff\x7f", [])  # a remaining length of 5 bytes: not taken
def test_whatever_the_scanner_takes_the_codec_reads_the_same(noise: bytes, packets: list[bytes]) -> None:
    data = noise + b"".join(packets)
    for start in range(len(data) + 1):
        messages: list[Message] = []
        end, count, nbytes = publishes(data, start, Message, RECEIVED, SESSION, messages)
        assert count == len(messages) and nbytes == sum(len(m.payload) for m in messages)
        offset, view = start, memoryview(data)
        for msg in messages:
            packet, size = mqtt5.read(view[offset:])
            assert isinstance(packet, mqtt5.PublishPacket)
            assert fields(msg) == (packet.topic, packet.payload, packet.packet_id or 0, packet.duplicate)
            assert (msg.received_ms, msg.session) == (RECEIVED, SESSION)
            offset += size
        assert end == offset


def test_plain_publishes_are_all_taken_and_the_rest_left() -> None:
    plain = [mqtt5.PublishPacket(f"stb/v1/n/d{i}/events", b"x" * i, qos=mqtt5.QoS.AT_LEAST_ONCE,
                                 packet_id=i + 1).write() for i in range(3)]
    qos0 = mqtt5.PublishPacket("t", b"y", qos=mqtt5.QoS.AT_MOST_ONCE).write()
    with_props = mqtt5.PublishPacket("t", b"z", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=5,
                                     payload_format_indicator=1).write()
    data = b"".join([*plain, qos0, with_props, *plain])
    out: list[Message] = []
    end, count, nbytes = publishes(data, 0, Message, RECEIVED, SESSION, out)
    assert (count, nbytes) == (4, 0 + 1 + 2 + 1)
    assert [m.mid for m in out] == [1, 2, 3, 0]
    assert data[end:end + len(with_props)] == with_props
    end2, count2, _ = publishes(data, end + len(with_props), Message, RECEIVED, SESSION, out)
    assert (end2, count2, len(out)) == (len(data), 3, 7)


def test_a_failing_factory_raises_and_keeps_what_was_taken() -> None:
    def make(*args: Any) -> Message:
        if len(out) == 1:
            raise RuntimeError("no")
        return Message(*args)

    out: list[Message] = []
    data = b"".join(mqtt5.PublishPacket("t", b"", qos=mqtt5.QoS.AT_MOST_ONCE).write() for _ in range(3))
    with pytest.raises(RuntimeError):
        publishes(data, 0, make, RECEIVED, SESSION, out)
    assert len(out) == 1
