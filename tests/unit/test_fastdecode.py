"""The native decoder against the pure-Python one, encoding by encoding, and on garbage.

Every test goes through `assert_twins`: the native decoder may accept only what the Python path
stores, with the same columns, and the batch's dead letters must be the same either way. Tests
of valid input also check that the native path did take it (or they would prove nothing).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import msgpack
import numpy as np
import pytest

from collector import fastdecode
from collector.decoder import Accepted, Decoder
from proto.telemetry import MAX_TS_MS, U64
from tests.unit.fastdecode_support import Pairs, Raw, Verbatim, assert_twins, int_encodings, pack, random_widths

NOW = int(time.time() * 1000)
DEV = "stb-1"
TOPIC = f"stb/v1/north/{DEV}/events"


def envelope(events: list[Any], **override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "dev": DEV, "hh": 42, "fw": "4.2.0", "seq0": 10, "sent": NOW, "ev": events}
    doc.update(override)
    return doc


def view(ts: int = NOW - 1000) -> list[Any]:
    return [1, ts, 12, 90210, 1500, 0]


def test_the_extension_is_built() -> None:
    assert fastdecode.AVAILABLE, "collector._fastdecode did not compile: pip install -e . with gcc and Python headers"


def test_a_valid_message_is_taken_natively_with_every_kind() -> None:
    events = [view(), [2, NOW, 1, 2, 3], [3, NOW, "guide", "ok", 7], [4, NOW, "asset", 10, 20], [5, NOW, 2],
              [6, NOW, "req", "m1", 5, 3], [7, NOW, "req", 5, 1], [3, NOW, "é ü 🎬", ""], [4, NOW, "a"]]
    assert assert_twins([(TOPIC, msgpack.packb(envelope(events)))], NOW) == [True]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, U64])
def test_every_int_encoding_of_a_value(value: int) -> None:
    """fixint, uint8..uint64 and int8..int64 (those that can hold the value) in every int slot."""
    messages = []
    for encoded in map(Verbatim, int_encodings(value)):
        messages += [(TOPIC, pack(envelope([[1, NOW, 12, encoded, 60]]))),       # programme_id (u64)
                     (TOPIC, pack(envelope([[1, NOW, encoded, 1, 60]]))),        # channel_id (u32)
                     (TOPIC, pack(envelope([[6, NOW, "r", "m", 1, encoded]]))),  # rank (u16)
                     (TOPIC, pack(envelope([view()], hh=encoded))),
                     (TOPIC, pack(envelope([view()], seq0=encoded))),
                     (TOPIC, pack(envelope([[*view(), encoded]])))]              # ignored trailing field
    scanned = assert_twins(messages, NOW)
    fits = [True, value <= 2**32 - 1, value <= 2**16 - 1, True, True, True]
    assert scanned == fits * (len(messages) // len(fits))


@pytest.mark.parametrize("value", [-1, -32, -33, -128, -129, -(2**15), -(2**31), -(2**63)])
def test_negative_ints_in_every_encoding(value: int) -> None:
    """Negative fixint and int8..int64: out of range everywhere but in an ignored field."""
    messages = []
    for encoded in map(Verbatim, int_encodings(value)):
        messages += [(TOPIC, pack(envelope([[1, NOW, 12, encoded, 60]]))), (TOPIC, pack(envelope([[encoded, NOW]]))),
                     (TOPIC, pack(envelope([view()], hh=encoded))), (TOPIC, pack(envelope([[*view(), encoded]])))]
    assert assert_twins(messages, NOW) == [False, False, False, True] * (len(messages) // 4)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 127, 128, 129, 255, 256, 300])
@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_every_str_encoding(length: int, width: int) -> None:
    """fixstr, str8, str16, str32 where each can hold the length; > 128 characters is invalid."""
    messages = [(TOPIC, pack(envelope([[3, NOW, "s" * length, "é" * length]]), lambda n: min(width, n - 1))),
                (TOPIC, pack(envelope([view()], fw="f" * min(length, 70)), lambda n: min(width, n - 1)))]
    assert assert_twins(messages, NOW) == [length <= 128, length <= 64]


@pytest.mark.parametrize("raw", [b"\xff", b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                 b"\xf8\x88\x80\x80\x80", b"\xc3", b"\xe2\x82", b"abc\x80", b"\xf0\x9f\x8e"])
def test_str_that_is_not_utf8_is_left_to_python(raw: bytes) -> None:
    """Python's msgpack refuses these (not_msgpack), wherever they are, even in an ignored field."""
    messages = [(TOPIC, pack(envelope([[3, NOW, Raw(raw), "x"]]))), (TOPIC, pack(envelope([view()], fw=Raw(raw)))),
                (TOPIC, pack(envelope([[*view(), Raw(raw)]]))),
                (TOPIC, pack(Pairs([*envelope([view()]).items(), (Raw(raw), 1)])))]
    assert assert_twins(messages, NOW) == [False] * 4


