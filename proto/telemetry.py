"""Telemetry wire format v1: topic, envelope, event kinds, limits. See TELEMETRY.md.

One module for both ends: the agent encodes with `encode_batch`, the collector decodes
envelopes with `decode_envelope` and validates events against `KINDS`. `check_event` is
the precise, per-event reference validator; the collector's vectorised decoder must agree
with it (tests check that they do).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import msgpack

WIRE_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_EVENTS_PER_BATCH: Final = 1000
TOPIC_FILTER: Final = "stb/v1/+/+/events"

REGION_RE: Final = re.compile(r"[a-z0-9-]{1,32}")
DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOPIC_RE: Final = re.compile(r"stb/v1/([a-z0-9-]{1,32})/([A-Za-z0-9._-]{1,64})/events")

U8: Final = 2**8 - 1
U16: Final = 2**16 - 1
U32: Final = 2**32 - 1
U64: Final = 2**64 - 1
MAX_FIRMWARE_LEN: Final = 64
MAX_TEXT_LEN: Final = 128
# Device timestamps: non-negative and before 2100 (a clock reset to 1970 is legal and
# corrected from `sent`; a timestamp in the year 3000 is not a clock error, it is garbage).
MAX_TS_MS: Final = 4_102_444_800_000
MAX_DURATION_S: Final = 7 * 24 * 3600


class Reason(StrEnum):
    """Why a message went to the dead-letter table (column `dead_letters.reason`)."""

    BAD_TOPIC = "bad_topic"
    OVERSIZE = "oversize"
    NOT_MSGPACK = "not_msgpack"
    BAD_ENVELOPE = "bad_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    DEVICE_MISMATCH = "device_mismatch"
    TOO_MANY_EVENTS = "too_many_events"
    BAD_EVENT = "bad_event"
    UNKNOWN_KIND = "unknown_kind"
    IMPOSSIBLE_VALUE = "impossible_value"
    STORE_REJECTED = "store_rejected"


class InvalidMessage(ValueError):
    """A message that can never be stored; carries the dead-letter reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Field:
    """One positional event field and the `events` column it fills."""

    column: str
    type: type  # int or str
    max: int  # inclusive upper bound for ints, max length for str
    default: int | str = 0


@dataclass(frozen=True, slots=True)
class KindSpec:
    code: int
    name: str
    fields: tuple[Field, ...]
    required: int  # fields before this index are mandatory; the rest default when absent


def _u(column: str, maximum: int) -> Field:
    return Field(column, int, maximum, 0)


def _s(column: str) -> Field:
    return Field(column, str, MAX_TEXT_LEN, "")


KINDS: Final[dict[int, KindSpec]] = {
    k.code: k
    for k in (
        KindSpec(1, "view", (_u("channel_id", U32), _u("programme_id", U64),
                             _u("duration_s", MAX_DURATION_S), _u("end_reason", 2)), required=3),
        KindSpec(2, "tune", (_u("from_channel_id", U32), _u("channel_id", U32),
                             _u("tune_method", 3)), required=2),
        KindSpec(3, "epg_click", (_s("screen"), _s("action"), _u("programme_id", U64)), required=2),
        KindSpec(4, "vod_play", (_s("asset_id"), _u("position_s", MAX_DURATION_S),
                                 _u("duration_s", MAX_DURATION_S)), required=1),
        KindSpec(5, "power", (_u("power_state", 2),), required=1),
        KindSpec(6, "rec_impression", (_s("request_id"), _s("model_version"), _u("programme_id", U64),
                                       _u("rank", U16)), required=3),
        KindSpec(7, "rec_click", (_s("request_id"), _u("programme_id", U64), _u("rank", U16)), required=2),
        # Messages for the box (marketing downlink): what the firmware showed, and the answer.
        KindSpec(8, "msg_shown", (_s("message_id"), _s("campaign"), _s("variant")), required=3),
        KindSpec(9, "msg_response", (_s("message_id"), _s("campaign"), _s("variant"), _u("response", 4)),
                 required=4),
    )
}
KIND_BY_NAME: Final = {k.name: k for k in KINDS.values()}
MAX_FIELDS: Final = max(len(k.fields) for k in KINDS.values())

