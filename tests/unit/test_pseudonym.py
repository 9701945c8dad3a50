"""stbcommon.pseudonym: stable, keyed, collision-free in practice; the key file must be 0600;
crm.export_ids: pseudonyms by default, raw ids only with --identified, refusal without a key."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.export_ids import IdsRefused, household_labeller
from crm.settings import PrivacySettings
from stbcommon.pseudonym import Pseudonymizer, PseudonymKeyError, load_key

KEY_A = b"k" * 32
KEY_B = b"K" * 32
UINT64 = st.integers(min_value=0, max_value=2**64 - 1)


def key_file(folder: Path, key: bytes, mode: int = 0o600) -> Path:
    path = folder / "pseudonym.key"
    path.write_bytes(key)
    os.chmod(path, mode)
    return path


def test_format_and_definition() -> None:
    p = Pseudonymizer(KEY_A)
    want = "h" + hmac.new(KEY_A, (1042).to_bytes(8, "big"), hashlib.sha256).hexdigest()[:16]
    assert p(1042) == want and re.fullmatch(r"h[0-9a-f]{16}", want)
    assert p(2**64 - 1) != p(0)


@settings(derandomize=True, database=None, max_examples=200)
@given(st.lists(UINT64, min_size=2, max_size=50, unique=True))
def test_stable_keyed_and_distinct(ids: list[int]) -> None:
    a, again, b = Pseudonymizer(KEY_A), Pseudonymizer(KEY_A), Pseudonymizer(KEY_B)
    names = [a(h) for h in ids]
    assert names == [again(h) for h in ids]                 # stable for a key
    assert len(set(names)) == len(ids)                      # 64 bits: no collision among a few
    assert all(a(h) != b(h) for h in ids)                   # another key, other pseudonyms


def test_key_file_mode_and_length(tmp_path: Path) -> None:
    assert load_key(key_file(tmp_path, KEY_A + b"\n")) == KEY_A
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_key(key_file(tmp_path, KEY_A, 0o640))
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        load_key(key_file(tmp_path, b"short"))
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        load_key(tmp_path / "missing.key")


def test_labeller_pseudonymises_identifies_or_refuses(tmp_path: Path) -> None:
    path = key_file(tmp_path, KEY_A)
    assert household_labeller(PrivacySettings(key_file=str(path)), identified=False)(7) == Pseudonymizer(KEY_A)(7)
    assert household_labeller(PrivacySettings(key_file=str(path)), identified=True)(7) == "7"
    assert household_labeller(PrivacySettings(), identified=True)(7) == "7"
    with pytest.raises(IdsRefused, match=r"set \[privacy\] key_file .* or pass --identified"):
        household_labeller(PrivacySettings(), identified=False)
    os.chmod(path, 0o644)
    with pytest.raises(IdsRefused, match="chmod 600"):
        household_labeller(PrivacySettings(key_file=str(path)), identified=False)
