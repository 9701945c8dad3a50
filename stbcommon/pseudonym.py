"""Keyed pseudonyms for household ids that leave the store (exports, listings, reports).

A household id is personal data: with the subscriber system it names a home. Exports carry
`pseudonym(id)` = "h" + the first 16 hex digits (64 bits) of HMAC-SHA256(key, the id as 8
big-endian bytes) instead. The same key gives the same pseudonym in every export, so
exports can be joined with each other; without the key they cannot be turned back into ids
nor recomputed from a guessed id. Only operators with personal-data rights export raw ids
(the commands' `--identified`).

The key lives in a file that only its owner can read (mode 0600, checked on every load);
make one with `head -c 32 /dev/urandom > pseudonym.key && chmod 600 pseudonym.key`.
Rotating the key changes every pseudonym (old exports no longer join new ones).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Final

MIN_KEY_BYTES: Final = 16
PSEUDONYM_HEX: Final = 16


class PseudonymKeyError(Exception):
    """The key file is missing, unreadable, readable by others or too short (the message says which)."""


def load_key(path: str | Path) -> bytes:
    """The key in `path` (every byte of the file, one trailing newline dropped), mode 0600 enforced."""
    try:
        with open(path, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            key = f.read()
    except OSError as exc:
        raise PseudonymKeyError(f"cannot read the pseudonym key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise PseudonymKeyError(f"the pseudonym key file {path} is readable by other users "
                                f"(mode {mode:o}): chmod 600 {path}")
    key = key.removesuffix(b"\n")
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"the pseudonym key file {path} holds {len(key)} bytes; "
                                f"at least {MIN_KEY_BYTES} are needed (head -c 32 /dev/urandom)")
    return key


class Pseudonymizer:
    """`Pseudonymizer(key)(household_id)` -> "h" + 16 hex digits; stable for a key, differs across keys."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"a pseudonym key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path) -> Pseudonymizer:
        return cls(load_key(path))

    def __call__(self, household_id: int) -> str:
        digest = hmac.new(self._key, int(household_id).to_bytes(8, "big"), hashlib.sha256).hexdigest()
        return "h" + digest[:PSEUDONYM_HEX]