# Every per-kind column with its type and default, in a stable order (the `events` table
# has one column for each, shared between kinds that carry the same thing).
FIELD_COLUMNS: Final[dict[str, Field]] = {}
for _spec in KINDS.values():
    for _f in _spec.fields:
        _known = FIELD_COLUMNS.setdefault(_f.column, _f)
        assert _known.type is _f.type, f"column {_f.column} has two types"
        if _f.max > _known.max:  # a shared column is as wide as its widest use
            FIELD_COLUMNS[_f.column] = _f


# --- topic -------------------------------------------------------------------------------

def topic_for(region: str, device_id: str) -> str:
    if not REGION_RE.fullmatch(region):
        raise ValueError(f"region {region!r} must match [a-z0-9-]{{1,32}}")
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise ValueError(f"device_id {device_id!r} must match [A-Za-z0-9._-]{{1,64}}")
    return f"stb/v1/{region}/{device_id}/events"


def parse_topic(topic: str) -> tuple[str, str]:
    """(region, device_id) of an events topic, or InvalidMessage(BAD_TOPIC)."""
    m = _TOPIC_RE.fullmatch(topic)
    if m is None:
        raise InvalidMessage(Reason.BAD_TOPIC,
                             f"topic {topic[:200]!r} is not stb/v1/<region>/<device>/events")
    return m.group(1), m.group(2)


# --- encoding (agent side) -----------------------------------------------------------------

def encode_batch(*, device_id: str, household_id: int, firmware: str, seq0: int, sent_ms: int,
                 events: Sequence[Sequence[Any]]) -> bytes:
    """Encode one wire-format v1 payload. `events` are already positional arrays."""
    if not events or len(events) > MAX_EVENTS_PER_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_EVENTS_PER_BATCH} events, not {len(events)}")
    payload: bytes = msgpack.packb(
        {"v": WIRE_VERSION, "dev": device_id, "hh": household_id, "fw": firmware,
         "seq0": seq0, "sent": sent_ms, "ev": list(events)},
        use_bin_type=True,
    )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return payload


def make_event(kind: str | int, ts_ms: int, *fields: Any) -> list[Any]:
    """Positional event array `[kind, ts_ms, field...]`, checked against the spec."""
    spec = KINDS[kind] if isinstance(kind, int) else KIND_BY_NAME[kind]
    event = [spec.code, ts_ms, *fields]
    check_event(event)
    return event


# --- decoding (collector side) -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded, header-validated batch; events are still raw positional arrays."""

    region: str
    device_id: str
    household_id: int
    firmware: str
    seq0: int
    sent_ms: int
    events: list[Any]


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass and is not a wire int


