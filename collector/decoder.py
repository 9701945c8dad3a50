"""Messages → columnar event blocks and dead letters.

Two implementations of one contract. The native one (`collector/_fastdecode.c`, wrapped by
`collector.fastdecode`) is used when it is built: at arrival `accept` only scans a message in C
for its event count (no Python object per event), and `decode` turns every message of a batch
that the extension accepts into columns in one C call. The extension accepts only what the
Python path accepts, with the same column values; everything else (anything unusual, or
invalid) is handed to the Python path below, which decides its fate exactly as it always did.

The Python path: per message the envelope is checked (`proto.telemetry.decode_envelope`).
Events are validated and converted for a whole batch at once: transposed into columns in
C (`zip_longest`), type-checked with `set(map(type, ...))`, converted and range-checked
with numpy, per kind. That fast path is all-or-nothing: if anything in the batch is off,
the precise per-event validator (`proto.telemetry.check_event`) finds which messages are
bad, they become dead letters, and the fast path runs again on the rest.

Order: whichever path decoded a message, `sources` and dead letters follow receive order, and
rows are grouped by message in receive order (events in message order).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from collector import fastdecode
from collector.fastdecode import INT_DTYPES as _INT_DTYPES
from collector.fastdecode import MIN_PLAUSIBLE_MS as _MIN_PLAUSIBLE_MS
from proto.telemetry import (
    FIELD_COLUMNS,
    KINDS,
    MAX_FIELDS,
    MAX_TS_MS,
    Envelope,
    InvalidMessage,
    Reason,
    check_event,
    decode_envelope,
    parse_topic,
)
from warehouse.columns import DEAD_LETTER_COLUMNS, EVENT_COLUMNS


class _FastPathFailed(Exception):
    """Some event in the batch is not well-formed; fall back to per-message checks."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ms: int
    reason: str
    detail: str
    topic: str
    device_id: str
    payload_size: int
    payload: bytes


