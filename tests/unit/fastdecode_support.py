"""Helpers for the native decoder's tests: a msgpack writer that picks every item's encoding,
and a check that the native and the pure-Python decoders treat a batch the same way.

`msgpack.packb` always writes the smallest encoding; a firmware written in C need not, and
the native decoder must read every valid one (and refuse what packb never writes: a str that
is not UTF-8, duplicate map keys, ...).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from collector import fastdecode
from collector.decoder import Accepted, Arrival, DeadLetter, Decoder

Choose = Callable[[int], int]  # picks one of n encodings; 0 is always the smallest


class Raw(bytes):
    """A msgpack str made of exactly these bytes (they need not be UTF-8)."""


class Verbatim(bytes):
    """Already encoded: written as is."""


class Pairs(list[tuple[Any, Any]]):
    """A msgpack map written as these (key, value) pairs, in this order, duplicates included."""


def smallest(n: int) -> int:
    return 0


def random_widths(rng: random.Random, share: float = 0.3) -> Choose:
    return lambda n: rng.randrange(n) if rng.random() < share else 0


_INT_FORMATS = ((0xCC, ">B", 0, 2**8 - 1), (0xCD, ">H", 0, 2**16 - 1), (0xCE, ">I", 0, 2**32 - 1),
                (0xCF, ">Q", 0, 2**64 - 1), (0xD0, ">b", -(2**7), 2**7 - 1), (0xD1, ">h", -(2**15), 2**15 - 1),
                (0xD2, ">i", -(2**31), 2**31 - 1), (0xD3, ">q", -(2**63), 2**63 - 1))


def int_encodings(v: int) -> list[bytes]:
    """Every msgpack encoding of `v`, smallest first."""
    out = []
    if 0 <= v <= 0x7F:
        out.append(bytes([v]))
    if -32 <= v < 0:
        out.append(struct.pack(">b", v))
    out += [bytes([code]) + struct.pack(fmt, v) for code, fmt, low, high in _INT_FORMATS if low <= v <= high]
    return sorted(out, key=len)


def _header(size: int, fix: tuple[int, int] | None, codes: Sequence[tuple[int, str]], choose: Choose) -> bytes:
    options = [bytes([fix[0] | size])] if fix is not None and size <= fix[1] else []
    options += [bytes([code]) + struct.pack(fmt, size) for code, fmt in codes if size < 256 ** struct.calcsize(fmt)]
    return options[choose(len(options))]


def pack(value: Any, choose: Choose = smallest) -> bytes:
    out = bytearray()
    _write(out, value, choose)
    return bytes(out)


def _write(out: bytearray, v: Any, choose: Choose) -> None:
    if isinstance(v, Verbatim):
        out += v
    elif v is None:
        out += b"\xc0"
    elif v is True or v is False:
        out += b"\xc3" if v else b"\xc2"
    elif isinstance(v, int):
        options = int_encodings(v)
        out += options[choose(len(options))]
    elif isinstance(v, float):
        out += b"\xcb" + struct.pack(">d", v)
    elif isinstance(v, Raw | str):
        raw = bytes(v) if isinstance(v, Raw) else v.encode()
        out += _header(len(raw), (0xA0, 31), ((0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I")), choose) + raw
    elif isinstance(v, bytes):
        out += _header(len(v), None, ((0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I")), choose) + v
    elif isinstance(v, Pairs | dict):
        pairs = list(v.items()) if isinstance(v, dict) else v
        out += _header(len(pairs), (0x80, 15), ((0xDE, ">H"), (0xDF, ">I")), choose)
        for key, item in pairs:
            _write(out, key, choose)
            _write(out, item, choose)
    elif isinstance(v, list | tuple):
        out += _header(len(v), (0x90, 15), ((0xDC, ">H"), (0xDD, ">I")), choose)
        for item in v:
            _write(out, item, choose)
    else:
        raise TypeError(type(v))


# -- the two decoders side by side ---------------------------------------------------------------

@dataclass
class Outcome:
    """What the pipeline would do with a batch: which messages it stores, the rows, the dead
    letters (those found at arrival first, as `Pipeline._seal` orders them)."""

    stored: list[int]
    columns: dict[str, np.ndarray]
    dead: list[tuple[str, str, str, int, bytes]]


def _letter(d: DeadLetter) -> tuple[str, str, str, int, bytes]:
    return d.reason, d.detail, d.topic, d.payload_size, d.payload


def outcome(decoder: Decoder, messages: Sequence[tuple[str, bytes]], received_ms: int) -> Outcome:
    accepted: list[Accepted] = []
    index: dict[int, int] = {}
    dead = []
    for i, (topic, payload) in enumerate(messages):
        result = decoder.accept(topic, payload, received_ms)
        if isinstance(result, Accepted):
            index[id(result)] = i
            accepted.append(result)
        else:
            dead.append(_letter(result))
    batch = decoder.decode(accepted)
    assert batch.rows == sum(len(m.envelope.events) for m in batch.sources)
    return Outcome([index[id(m)] for m in batch.sources], batch.events,
                   dead + [_letter(d) for d in batch.dead_letters])


@dataclass
class _Message:
    """An MQTT message as the pipeline hands it to `accept_many` (only what decoding reads)."""

    topic: str
    payload: bytes
    received_ms: int


def outcome_in_bulk(decoder: Decoder, messages: Sequence[tuple[str, bytes]], received_ms: int) -> Outcome:
    """`outcome` the pipeline's way: one `accept_many` for the batch, messages standing for themselves."""
    results, counts = decoder.accept_many([_Message(topic, payload, received_ms) for topic, payload in messages])
    assert len(results) == len(counts) == len(messages)
    accepted: list[Arrival] = []
    index: dict[int, int] = {}
    dead = []
    for i, (result, count) in enumerate(zip(results, counts, strict=True)):
        if isinstance(result, DeadLetter):
            assert count == 0
            dead.append(_letter(result))
        else:
            assert count > 0
            index[id(result)] = i
            accepted.append(result)
    batch = decoder.decode(accepted)
    assert batch.rows == sum(counts[index[id(m)]] for m in batch.sources)
    return Outcome([index[id(m)] for m in batch.sources], batch.events,
                   dead + [_letter(d) for d in batch.dead_letters])