def decode_envelope(payload: bytes, topic: str) -> Envelope:
    """Check topic, size, msgpack and header fields. Events are checked later, in bulk."""
    region, topic_device = parse_topic(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage(Reason.OVERSIZE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise InvalidMessage(Reason.NOT_MSGPACK, f"{type(exc).__name__}: {exc}"[:300]) from None
    if type(doc) is not dict:
        raise InvalidMessage(Reason.BAD_ENVELOPE, f"payload is a {type(doc).__name__}, not a map")
    version = doc.get("v")
    if not _is_int(version):
        raise InvalidMessage(Reason.BAD_ENVELOPE, "missing or non-integer 'v'")
    if version != WIRE_VERSION:
        raise InvalidMessage(Reason.UNSUPPORTED_VERSION, f"wire version {version}, this collector reads 1")
    header: list[Any] = [doc.get(k) for k in ("dev", "hh", "fw", "seq0", "sent", "ev")]
    dev, hh, fw, seq0, sent, ev = header
    if type(dev) is not str:
        raise InvalidMessage(Reason.BAD_ENVELOPE, "'dev' must be a string")
    if dev != topic_device:
        raise InvalidMessage(Reason.DEVICE_MISMATCH, f"dev {dev[:64]!r} != topic device {topic_device!r}")
    if type(fw) is not str:
        raise InvalidMessage(Reason.BAD_ENVELOPE, "'fw' must be a string")
    for name, value in (("hh", hh), ("seq0", seq0), ("sent", sent)):
        if not _is_int(value):
            raise InvalidMessage(Reason.BAD_ENVELOPE, f"'{name}' must be an integer")
    if type(ev) is not list:
        raise InvalidMessage(Reason.BAD_ENVELOPE, "'ev' must be an array")
    if not ev:
        raise InvalidMessage(Reason.BAD_ENVELOPE, "'ev' is empty")
    if len(ev) > MAX_EVENTS_PER_BATCH:
        raise InvalidMessage(Reason.TOO_MANY_EVENTS, f"{len(ev)} events > {MAX_EVENTS_PER_BATCH}")
    if len(fw) > MAX_FIRMWARE_LEN:
        raise InvalidMessage(Reason.IMPOSSIBLE_VALUE, f"'fw' longer than {MAX_FIRMWARE_LEN}")
    if not 0 <= hh <= U64:
        raise InvalidMessage(Reason.IMPOSSIBLE_VALUE, f"household id {hh} is not a uint64")
    if not 0 <= seq0 or seq0 + len(ev) - 1 > U64:
        raise InvalidMessage(Reason.IMPOSSIBLE_VALUE, f"seq0 {seq0} is not a uint64 for {len(ev)} events")
    if not 0 < sent <= MAX_TS_MS:
        raise InvalidMessage(Reason.IMPOSSIBLE_VALUE, f"'sent' {sent} is not a plausible unix ms time")
    return Envelope(region, dev, hh, fw, seq0, sent, ev)


def check_event(event: object) -> KindSpec:
    """Validate one positional event precisely; return its kind or raise InvalidMessage."""
    if type(event) is not list or len(event) < 2:
        raise InvalidMessage(Reason.BAD_EVENT, "an event is an array [kind, ts_ms, field...]")
    kind, ts = event[0], event[1]
    if not _is_int(kind):
        raise InvalidMessage(Reason.BAD_EVENT, f"event kind {kind!r} is not an integer")
    spec = KINDS.get(kind)
    if spec is None:
        raise InvalidMessage(Reason.UNKNOWN_KIND, f"event kind {kind} is not known to wire v1")
    if not _is_int(ts):
        raise InvalidMessage(Reason.BAD_EVENT, f"{spec.name}: ts_ms is not an integer")
    if not 0 <= ts <= MAX_TS_MS:
        raise InvalidMessage(Reason.IMPOSSIBLE_VALUE, f"{spec.name}: ts_ms {ts} out of range")
    given = event[2:]
    if len(given) < spec.required:
        raise InvalidMessage(Reason.BAD_EVENT, f"{spec.name}: {len(given)} fields, needs {spec.required}")
    for field, value in zip(spec.fields, given, strict=False):
        if field.type is int:
            if not _is_int(value):
                raise InvalidMessage(Reason.BAD_EVENT, f"{spec.name}.{field.column} must be an integer")
            if not 0 <= value <= field.max:
                raise InvalidMessage(Reason.IMPOSSIBLE_VALUE,
                                     f"{spec.name}.{field.column}={value} outside 0..{field.max}")
        else:
            if type(value) is not str:
                raise InvalidMessage(Reason.BAD_EVENT, f"{spec.name}.{field.column} must be a string")
            if len(value) > field.max:
                raise InvalidMessage(Reason.IMPOSSIBLE_VALUE,
                                     f"{spec.name}.{field.column} longer than {field.max}")
    return spec
