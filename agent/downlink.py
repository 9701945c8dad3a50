"""Messages for the box (campaigns on the TV): check, deduplicate, keep, hand to the firmware.

The operator publishes to `stb/v1/{region}/{device}/messages` at QoS 1 with an MQTT message
expiry; the broker queues for the agent's persistent session while the box is off. Each
payload is a msgpack map (proto/TELEMETRY.md, "Downlink"):

    {"v": 1, "id": str, "campaign": str, "variant": str, "title": str, "body": str,
     "action": map, "expires": unix ms}

Rules (../shared/CONTRACTS.md, the box's side):
- a message reaches the firmware at most once per box, by `id`, across restarts: an id is
  recorded as delivered (on disk) *before* it is handed over, so a crash in between loses the
  message rather than showing it twice;
- never after `expires`;
- while nobody listens (no UI client connected, no callback) messages are kept, newest
  `keep` (100), on disk until they expire, and handed to the next listener, oldest first.

State is one small file, `downlink.msgpack` in the agent's state folder, rewritten whole
(write, fsync, rename) on every change: messages are a few a day, and a torn write leaves
the previous version. QoS 1 redeliveries and an operator's resend are dropped by id.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from agent.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
MAX_TEXT = 1024                  # title, body: generous for a TV overlay, bounded for the box
MAX_ID = 128
_STATE_FILE = "downlink.msgpack"
_REMEMBER_DELIVERED = 10_000     # ids kept after delivery (until they expire), newest first


class InvalidDownlink(ValueError):
    """A downlink payload that breaks the contract: counted and dropped."""


@dataclass(frozen=True, slots=True)
class Downlink:
    """One message for the firmware; `doc` is the map as published (what the UI receives)."""

    id: str
    expires_ms: int
    doc: dict[str, Any]


def parse(payload: bytes) -> Downlink:
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise InvalidDownlink(f"not msgpack: {type(exc).__name__}") from None
    if type(doc) is not dict:
        raise InvalidDownlink("not a map")
    if doc.get("v") != 1 or type(doc.get("v")) is not int:
        raise InvalidDownlink(f"unsupported version {doc.get('v')!r}")
    for key, limit in (("id", MAX_ID), ("campaign", MAX_ID), ("variant", MAX_ID), ("title", MAX_TEXT),
                       ("body", MAX_TEXT)):
        value = doc.get(key)
        if type(value) is not str or len(value) > limit or (key == "id" and not value):
            raise InvalidDownlink(f"{key!r} must be a string of at most {limit} characters")
    if type(doc.get("action")) is not dict:
        raise InvalidDownlink("'action' must be a map")
    if type(doc.get("expires")) is not int:
        raise InvalidDownlink("'expires' must be unix ms")
    return Downlink(doc["id"], doc["expires"], doc)


@dataclass
class _State:
    pending: list[Downlink] = field(default_factory=list)          # oldest first
    delivered: dict[str, int] = field(default_factory=dict)        # id -> expires_ms


class Inbox:
    """Not thread-safe: the agent's loop only. `listener` gets each message once, or None
    while nobody listens (then messages wait, up to `keep`)."""

    def __init__(self, folder: str | Path, *, clock_ms: Callable[[], int], keep: int = 100) -> None:
        self._path = Path(folder) / _STATE_FILE
        self._clock_ms = clock_ms
        self._keep = keep
        self._listeners: list[Callable[[Downlink], None]] = []
        self._log = RateLimitedLog(log, 60.0)
        self.received = 0        # valid payloads received (duplicates included)
        self.duplicates = 0      # ids already pending or delivered
        self.expired = 0         # dropped because `expires` passed before delivery
        self.invalid = 0         # payloads that break the contract
        self.delivered = 0       # handed to a listener
        self.io_errors = 0
        self._state = self._load()

    # -- listeners ---------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[Downlink], None]) -> None:
        """A UI client (or a firmware callback) from now on; it gets what is waiting first."""
        self._listeners.append(listener)
        self._flush()

    def remove_listener(self, listener: Callable[[Downlink], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    @property
    def pending(self) -> list[Downlink]:
        self._drop_expired()
        return list(self._state.pending)

    # -- from the broker ---------------------------------------------------------------------

    def receive(self, payload: bytes) -> None:
        try:
            message = parse(payload)
        except InvalidDownlink as exc:
            self.invalid += 1
            self._log.warning("downlink message dropped", reason=str(exc), invalid_total=self.invalid)
            return
        self.received += 1
        if message.id in self._state.delivered or any(p.id == message.id for p in self._state.pending):
            self.duplicates += 1
            return
        if message.expires_ms <= self._clock_ms():
            self.expired += 1
            return
        self._state.pending.append(message)
        del self._state.pending[:-self._keep]  # newest `keep`: an old one nobody saw goes first
        self._flush()

    # -- internals ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand what is waiting to the listeners (recorded as delivered first), then save."""
        self._drop_expired()
        if self._listeners and self._state.pending:
            batch, self._state.pending = self._state.pending, []
            for message in batch:
                self._state.delivered[message.id] = message.expires_ms
            self._save()  # delivered before handed over: at most once, even across a crash
            for message in batch:
                self.delivered += 1
                for listener in list(self._listeners):
                    listener(message)
        else:
            self._save()

    def _drop_expired(self) -> None:
        now = self._clock_ms()
        before = len(self._state.pending)
        self._state.pending = [m for m in self._state.pending if m.expires_ms > now]
        self.expired += before - len(self._state.pending)
        delivered = {i: e for i, e in self._state.delivered.items() if e > now}
        if len(delivered) > _REMEMBER_DELIVERED:  # an expired id can never come back valid; beyond
            newest = sorted(delivered.items(), key=lambda item: item[1])[-_REMEMBER_DELIVERED:]
            delivered = dict(newest)
        self._state.delivered = delivered

    def _save(self) -> None:
        doc = {"pending": [m.doc for m in self._state.pending], "delivered": self._state.delivered}
        tmp = self._path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(msgpack.packb(doc, use_bin_type=True))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except OSError as exc:
            self.io_errors += 1
            self._log.warning("downlink state not saved", error=str(exc), io_errors_total=self.io_errors)

    def _load(self) -> _State:
        try:
            doc = msgpack.unpackb(self._path.read_bytes(), raw=False)
            pending = [parse(msgpack.packb(d, use_bin_type=True)) for d in doc["pending"]]
            delivered = {str(i): int(e) for i, e in doc["delivered"].items()}
        except FileNotFoundError:
            return _State()
        except (OSError, ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException) as exc:
            log.warning("downlink state unreadable; starting empty", extra={"error": str(exc)[:200]})
            return _State()
        return _State(pending, delivered)
