"""Column layout of the tables the collector writes. Codec and schema both read this.

Columns are passed between modules as `Mapping[str, numpy.ndarray]`: integer columns as
numpy integer arrays, string columns as object arrays of `str` (`payload` holds `bytes`).
"""

from __future__ import annotations

from typing import Final

from proto.telemetry import FIELD_COLUMNS, KINDS, U8, U16, U32

KIND_ENUM: Final = "Enum8(" + ", ".join(f"'{k.name}' = {k.code}" for k in KINDS.values()) + ")"


def _int_type(maximum: int) -> str:
    for limit, name in ((U8, "UInt8"), (U16, "UInt16"), (U32, "UInt32")):
        if maximum <= limit:
            return name
    return "UInt64"


# Identity and time of every event. (device_id, seq) identifies an event; a redelivery
# carries the same household and device time, so those are safe in the sorting key.
ENVELOPE_COLUMNS: Final[dict[str, str]] = {
    "household_id": "UInt64",
    "device_id": "String",
    "seq": "UInt64",
    "kind": KIND_ENUM,
    "device_ts_ms": "Int64",   # the STB's clock, as sent
    "ts_ms": "Int64",          # corrected: device_ts_ms + (received_ms - sent_ms) beyond a tolerance
    "received_ms": "Int64",    # collector clock when the message arrived
    "region": "String",
    "firmware": "String",
}

FIELD_COLUMN_TYPES: Final[dict[str, str]] = {
    name: ("String" if f.type is str else _int_type(f.max)) for name, f in FIELD_COLUMNS.items()
}

# What the collector inserts into `events`, in this order.
EVENT_COLUMNS: Final[dict[str, str]] = {**ENVELOPE_COLUMNS, **FIELD_COLUMN_TYPES}

DEAD_LETTER_COLUMNS: Final[dict[str, str]] = {
    "received_ms": "Int64",
    "reason": "String",       # proto.telemetry.Reason value
    "detail": "String",       # human-readable, first error found
    "topic": "String",
    "device_id": "String",    # from the topic when it parses, else ''
    "payload_size": "UInt32", # size of the original payload
    "payload": "String",      # raw bytes, truncated to the configured limit
}
