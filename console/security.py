"""The console's cryptography, all from the standard library: password hashes (scrypt), the cookie
secret (a file generated at first start, mode 0600), signed session values (HMAC-SHA256), CSRF
tokens bound to the session, and household pseudonyms (a keyed bijection, reversible only here).

Why these: scrypt is memory-hard and in hashlib (no native dependency to build); an HMAC-signed
cookie needs no server-side session table; a keyed Feistel permutation of the 64-bit household id
gives viewers a stable name for a household that links to its page without ever showing the id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

from console import BadUserInput

# scrypt cost: 2^15 x 8 x 1 needs 32 MiB and ~60 ms here; stored with the hash so it can be raised.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise BadUserInput("password: at least 8 characters", field="password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(_unb64(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def load_or_create_secret(path: Path) -> bytes:
    """The secret in `path` (created with 32 random bytes, mode 0600, when missing). A file other
    users can read is refused: whoever reads it can forge sessions."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode() + b"\n")
    return path.read_bytes().strip()


def _read_secret(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise PermissionError(f"secret file {path} can be read by other users (mode "
                              f"{stat.S_IMODE(mode):o}): run chmod 600 {path}")
    data = path.read_bytes().strip()
    if len(data) < 32:
        raise PermissionError(f"secret file {path} holds fewer than 32 bytes: remove it to generate one")
    return data


class Signer:
    """Signed, expiring JSON values (the session cookie), and the values derived from one secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"console-cookie", hashlib.sha256).digest()
        self._csrf = hmac.new(secret, b"console-csrf", hashlib.sha256).digest()

    def sign(self, value: dict[str, Any], max_age_s: float) -> str:
        body = _b64(json.dumps({**value, "exp": int(time.time() + max_age_s)}, separators=(",", ":")).encode())
        return f"{body}.{_b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())}"

    def unsign(self, token: str) -> dict[str, Any] | None:
        body, _, mac = token.partition(".")
        want = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, want):
            return None
        try:
            value = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(value, dict) or not isinstance(value.get("exp"), int) or value["exp"] < time.time():
            return None
        return value

    def csrf_token(self, nonce: str) -> str:
        """The token every form of a session carries: bound to the session's nonce."""
        return _b64(hmac.new(self._csrf, nonce.encode(), hashlib.sha256).digest())

    def csrf_ok(self, nonce: str, token: str) -> bool:
        return bool(nonce and token) and hmac.compare_digest(self.csrf_token(nonce), token)


class Pseudonyms:
    """household id <-> "h" + 16 hex digits: a 4-round Feistel permutation of 64 bits keyed by HMAC."""

    def __init__(self, key: bytes) -> None:
        self._keys = [hmac.new(key, f"pseudonym-{i}".encode(), hashlib.sha256).digest() for i in range(4)]

    def _f(self, i: int, half: int) -> int:
        return int.from_bytes(hmac.new(self._keys[i], half.to_bytes(4, "big"), hashlib.sha256).digest()[:4], "big")

    def encode(self, household_id: int) -> str:
        left, right = household_id >> 32, household_id & 0xFFFFFFFF
        for i in range(4):
            left, right = right, left ^ self._f(i, right)
        return f"h{(left << 32 | right):016x}"

    def decode(self, pseudonym: str) -> int | None:
        if len(pseudonym) != 17 or pseudonym[0] != "h":
            return None
        try:
            value = int(pseudonym[1:], 16)
        except ValueError:
            return None
        left, right = value >> 32, value & 0xFFFFFFFF
        for i in reversed(range(4)):
            left, right = right ^ self._f(i, left), left
        return left << 32 | right


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
