"""The vectorised decoder must agree with the precise reference validator on any input."""

from __future__ import annotations

import random
import time

import msgpack
import numpy as np
import pytest

from collector.decoder import Accepted, DeadLetter, Decoder
from proto.telemetry import KINDS, U64, InvalidMessage, Reason, check_event, encode_batch, make_event

NOW = int(time.time() * 1000)
TOPIC = "stb/v1/north/{}/events"


def valid_event(rng: random.Random, ts: int) -> list:
    kind = rng.choice(list(KINDS.values()))
    fields = []
    for f in kind.fields[: rng.randint(kind.required, len(kind.fields))]:
        fields.append(rng.randint(0, f.max) if f.type is int else "x" * rng.randint(0, 12))
    return [kind.code, ts, *fields]


def mutate(rng: random.Random, event: list) -> object:
    choice = rng.randrange(9)
    e = list(event)
    if choice == 0:
        e[rng.randrange(len(e))] = rng.choice(["s", 1.5, None, True, [1], -1, U64, 2**63, -(2**63)])
    elif choice == 1:
        e = e[: rng.randrange(len(e))]
    elif choice == 2:
        e[0] = rng.choice([0, 10, 99, -3])
    elif choice == 3:
        e[1] = rng.choice([-5, 10**14, 0])
    elif choice == 4:
        return rng.choice(["event", 7, {"k": 1}, b"\x01\x02", None])
    elif choice == 5:
        e.extend([1, "future", [2]])  # trailing fields from a newer minor version: valid
    elif choice == 6 and len(e) > 2:
        e[2] = "y" * 200
    elif choice == 7:
        e[0] = True
    return e


def accept(decoder: Decoder, device: str, events: list, *, seq0: int = 0, sent: int = NOW) -> Accepted:
    payload = msgpack.packb({"v": 1, "dev": device, "hh": 7, "fw": "1.0", "seq0": seq0, "sent": sent,
                             "ev": events})
    result = decoder.accept(TOPIC.format(device), payload, NOW)
    assert isinstance(result, Accepted), result
    return result


def reference_ok(decoder: Decoder, msg: Accepted) -> bool:
    return decoder._check_precisely(msg) is None


@pytest.mark.parametrize("seed", range(30))
def test_fast_path_agrees_with_reference(seed: int) -> None:
    rng = random.Random(seed)
    decoder = Decoder()
    messages = []
    for m in range(rng.randint(1, 40)):
        events = [valid_event(rng, NOW - rng.randint(0, 10**7)) for _ in range(rng.randint(1, 30))]
        if rng.random() < 0.3:
            i = rng.randrange(len(events))
            events[i] = mutate(rng, events[i])
        messages.append(accept(decoder, f"dev-{m}", events, seq0=m * 1000))
    batch = decoder.decode(messages)
    expected_good = [m for m in messages if reference_ok(decoder, m)]
    assert [m.envelope.device_id for m in batch.sources] == [m.envelope.device_id for m in expected_good]
    assert batch.rows == sum(len(m.envelope.events) for m in expected_good)
    assert len(batch.dead_letters) == len(messages) - len(expected_good)
    # every value must come through unchanged, event by event
    i = 0
    for msg in expected_good:
        for j, event in enumerate(msg.envelope.events):
            spec = check_event(event)
            assert batch.events["kind"][i] == spec.code
            assert batch.events["seq"][i] == msg.envelope.seq0 + j
            assert batch.events["device_ts_ms"][i] == event[1]
            for f, value in zip(spec.fields, event[2:], strict=False):
                assert batch.events[f.column][i] == value, (f.column, event)
            for f in spec.fields[len(event) - 2:]:
                assert batch.events[f.column][i] == f.default
            i += 1


def test_columns_have_event_table_types() -> None:
    decoder = Decoder()
    msg = accept(decoder, "d1", [make_event("view", NOW, 5, 2**64 - 1, 60, 2), make_event("power", NOW, 1)])
    cols = decoder.decode([msg]).events
    assert cols["programme_id"].dtype == np.uint64 and cols["programme_id"][0] == 2**64 - 1
    assert cols["channel_id"].dtype == np.uint32
    assert cols["device_id"].dtype == object and list(cols["device_id"]) == ["d1", "d1"]
    assert list(cols["power_state"]) == [0, 1]


