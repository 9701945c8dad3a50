"""Messages → columnar event blocks and dead letters.

Per message, only the envelope is checked in Python (`proto.telemetry.decode_envelope`).
Events are validated and converted for a whole batch at once: transposed into columns in
C (`zip_longest`), type-checked with `set(map(type, ...))`, converted and range-checked
with numpy, per kind. That fast path is all-or-nothing: if anything in the batch is off,
the precise per-event validator (`proto.telemetry.check_event`) finds which messages are
bad, they become dead letters, and the fast path runs again on the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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

_INT_DTYPES = {"UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
               "Int64": np.int64}
_MIN_PLAUSIBLE_MS = 946_684_800_000  # 2000-01-01: a corrected time before this is garbage


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


@dataclass(slots=True)
class Accepted:
    """A message whose envelope is valid, waiting in a batch for bulk event decoding."""

    envelope: Envelope
    topic: str
    payload: bytes
    received_ms: int


@dataclass(slots=True)
class DecodedBatch:
    events: dict[str, np.ndarray]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    sources: list[Accepted] = field(default_factory=list)  # the messages whose events these are

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

    def accept(self, topic: str, payload: bytes, received_ms: int) -> Accepted | DeadLetter:
        """Envelope check, done as each message arrives (it tells the batch its row count)."""
        try:
            return Accepted(decode_envelope(payload, topic), topic, payload, received_ms)
        except InvalidMessage as exc:
            return dead_letter(topic, payload, received_ms, exc, self.dead_letter_bytes)

    def decode(self, messages: Sequence[Accepted]) -> DecodedBatch:
        try:
            return DecodedBatch(self._columns(messages), [], list(messages))
        except _FastPathFailed:
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
            return DecodedBatch(self._columns(good), dead, good)
        except _FastPathFailed as exc:  # the two validators disagree: a bug, not bad input
            raise AssertionError(f"fast path rejected what check_event accepted: {exc}") from exc

    # -- precise path ------------------------------------------------------------------------

    def _check_precisely(self, msg: Accepted) -> InvalidMessage | None:
        env = msg.envelope
        offset = self._clock_offset(msg.received_ms, env.sent_ms)
        try:
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
