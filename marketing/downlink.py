"""Messages for the box: topics, message ids and payloads, as agent/downlink.py accepts them.

A message goes to `stb/v1/{region}/{device_id}/messages` (proto/TELEMETRY.md, "Downlink") as one
msgpack map

    {"v": 1, "id", "campaign", "variant", "title", "body", "action", "expires"}

and the box shows it at most once per `id`. So an id must be the same when a send is repeated
(after a crash between publishing and recording, the engine publishes again and the box drops the
copy) and different for every (campaign, household, wave). `message_ids` gets both from a keyed
bijection of the 64-bit household id: unique by construction (no birthday collisions at 1M), and
the household id does not appear in it (an id travels to the box and back in its events).

`encode` checks the limits the agent enforces (a payload it would drop as invalid is an error
here, not a silent loss on the box). `encode_many` is the same map for many ids of one variant:
it packs the shared part once and splices each id in, about 6x faster than a map per message
(tests/unit/test_mkt_downlink.py checks both give the same bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

MAX_TEXT = 1024   # title, body (characters): agent/downlink.py
MAX_ID = 128      # id, campaign, variant (characters): agent/downlink.py
_FORBIDDEN = frozenset("/+#")
_M1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finaliser: an invertible 64-bit mix
_M2 = np.uint64(0x94D049BB133111EB)


def topic(region: str, device_id: str) -> str:
    """The downlink topic of one box; ValueError for a part that is empty or would change the
    topic's shape (`/`) or be a wildcard (`+`, `#`)."""
    for name, part in (("region", region), ("device_id", device_id)):
        if not part or not _FORBIDDEN.isdisjoint(part) or "\0" in part:
            raise ValueError(f"{name} must be non-empty without '/', '+', '#' or NUL")
    return f"stb/v1/{region}/{device_id}/messages"


def message_ids(campaign: str, household_ids: np.ndarray, waves: np.ndarray, *,
                key: bytes = b"") -> np.ndarray:
    """`"{campaign}.{wave}.{16 hex digits}"` per household (an object array of str).

    The hex part is a bijection of the household id keyed by blake2b(campaign[, key]): distinct
    households always get distinct ids, the same (campaign, household, wave) always the same one.
    Without `key` anyone holding this code and a campaign name can invert it; give a secret
    `key` where ids must not be linkable to households outside the operator."""
    households = np.asarray(household_ids, dtype=np.uint64)
    wave_numbers = np.asarray(waves, dtype=np.int64)
    if households.shape != wave_numbers.shape or households.ndim != 1:
        raise ValueError("household_ids and waves must be 1-D arrays of the same length")
    if len(f"{campaign}.{int(wave_numbers.max(initial=0))}.") + 16 > MAX_ID:
        raise ValueError(f"campaign id too long for a message id of at most {MAX_ID} characters")
    digest = hashlib.blake2b(campaign.encode(), key=key[:64], digest_size=16, person=b"stb-msg-id").digest()
    k1 = np.uint64(int.from_bytes(digest[:8], "little"))
    k2 = np.uint64(int.from_bytes(digest[8:], "little"))
    mixed = _mix(_mix(households ^ k1) ^ k2)
    out = np.empty(len(households), dtype=object)
    for wave in np.unique(wave_numbers):
        at = np.flatnonzero(wave_numbers == wave)
        prefix = f"{campaign}.{int(wave)}."
        out[at] = [f"{prefix}{x:016x}" for x in mixed[at].tolist()]
    return out


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, each step invertible (xor-shift, odd multiplier) modulo 2**64."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def encode(message_id: str, campaign: str, variant: str, title: str, body: str,
           action: Mapping[str, Any], expires_ms: int) -> bytes:
    """One payload; ValueError for anything agent/downlink.py would drop as invalid."""
    _check(campaign, variant, title, body, action, expires_ms)
    _check_id(message_id)
    return msgpack.packb({"v": 1, "id": message_id, "campaign": campaign, "variant": variant, "title": title,
                          "body": body, "action": dict(action), "expires": expires_ms}, use_bin_type=True)


def encode_many(message_ids: Sequence[str], campaign: str, variant: str, title: str, body: str,
                action: Mapping[str, Any], expires_ms: int) -> list[bytes]:
    """`[encode(i, campaign, ...) for i in message_ids]`, byte for byte, with the shared part
    packed once: a map header, `"v": 1, "id":`, then the id, then the rest as one block."""
    _check(campaign, variant, title, body, action, expires_ms)
    head = b"\x88" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("id")
    tail = b"".join(msgpack.packb(k, use_bin_type=True) + msgpack.packb(v, use_bin_type=True) for k, v in (
        ("campaign", campaign), ("variant", variant), ("title", title), ("body", body),
        ("action", dict(action)), ("expires", expires_ms)))
    out = []
    for message_id in message_ids:
        _check_id(message_id)
        raw = message_id.encode()
        n = len(raw)
        out.append(head + _str_header(n) + raw + tail)
    return out


def _str_header(n: int) -> bytes:
    """msgpack's str header for n UTF-8 bytes (an id is at most 128 characters: < 64 KiB)."""
    if n < 32:
        return bytes((0xA0 | n,))
    return bytes((0xD9, n)) if n < 256 else b"\xda" + n.to_bytes(2, "big")


def _check_id(message_id: str) -> None:
    if type(message_id) is not str or not message_id or len(message_id) > MAX_ID:
        raise ValueError(f"id: a non-empty string of at most {MAX_ID} characters")


def _check(campaign: str, variant: str, title: str, body: str, action: Mapping[str, Any],
           expires_ms: int) -> None:
    for name, value, limit in (("campaign", campaign, MAX_ID), ("variant", variant, MAX_ID),
                               ("title", title, MAX_TEXT), ("body", body, MAX_TEXT)):
        if type(value) is not str or len(value) > limit:
            raise ValueError(f"{name}: a string of at most {limit} characters")
    if not isinstance(action, Mapping) or not all(type(k) is str for k in action):
        raise ValueError("action: a map with string keys")
    if type(expires_ms) is not int or expires_ms <= 0:
        raise ValueError("expires_ms: unix milliseconds (a positive int)")