class Arrival(Protocol):
    """What decoding reads of a message that passed the arrival check: the MQTT message itself
    when the native scan accepted it (no object made per message), else an `Accepted`."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def received_ms(self) -> int: ...


class Accepted:
    """A message that passed the arrival check, waiting in a batch for bulk event decoding.

    `envelope` is decoded on first use: the native scan builds none (it knows the message is
    valid and how many events it has, which is all the batcher needs)."""

    __slots__ = ("_envelope", "event_count", "payload", "received_ms", "topic")

    def __init__(self, envelope: Envelope | None, topic: str, payload: bytes, received_ms: int,
                 event_count: int = -1) -> None:
        self._envelope = envelope
        self.topic = topic
        self.payload = payload
        self.received_ms = received_ms
        self.event_count = event_count if envelope is None else len(envelope.events)

    @property
    def envelope(self) -> Envelope:
        """The decoded envelope (InvalidMessage only if the native scan and Python disagree)."""
        if self._envelope is None:
            self._envelope = decode_envelope(self.payload, self.topic)
        return self._envelope

    def __repr__(self) -> str:
        return f"Accepted({self.topic!r}, {len(self.payload)} bytes, {self.event_count} events)"


@dataclass(slots=True)
class DecodedBatch:
    events: dict[str, np.ndarray]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    sources: list[Arrival] = field(default_factory=list)  # the messages whose events these are

    @property
    def rows(self) -> int:
        return len(self.events["seq"])


def dead_letter(topic: str, payload: bytes, received_ms: int, exc: InvalidMessage,
                keep_bytes: int) -> DeadLetter:
    try:
        device_id = parse_topic(topic)[1]
    except InvalidMessage:
        device_id = ""
    return DeadLetter(received_ms, exc.reason.value, exc.detail, topic[:1024], device_id,
                      len(payload), payload[:keep_bytes])


@dataclass(frozen=True, slots=True)
class Decoder:
    """Stateless; `clock_tolerance_ms` and `max_future_ms` come from ValidationSettings."""

    clock_tolerance_ms: int = 2_000
    max_future_ms: int = 400 * 86_400_000
    dead_letter_bytes: int = 64 * 1024
    native: bool = True  # use collector._fastdecode when it is built; False: the Python path only

    def __post_init__(self) -> None:
        if self.native:
            fastdecode.warn_if_missing()

    @property
    def uses_native(self) -> bool:
        return self.native and fastdecode.AVAILABLE

    def accept(self, topic: str, payload: bytes, received_ms: int) -> Accepted | DeadLetter:
        """Arrival check (it tells the batch its row count): the native scan, else the envelope
        in Python, which also dead-letters what is invalid."""
        if self.native and fastdecode.AVAILABLE:
            n = fastdecode.count(topic, payload, received_ms, self.clock_tolerance_ms, self.max_future_ms)
            if n > 0:
                return Accepted(None, topic, payload, received_ms, n)
        try:
            return Accepted(decode_envelope(payload, topic), topic, payload, received_ms)
        except InvalidMessage as exc:
            return dead_letter(topic, payload, received_ms, exc, self.dead_letter_bytes)

    def accept_many(self, messages: Sequence[Arrival]) -> tuple[list[Arrival | DeadLetter], list[int]]:
        """`accept` for each message, in order, and each one's event count (0 for a dead letter).
        A message the native scan accepts stands for itself, and the scan runs over the list
        without a Python frame or object per message: with one-event messages, those were most
        of the arrival cost."""
        if not (self.native and fastdecode.AVAILABLE):
            results: list[Arrival | DeadLetter] = [self.accept(m.topic, m.payload, m.received_ms) for m in messages]
            return results, [_events_of(r) for r in results]
        counts = list(map(fastdecode.count, [m.topic for m in messages], [m.payload for m in messages],
                          [m.received_ms for m in messages], itertools.repeat(self.clock_tolerance_ms),
                          itertools.repeat(self.max_future_ms)))
        results = list(messages)
        if min(counts, default=1) > 0:
            return results, counts
        for i, n in enumerate(counts):
            if n <= 0:  # the Python path decides: Accepted with its envelope, or a dead letter
                msg = messages[i]
                result = self.accept(msg.topic, msg.payload, msg.received_ms)
                results[i] = result
                counts[i] = _events_of(result)
        return results, counts

    def decode(self, messages: Sequence[Arrival]) -> DecodedBatch:
        if not messages or not (self.native and fastdecode.AVAILABLE):
            return self._decode_python([_as_accepted(m) for m in messages])
        status, rows, columns = fastdecode.decode([m.topic for m in messages], [m.payload for m in messages],
                                                  [m.received_ms for m in messages], self.clock_tolerance_ms,
                                                  self.max_future_ms)
        if status.count(0) == 0:
            return DecodedBatch(columns, [], list(messages))
        slow_in = [_as_accepted(m) for m, ok in zip(messages, status, strict=True) if not ok]
        return _merge(messages, status, rows, columns, slow_in, self._decode_python(slow_in))

    def _decode_python(self, messages: Sequence[Accepted]) -> DecodedBatch:
        try:
            return DecodedBatch(self._columns(messages), [], [*messages])
        except (_FastPathFailed, InvalidMessage):  # InvalidMessage: a lazy envelope, see Accepted
            pass
        good: list[Accepted] = []
        dead: list[DeadLetter] = []
        for msg in messages:
            problem = self._check_precisely(msg)
            if problem is None:
                good.append(msg)
            else:
                dead.append(dead_letter(msg.topic, msg.payload, msg.received_ms, problem,
                                        self.dead_letter_bytes))
        try:
            return DecodedBatch(self._columns(good), dead, [*good])
        except _FastPathFailed as exc:  # the two validators disagree: a bug, not bad input
            raise AssertionError(f"fast path rejected what check_event accepted: {exc}") from exc

    # -- precise path ------------------------------------------------------------------------

    def _check_precisely(self, msg: Accepted) -> InvalidMessage | None:
        try:
            env = msg.envelope
            offset = self._clock_offset(msg.received_ms, env.sent_ms)
            for event in env.events:
                check_event(event)
                corrected = event[1] + offset
                if not _MIN_PLAUSIBLE_MS <= corrected <= msg.received_ms + self.max_future_ms:
                    raise InvalidMessage(Reason.IMPOSSIBLE_VALUE,
                                         f"corrected time {corrected} outside 2000-01-01..now+max_future")
        except InvalidMessage as exc:
            return exc
        return None

    def _clock_offset(self, received_ms: int, sent_ms: int) -> int:
        offset = received_ms - sent_ms
        return offset if abs(offset) > self.clock_tolerance_ms else 0

    # -- fast path ---------------------------------------------------------------------------

    def _columns(self, messages: Sequence[Accepted]) -> dict[str, np.ndarray]:
        if not messages:
            return empty_event_columns()
        envs = [m.envelope for m in messages]
        counts = np.fromiter((len(e.events) for e in envs), dtype=np.int64, count=len(envs))
        n = int(counts.sum())
        events: list[Any] = list(itertools.chain.from_iterable(e.events for e in envs))
        if set(map(type, events)) != {list}:
            raise _FastPathFailed("an event is not an array")
        cols = list(itertools.zip_longest(*events))
        if len(cols) < 2:
            raise _FastPathFailed("an event lacks kind or timestamp")

        out: dict[str, np.ndarray] = {}
        msg_index = np.repeat(np.arange(len(envs)), counts)
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        out["household_id"] = np.array([e.household_id for e in envs], dtype=np.uint64)[msg_index]
        out["device_id"] = _objects([e.device_id for e in envs])[msg_index]
        out["seq"] = (np.array([e.seq0 for e in envs], dtype=np.uint64)[msg_index]
                      + (np.arange(n) - first[msg_index]).astype(np.uint64))
        kind = _ints(cols[0], np.int64, 1, max(KINDS))
        out["kind"] = kind.astype(np.int8)
        device_ts = _ints(cols[1], np.int64, 0, MAX_TS_MS)
        out["device_ts_ms"] = device_ts
        received = np.array([m.received_ms for m in messages], dtype=np.int64)
        sent = np.array([e.sent_ms for e in envs], dtype=np.int64)
        offset = received - sent
        offset[np.abs(offset) <= self.clock_tolerance_ms] = 0
        corrected = device_ts + offset[msg_index]
        received_per_event = received[msg_index]
        if ((corrected < _MIN_PLAUSIBLE_MS).any()
                or (corrected > received_per_event + self.max_future_ms).any()):
            raise _FastPathFailed("implausible corrected time")
        out["ts_ms"] = corrected
        out["received_ms"] = received_per_event
        out["region"] = _objects([e.region for e in envs])[msg_index]
        out["firmware"] = _objects([e.firmware for e in envs])[msg_index]
        lengths = np.fromiter(map(len, events), dtype=np.int64, count=n)
        self._fields(kind, cols[2:], lengths, out)
        return out

    def _fields(self, kind: np.ndarray, field_cols: list[tuple[Any, ...]], lengths: np.ndarray,
                out: dict[str, np.ndarray]) -> None:
        n = len(kind)
        for name in FIELD_COLUMNS:
            out[name] = _default_column(name, n)
        objects = [np.fromiter(c, dtype=object, count=n) for c in field_cols[:MAX_FIELDS]]
        for code in np.unique(kind).tolist():
            spec = KINDS[code]
            rows = np.flatnonzero(kind == code)
            for pos, fld in enumerate(spec.fields):
                if pos >= len(objects):
                    values: np.ndarray = np.full(len(rows), None, dtype=object)
                else:
                    values = objects[pos][rows]
                # Absent means the event is shorter, never an explicit nil (zip_longest pads
                # with None too): a nil is a value of the wrong type, as check_event says.
                missing = lengths[rows] <= pos + 2
                if missing.any():
                    if pos < spec.required:
                        raise _FastPathFailed(f"{spec.name}: missing {fld.column}")
                    values = values[~missing]
                    target = rows[~missing]
                else:
                    target = rows
                if not len(values):
                    continue
                if fld.type is int:
                    dtype = out[fld.column].dtype
                    out[fld.column][target] = _ints(values, dtype, 0, fld.max)
                else:
                    if set(map(type, values)) != {str} or max(map(len, values)) > fld.max:
                        raise _FastPathFailed(f"{spec.name}.{fld.column}")
                    out[fld.column][target] = values


def _as_accepted(msg: Arrival) -> Accepted:
    """The Python path's view of a message (its envelope decoded on first use)."""
    return msg if isinstance(msg, Accepted) else Accepted(None, msg.topic, msg.payload, msg.received_ms)


