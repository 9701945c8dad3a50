"""The native bulk decoder (`collector/_fastdecode.c`), configured from the wire contract.

`AVAILABLE` says whether the extension was built. `count` is the per-message scan done at
arrival (event count, or -1: hand the message to the Python path); `decode` turns a batch into
columns for the messages the extension accepts, in their order, and says which those are.
What the extension may accept, and why its columns equal the Python fast path's: see the C file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np

from proto.telemetry import (
    FIELD_COLUMNS,
    KINDS,
    MAX_EVENTS_PER_BATCH,
    MAX_FIRMWARE_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_TS_MS,
    WIRE_VERSION,
)
from stbcommon.native import NotBuiltWarning, load_optional
from warehouse.columns import EVENT_COLUMNS

log = logging.getLogger(__name__)

INT_DTYPES: Final = {"UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
                     "Int64": np.int64}
MIN_PLAUSIBLE_MS: Final = 946_684_800_000  # 2000-01-01: a corrected time before this is garbage

_native, _import_error = load_optional("collector._fastdecode")  # not built: the Python path does it all
AVAILABLE: Final = _native is not None
_not_built = NotBuiltWarning(log, "collector._fastdecode", _import_error,
                             "decoding in pure Python, several times slower")
_FIELDS: Final = list(FIELD_COLUMNS)
# Little-endian, as the extension writes them (the same dtypes as the native ones on x86/ARM).
_FIELD_DTYPES: Final = {name: np.dtype(INT_DTYPES[EVENT_COLUMNS[name]]).newbyteorder("<") for name in _FIELDS
                        if EVENT_COLUMNS[name] != "String"}
_FIXED: Final = (("household_id", "<u8"), ("seq", "<u8"), ("kind", "i1"), ("device_ts_ms", "<i8"),
                 ("ts_ms", "<i8"), ("received_ms", "<i8"))


def _configure() -> None:
    widths = [0 if name not in _FIELD_DTYPES else _FIELD_DTYPES[name].itemsize for name in _FIELDS]
    kinds = [(spec.code, spec.required, [(_FIELDS.index(f.column), f.type is str, f.max) for f in spec.fields])
             for spec in KINDS.values()]
    _native.configure(kinds, widths, (MAX_PAYLOAD_BYTES, MAX_EVENTS_PER_BATCH, MAX_FIRMWARE_LEN, MAX_TS_MS,
                                      MIN_PLAUSIBLE_MS, WIRE_VERSION))


if AVAILABLE:
    _configure()


def warn_if_missing() -> None:
    """Say once per process that the slower decoder is in use, and why."""
    if not AVAILABLE:
        _not_built()


def _count_missing(topic: str, payload: bytes, received_ms: int, tolerance_ms: int, max_future_ms: int) -> int:
    return -1


# count(topic, payload, received_ms, tolerance_ms, max_future_ms): the message's event count if
# the extension accepts it, else -1. The C function itself: it runs once per message.
count: Callable[[str, bytes, int, int, int], int] = _native.count if AVAILABLE else _count_missing


def decode(topics: list[str], payloads: list[bytes], received: list[int], tolerance_ms: int,
           max_future_ms: int) -> tuple[bytes, np.ndarray, dict[str, np.ndarray]]:
    """(status: one byte per message, 1 = decoded here; rows per message; columns of those)."""
    status, counts, fixed, fields, devices, regions, firmwares = _native.decode(
        payloads, topics, received, tolerance_ms, max_future_ms)
    rows = np.frombuffer(counts, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for (name, dtype), buf in zip(_FIXED, fixed, strict=True):
        out[name] = np.frombuffer(buf, dtype=dtype)
    n = len(out["seq"])
    # One str object per message, repeated over its events by numpy (runs of one pointer).
    per_message = np.repeat(np.arange(len(devices)), rows[rows > 0])
    out["device_id"] = _objects(devices)[per_message]
    out["region"] = _objects(regions)[per_message]
    out["firmware"] = _objects(firmwares)[per_message]
    for name, value in zip(_FIELDS, fields, strict=True):
        if name in _FIELD_DTYPES:
            out[name] = np.frombuffer(value, dtype=_FIELD_DTYPES[name])
        else:
            where, texts = value
            column = np.empty(n, dtype=object)
            column.fill("")  # one shared "" (np.full is several times slower on object arrays)
            if texts:
                column[np.frombuffer(where, dtype=np.int64)] = _objects(texts)
            out[name] = column
    return status, rows, {name: out[name] for name in EVENT_COLUMNS}


def _objects(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))