def test_clock_correction_beyond_tolerance_only() -> None:
    decoder = Decoder(clock_tolerance_ms=2_000)
    skewed = accept(decoder, "a", [[5, 1_000_000, 1]], sent=1_000_500)  # STB clock reset to 1970
    punctual = accept(decoder, "b", [[5, NOW - 60_000, 1]], sent=NOW - 500)
    cols = decoder.decode([skewed, punctual]).events
    assert list(cols["device_ts_ms"]) == [1_000_000, NOW - 60_000]
    assert list(cols["ts_ms"]) == [1_000_000 + (NOW - 1_000_500), NOW - 60_000]


def test_implausible_corrected_time_is_dead_lettered() -> None:
    decoder = Decoder(max_future_ms=86_400_000)
    far_future = accept(decoder, "a", [[5, NOW + 5 * 86_400_000, 1]], sent=NOW)
    batch = decoder.decode([far_future])
    assert batch.rows == 0 and batch.dead_letters[0].reason == Reason.IMPOSSIBLE_VALUE


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("stb/v1/north/d1/events", b"\xc1\xff garbage", Reason.NOT_MSGPACK),
    ("stb/v1/north/d1/events", msgpack.packb([1, 2]), Reason.BAD_ENVELOPE),
    ("stb/v1/north/d1/events", msgpack.packb({"v": 2}), Reason.UNSUPPORTED_VERSION),
    ("stb/v1/north/d1/events", b"\x00" * (256 * 1024 + 1), Reason.OVERSIZE),
    ("stb/v1/NORTH/d1/events", msgpack.packb({}), Reason.BAD_TOPIC),
    ("stb/v1/north/d1/events", msgpack.packb({"v": 1, "dev": "d2", "hh": 1, "fw": "", "seq0": 0,
                                              "sent": NOW, "ev": [[5, NOW, 1]]}), Reason.DEVICE_MISMATCH),
    ("stb/v1/north/d1/events", msgpack.packb({"v": 1, "dev": "d1", "hh": "1", "fw": "", "seq0": 0,
                                              "sent": NOW, "ev": [[5, NOW, 1]]}), Reason.BAD_ENVELOPE),
    ("stb/v1/north/d1/events", msgpack.packb({"v": 1, "dev": "d1", "hh": 1, "fw": "", "seq0": -1,
                                              "sent": NOW, "ev": [[5, NOW, 1]]}), Reason.IMPOSSIBLE_VALUE),
    ("stb/v1/north/d1/events", msgpack.packb({"v": 1, "dev": "d1", "hh": 1, "fw": "", "seq0": 0,
                                              "sent": NOW, "ev": [[5, NOW, 1]] * 1001}), Reason.TOO_MANY_EVENTS),
])
def test_envelope_rejections(topic: str, payload: bytes, reason: Reason) -> None:
    result = Decoder(dead_letter_bytes=100).accept(topic, payload, NOW)
    assert isinstance(result, DeadLetter)
    assert result.reason == reason
    assert result.payload == payload[:100] and result.payload_size == len(payload)


def test_event_rejection_reasons() -> None:
    decoder = Decoder()
    cases = {Reason.UNKNOWN_KIND: [99, NOW], Reason.BAD_EVENT: [1, NOW, "ch", 1, 1],
             Reason.IMPOSSIBLE_VALUE: [1, NOW, 1, 1, 1, 3]}
    for reason, event in cases.items():
        batch = decoder.decode([accept(decoder, "d", [[5, NOW, 1], event])])
        assert batch.rows == 0 and batch.dead_letters[0].reason == reason


def test_encode_round_trip() -> None:
    payload = encode_batch(device_id="box-1", household_id=42, firmware="2.1", seq0=10, sent_ms=NOW,
                           events=[make_event("tune", NOW, 1, 2, 3)])
    batch = Decoder().decode([Decoder().accept("stb/v1/r1/box-1/events", payload, NOW)])
    assert batch.rows == 1 and batch.events["seq"][0] == 10 and batch.events["channel_id"][0] == 2
    with pytest.raises(InvalidMessage):
        make_event("view", NOW, "not a channel", 1, 1)