def _merge(messages: Sequence[Arrival], status: bytes, rows: np.ndarray, native: dict[str, np.ndarray],
           slow_in: list[Accepted], slow: DecodedBatch) -> DecodedBatch:
    """The native and the Python results of one batch, in receive order (see the module doc);
    `slow_in` are the messages with status 0, as handed to the Python path."""
    if not slow.sources:
        return DecodedBatch(native, slow.dead_letters, [m for m, ok in zip(messages, status, strict=True) if ok])
    stored = {id(m) for m in slow.sources}
    slow_next = iter(slow_in)
    sources: list[Arrival] = []
    starts: list[int] = []  # where each source's rows are in native + slow
    lengths: list[int] = []
    native_at, slow_at = 0, len(native["seq"])
    for msg, ok, n in zip(messages, status, rows.tolist(), strict=True):
        if ok:
            starts.append(native_at)
            native_at += n
        else:
            msg = next(slow_next)
            if id(msg) not in stored:
                continue
            n = len(msg.envelope.events)
            starts.append(slow_at)
            slow_at += n
        sources.append(msg)
        lengths.append(n)
    length = np.array(lengths, dtype=np.int64)
    index = np.repeat(np.array(starts, dtype=np.int64) - (np.cumsum(length) - length), length) + np.arange(
        int(length.sum()))
    events = {name: np.concatenate((column, slow.events[name]))[index] for name, column in native.items()}
    return DecodedBatch(events, slow.dead_letters, sources)


