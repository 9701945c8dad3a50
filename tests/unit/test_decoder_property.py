"""Property: the vectorised decoder and the precise validator agree on every generated batch.

A message must be stored or dead-lettered the same way whatever else is in its batch, so for
any batch: (1) the fast path alone accepts a message exactly when `check_event` accepts all of
its events; (2) decoding the batch keeps exactly those messages, with the rows each gives alone.
And the native decoder (collector/_fastdecode.c) against the pure-Python one, on raw payloads in
any msgpack encoding, envelopes included: it accepts only what Python stores, and the batch's
rows and dead letters are the same either way (`fastdecode_support.assert_twins`).
Derandomised, so the suite is deterministic; raise max_examples locally to search harder.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.decoder import Accepted, Decoder, _FastPathFailed
from proto.telemetry import KINDS, MAX_TS_MS, U64
from tests.unit.fastdecode_support import Pairs, Raw, assert_twins, pack, random_widths

NOW = int(time.time() * 1000)
DECODER = Decoder()

# Values that sit on, or just past, every boundary a field or the envelope has.
_INT_EDGES = [0, 1, 2, 3, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, U64, -1, -(2**63)]
odd_values = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.binary(max_size=4),
                       st.lists(st.integers(0, 3), max_size=2), st.sampled_from(_INT_EDGES),
                       st.text(max_size=3), st.text(min_size=127, max_size=130))


@st.composite
def field_value(draw: st.DrawFn, ftype: type, maximum: int) -> Any:
    roll = draw(st.integers(0, 39))
    if roll < 4:
        return None  # an explicit nil: not the same thing as an absent trailing field
    if roll == 4:
        return draw(odd_values)
    if ftype is int:
        return min(maximum + 1, U64) if roll == 5 else maximum if roll == 6 else draw(st.integers(0, maximum))
    return draw(st.text(min_size=maximum, max_size=maximum + 1)) if roll == 5 else draw(st.text(max_size=8))


@st.composite
def event(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(odd_values)  # not even an array
    rare = st.integers(0, 9).map(lambda roll: roll == 0)  # one draw in ten goes off the path
    code = draw(st.sampled_from([0, 10, -1, True])) if draw(rare) else draw(st.sampled_from(sorted(KINDS)))
    ts = (draw(st.one_of(st.sampled_from([0, MAX_TS_MS, MAX_TS_MS + 1, -1]), odd_values)) if draw(rare)
          else draw(st.integers(NOW - 86_400_000, NOW)))
    spec = KINDS.get(code) if type(code) is int else None
    fields = [draw(field_value(f.type, f.max)) for f in spec.fields] if spec else []
    # Mostly complete, else truncated (optional fields absent, or required ones missing) or longer.
    length = draw(st.one_of(st.just(len(fields)), st.integers(0, len(fields) + 2)))
    extra = draw(st.lists(st.one_of(st.integers(0, 9), st.text(max_size=2), st.none()), max_size=2))
    return [code, ts, *(fields + extra)[:length]]


@st.composite
def message(draw: st.DrawFn, index: int) -> Accepted:
    device = f"dev-{index}"
    far_off = draw(st.integers(0, 4)) == 0  # a clock far off is corrected, maybe out of range
    sent = draw(st.integers(1, MAX_TS_MS)) if far_off else NOW
    events = draw(st.lists(event(), min_size=1, max_size=4))
    payload = msgpack.packb({"v": 1, "dev": device, "hh": index, "fw": "1", "seq0": 0, "sent": sent,
                             "ev": events})
    accepted = DECODER.accept(f"stb/v1/north/{device}/events", payload, NOW)
    assert isinstance(accepted, Accepted)  # the envelope is always valid here: events are the subject
    return accepted


@st.composite
def batch(draw: st.DrawFn) -> list[Accepted]:
    return [draw(message(i)) for i in range(draw(st.integers(1, 6)))]


def encoded(index: int, events: list[Any]) -> Accepted:
    payload = msgpack.packb({"v": 1, "dev": f"dev-{index}", "hh": index, "fw": "1", "seq0": 0, "sent": NOW,
                             "ev": events})
    accepted = DECODER.accept(f"stb/v1/north/dev-{index}/events", payload, NOW)
    assert isinstance(accepted, Accepted)
    return accepted


# Found by review: an explicit nil in an optional field passed the fast path (as if absent)
# and failed check_event, so it was stored or dead-lettered depending on its batch.
NIL_IN_OPTIONAL_FIELD = [encoded(0, [[1, NOW, 5, 1, 60, None]]), encoded(1, [[5, NOW, 1]])]


def fast_path_accepts(msg: Accepted) -> bool:
    try:
        DECODER._columns([msg])
    except _FastPathFailed:
        return False
    return True


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(batch())
@example(NIL_IN_OPTIONAL_FIELD)
def test_fast_path_and_check_event_agree_on_every_batch(messages: list[Accepted]) -> None:
    precise = [DECODER._check_precisely(m) is None for m in messages]
    assert [fast_path_accepts(m) for m in messages] == precise
    decoded = DECODER.decode(messages)
    assert decoded.sources == [m for m, ok in zip(messages, precise, strict=True) if ok]
    assert len(decoded.dead_letters) == precise.count(False)
    alone = [DECODER.decode([m]).events for m in decoded.sources]
    for name, column in decoded.events.items():
        expected = np.concatenate([cols[name] for cols in alone]) if alone else column[:0]
        assert column.tolist() == expected.tolist(), name


# -- the native decoder against the pure-Python one ----------------------------------------------

_HEADER_ODDITIES = st.one_of(odd_values, st.sampled_from([0, 2, U64, MAX_TS_MS + 1, 2**64 - 2, "dev-0"]))


@st.composite
def valid_event(draw: st.DrawFn) -> list[Any]:
    """Within the contract, values on its edges: what the native path must take and get right."""
    spec = draw(st.sampled_from(list(KINDS.values())))
    fields = [draw(st.sampled_from([0, f.max]) | st.integers(0, f.max)) if f.type is int
              else draw(st.text(max_size=f.max) | st.text(min_size=f.max, max_size=f.max)) for f in spec.fields]
    given = draw(st.integers(spec.required, len(fields)))
    return [spec.code, draw(st.integers(NOW - 86_400_000, NOW)), *fields[:given]]


@st.composite
def wire_message(draw: st.DrawFn, index: int) -> tuple[str, bytes]:
    """A raw (topic, payload): mostly valid envelopes in random encodings, some of them broken."""
    device = f"dev-{index}"
    sent = draw(st.integers(1, MAX_TS_MS)) if draw(st.integers(0, 4)) == 0 else NOW
    pairs: list[tuple[Any, Any]] = [("v", 1), ("dev", device), ("hh", index), ("fw", "1"),
                                    ("seq0", draw(st.sampled_from([0, 7, U64 - 3, U64]))), ("sent", sent),
                                    ("ev", draw(st.lists(event() if draw(st.booleans()) else valid_event(),
                                                         min_size=1, max_size=4)))]
    topic = f"stb/v1/north/{device}/events"
    rng = draw(st.randoms(use_true_random=False))
    change = draw(st.integers(0, 19))
    if change == 0:
        rng.shuffle(pairs)
    elif change == 1:
        del pairs[rng.randrange(len(pairs))]
    elif change == 2:
        pairs.append(rng.choice(pairs[:-1]))  # a duplicate key: Python keeps the last
    elif change == 3:
        pairs.insert(rng.randrange(len(pairs) + 1), (draw(st.sampled_from(["x", "ev2", 1, Raw(b"\xff")])), [1, 2]))
    elif change == 4:
        i = rng.randrange(len(pairs))
        pairs[i] = (pairs[i][0], draw(_HEADER_ODDITIES))
    elif change == 5:
        topic = draw(st.sampled_from(["stb/v1/north/dev-x/events", "stb/v1/North/dev-0/events", "stb/v1/north/"]))
    elif change == 6:
        pairs[-1] = ("ev", [[3, NOW, Raw(draw(st.binary(min_size=1, max_size=4))), "x"]])  # maybe not UTF-8
    payload = pack(Pairs(pairs), random_widths(rng))
    if change == 7:
        payload = payload[:draw(st.integers(0, len(payload) - 1))]
    elif change == 8:
        payload += draw(st.binary(min_size=1, max_size=3))
    return topic, payload


@st.composite
def wire_batch(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    return [draw(wire_message(i)) for i in range(draw(st.integers(1, 6)))]


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(wire_batch())
def test_native_and_pure_python_decoders_agree_on_every_batch(messages: list[tuple[str, bytes]]) -> None:
    assert_twins(messages, NOW)
