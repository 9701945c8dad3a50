"""Console cryptography: password hashes, the secret file, signed sessions, CSRF tokens, pseudonyms."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console import BadUserInput
from console.security import Pseudonyms, Signer, hash_password, load_or_create_secret, verify_password

KEY = b"k" * 32


def test_password_hash_verifies_only_the_password() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("correct horse", "garbage")
    with pytest.raises(BadUserInput):
        hash_password("short")


def test_secret_file_is_created_private_and_refused_when_readable(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    first = load_or_create_secret(path)
    assert os.stat(path).st_mode & 0o777 == 0o600 and len(first) >= 32
    assert load_or_create_secret(path) == first
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_secret(path)


def test_signed_values_reject_tampering_and_expiry() -> None:
    signer = Signer(KEY)
    token = signer.sign({"n": "abc", "u": "mia"}, 60)
    assert signer.unsign(token) == {"n": "abc", "u": "mia", "exp": pytest.approx(time.time() + 60, abs=2)}
    body, mac = token.split(".")
    assert signer.unsign(body[:-2] + "AA." + mac) is None
    assert Signer(b"other" * 8).unsign(token) is None
    assert signer.unsign(signer.sign({"n": "abc"}, -1)) is None
    assert signer.unsign("") is None and signer.unsign("x.y") is None


def test_csrf_token_is_bound_to_the_session() -> None:
    signer = Signer(KEY)
    token = signer.csrf_token("nonce-1")
    assert signer.csrf_ok("nonce-1", token)
    assert not signer.csrf_ok("nonce-2", token)
    assert not signer.csrf_ok("nonce-1", "")
    assert not signer.csrf_ok("", signer.csrf_token(""))


@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_pseudonyms_are_a_keyed_bijection(household: int) -> None:
    names = Pseudonyms(KEY)
    pseudonym = names.encode(household)
    assert len(pseudonym) == 17 and pseudonym.startswith("h")
    assert names.decode(pseudonym) == household
    # A long id never shows through (a short one may appear in 16 hex digits by chance: 520 in ...7520...).
    assert str(household) not in pseudonym[1:] or household < 10**9
    assert Pseudonyms(b"another key" * 3).encode(household) != pseudonym


def test_pseudonym_decode_refuses_what_is_not_one() -> None:
    names = Pseudonyms(KEY)
    for text in ("", "42", "h123", "hzzzzzzzzzzzzzzzz", "x" + "0" * 16):
        assert names.decode(text) is None