@pytest.mark.parametrize("raw", [b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xee\x80\x80",
                                 b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\x7f"])
def test_utf8_edges_that_are_valid(raw: bytes) -> None:
    assert assert_twins([(TOPIC, pack(envelope([[3, NOW, Raw(raw * 128), "x"]])))], NOW) == [True]
    assert assert_twins([(TOPIC, pack(envelope([[3, NOW, Raw(raw * 129), "x"]])))], NOW) == [False]


@pytest.mark.parametrize("width", [0, 1, 2])
@pytest.mark.parametrize("events", [1, 15, 16, 1000, 1001])
def test_array_and_map_encodings(width: int, events: int) -> None:
    """fixarray/array16/array32 for `ev` and each event, fixmap/map16/map32 for the envelope."""
    payload = pack(envelope([view(NOW - i) for i in range(events)]), lambda n: min(width, n - 1))
    assert assert_twins([(TOPIC, payload)], NOW) == [events <= 1000]


def test_envelope_key_order_duplicates_and_extras() -> None:
    doc = envelope([view()])
    messages = [(TOPIC, pack(dict(reversed(doc.items())))),                 # ev first: fine
                (TOPIC, pack(Pairs([*doc.items(), ("hh", 7)]))),            # duplicate: Python takes the last
                (TOPIC, pack(Pairs([*doc.items(), ("extra", [1, {"a": 2}])]))),  # newer minor version
                (TOPIC, pack({k: v for k, v in doc.items() if k != "fw"})),
                (TOPIC, pack(Pairs([(1, 1), *doc.items()]))),
                (TOPIC, pack(doc) + b"\x00"),                                # trailing bytes
                (TOPIC, pack([doc])), (TOPIC, b""), (TOPIC, b"\xc1")]
    assert assert_twins(messages, NOW) == [True] + [False] * 8


@pytest.mark.parametrize(("field", "value"), [
    ("v", 2), ("v", True), ("v", 1.0), ("dev", "stb-2"), ("dev", b"stb-1"), ("dev", None), ("hh", "1"),
    ("hh", 1.0), ("seq0", U64), ("sent", 0), ("sent", MAX_TS_MS + 1), ("sent", -5), ("fw", None), ("fw", 5),
    ("ev", []), ("ev", {}), ("ev", [[1]]), ("ev", [None]), ("ev", [[1, NOW, None, 1, 1]]), ("ev", [[9, NOW]]),
    ("ev", [[True, NOW, 5, 1, 1]]), ("ev", [[5, NOW, 3]]), ("ev", [[5, 1.5, 1]]), ("ev", [[5, NOW, 1, None]]),
    ("ev", [[5, NOW, 1, 2.5, b"x", [1, [2]], None, True]]), ("ev", [[5, NOW, 1, [[[1]]]]]), ("ev", [[5, NOW, 1, {}]]),
    ("ev", [[1, NOW, 12, 1, 7 * 86400 + 1]]), ("ev", [[3, NOW, b"bin", "x"]]), ("ev", [[5, MAX_TS_MS + 1, 1]]),
    ("ev", [[5, 0, 1]]), ("ev", [[5, NOW + 500 * 86_400_000, 1]]),
])
def test_envelope_and_event_oddities(field: str, value: Any) -> None:
    """Each either taken natively (and then stored alike) or decided by Python as before."""
    assert_twins([(TOPIC, msgpack.packb(envelope([view()], **{field: value}), use_bin_type=True))], NOW)


def test_topics() -> None:
    payload = msgpack.packb(envelope([view()]))
    topics = [TOPIC, "stb/v1/north/stb-1/events/", "stb/v1/North/stb-1/events", "stb/v2/north/stb-1/events",
              "stb/v1/" + "n" * 33 + "/stb-1/events", "stb/v1//stb-1/events", "stb/v1/north/stb-1/eventz",
              "stb/v1/north/stb\udc80-1/events", "stb/v1/nörth/stb-1/events", "stb/v1/north/stb-1"]
    scanned = assert_twins([(t, payload) for t in topics], NOW)
    assert scanned == [True] + [False] * (len(topics) - 1)


def test_clock_correction_and_plausibility_agree() -> None:
    messages = [(TOPIC, msgpack.packb(envelope([[5, ts, 1]], sent=sent)))
                for ts, sent in ((1_000_000, 1_000_500), (NOW - 60_000, NOW - 500), (NOW, NOW - 2000),
                                 (NOW, NOW - 2001), (946_684_799_999, NOW), (5, 1), (MAX_TS_MS, NOW))]
    for settings in ({}, {"clock_tolerance_ms": 0}, {"clock_tolerance_ms": -1}, {"max_future_ms": 0},
                     {"clock_tolerance_ms": 2**70}, {"max_future_ms": 2**62}):
        assert_twins(messages, NOW, **settings)
    assert_twins(messages, 2**53 + 1)  # beyond what the native path reasons about: Python decides


def test_truncated_at_every_byte() -> None:
    """Every prefix of a valid payload: never a crash, never an over-read, Python decides."""
    payload = pack(envelope([view(), [3, NOW, "guide", "é" * 20, 7], [5, NOW, 1, 2.5, "x"]]), random_widths(
        random.Random(3), 1.0))
    prefixes = [(TOPIC, payload[:i]) for i in range(len(payload))]
    assert assert_twins(prefixes, NOW) == [False] * len(payload)
    assert assert_twins([(TOPIC, payload)], NOW) == [True]


@pytest.mark.parametrize("header", [b"\xdd\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xdb\xff\xff\xff\xff",
                                    b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xda\xff\xff"])
def test_huge_counts_claimed_by_headers(header: bytes) -> None:
    doc = msgpack.packb(envelope([view()]))
    messages = [(TOPIC, header), (TOPIC, header + b"\x01" * 64), (TOPIC, doc[:-12] + header),
                (TOPIC, b"\x87\xa2ev" + header + doc[1:]), (TOPIC, doc[:-1] + header)]
    assert assert_twins(messages, NOW) == [False] * len(messages)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_and_mutations(seed: int) -> None:
    rng = random.Random(seed)
    valid = [pack(envelope([view(NOW - i), [3, NOW, "é" * rng.randint(0, 3), "x"], [6, NOW, "r", "m", 5]]),
                  random_widths(rng)) for i in range(20)]
    messages = [(TOPIC, rng.randbytes(rng.randint(0, 64))) for _ in range(40)]
    for payload in valid:
        mutated = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        messages.append((TOPIC, bytes(mutated)))
        messages.append((TOPIC, payload))
    rng.shuffle(messages)
    assert_twins(messages, NOW)


def test_mixed_batch_keeps_receive_order() -> None:
    """Native and Python-path messages interleaved: sources and rows in receive order."""
    decoder = Decoder()
    payloads = [msgpack.packb(envelope([[5, NOW, i % 3]] * (i + 1), seq0=100 * i,
                                       **({"extra": 1} if i % 2 else {}))) for i in range(6)]
    accepted = [decoder.accept(TOPIC, p, NOW) for p in payloads]
    assert all(isinstance(a, Accepted) for a in accepted)
    batch = decoder.decode(accepted)
    assert batch.sources == accepted
    assert batch.events["seq"].tolist() == [100 * i + j for i in range(6) for j in range(i + 1)]
    assert batch.events["power_state"].dtype == np.uint8


def test_pure_python_fallback_logs_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(fastdecode, "AVAILABLE", False)
    monkeypatch.setattr(fastdecode._not_built, "said", False)
    with caplog.at_level(logging.WARNING, logger="collector.fastdecode"):
        decoders = [Decoder(), Decoder()]
    assert [r.getMessage().startswith("collector._fastdecode is not built") for r in caplog.records] == [True]
    result = decoders[0].accept(TOPIC, msgpack.packb(envelope([view()])), NOW)
    assert isinstance(result, Accepted) and result._envelope is not None  # decoded in Python
    assert decoders[0].decode([result]).rows == 1