def _objects(values: list[Any]) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))


def _ints(values: Sequence[Any] | np.ndarray, dtype: Any, low: int, high: int) -> np.ndarray:
    """Strictly-typed integer column: Python ints only (no bool, float, str), within range."""
    if set(map(type, values)) != {int}:
        raise _FastPathFailed("non-integer where an integer belongs")
    try:
        arr = np.array(values if isinstance(values, np.ndarray) else list(values), dtype=np.uint64
                       if dtype == np.uint64 else np.int64)
    except OverflowError:
        raise _FastPathFailed("integer out of range") from None
    if len(arr) and (arr.min() < low or arr.max() > high):
        raise _FastPathFailed("integer out of range")
    return arr.astype(dtype, copy=False)


def _default_column(name: str, n: int) -> np.ndarray:
    ch_type = EVENT_COLUMNS[name]
    if ch_type == "String":
        return np.full(n, "", dtype=object)
    return np.zeros(n, dtype=_INT_DTYPES[ch_type])


def empty_event_columns() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, ch_type in EVENT_COLUMNS.items():
        if ch_type == "String":
            out[name] = np.empty(0, dtype=object)
        elif ch_type.startswith("Enum8"):
            out[name] = np.empty(0, dtype=np.int8)
        else:
            out[name] = np.empty(0, dtype=_INT_DTYPES[ch_type])
    return out


def dead_letter_columns(letters: Sequence[DeadLetter]) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for name, ch_type in DEAD_LETTER_COLUMNS.items():
        values = [getattr(d, name) for d in letters]
        cols[name] = (np.fromiter(values, dtype=object, count=len(values)) if ch_type == "String"
                      else np.array(values, dtype=_INT_DTYPES[ch_type]))
    return cols


def _events_of(result: Arrival | DeadLetter) -> int:
    return result.event_count if isinstance(result, Accepted) else 0