def _assert_same(got: Outcome, want: Outcome) -> None:
    assert got.stored == want.stored
    assert got.dead == want.dead
    assert list(got.columns) == list(want.columns)
    for name, column in got.columns.items():
        assert column.dtype == want.columns[name].dtype, name
        assert column.tolist() == want.columns[name].tolist(), name


def assert_twins(messages: Sequence[tuple[str, bytes]], received_ms: int, **settings: Any) -> list[bool]:
    """The native decoder accepts a subset of what Python stores; both store and dead-letter the
    same messages, with the same columns and letters, whether accepted one by one or in bulk
    (`accept_many`, as the pipeline does). Returns which messages the native scan took."""
    assert fastdecode.AVAILABLE, "collector._fastdecode is not built: run pip install -e ."
    native, python = Decoder(**settings), Decoder(native=False, **settings)
    tol, future = native.clock_tolerance_ms, native.max_future_ms
    scanned = [fastdecode.count(t, p, received_ms, tol, future) > 0 for t, p in messages]
    status = fastdecode.decode([t for t, _ in messages], [p for _, p in messages], [received_ms] * len(messages),
                               tol, future)[0]
    assert [bool(s) for s in status] == scanned, "count() and decode() disagree"
    got, want = outcome(native, messages, received_ms), outcome(python, messages, received_ms)
    assert {i for i, ok in enumerate(scanned) if ok} <= set(want.stored), "native accepted what Python refuses"
    _assert_same(got, want)
    _assert_same(outcome_in_bulk(native, messages, received_ms), want)
    _assert_same(outcome_in_bulk(python, messages, received_ms), want)
    return scanned
