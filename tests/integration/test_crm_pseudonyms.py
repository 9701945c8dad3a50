"""`crm segment members` on both real stores: keyed pseudonyms with a key, raw ids with
--identified, a one-line refusal without either, and a key file others can read refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crm.__main__ import main
from stbcommon.pseudonym import Pseudonymizer
from tests.integration.crm_support import close_and_drop, open_migrated, store_url  # noqa: F401
from tests.integration.test_crm_segments import fill

pytestmark = pytest.mark.integration
KEY = bytes(range(32))
EXPR = "value = high and region = 'north'"   # households 1, 3, ..., 19


def test_members_are_pseudonymised_unless_identified(store_url: str, tmp_path: Path,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    store = open_migrated(store_url)
    fill(store)
    store.close()
    key = tmp_path / "pseudonym.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    try:
        monkeypatch.delenv("STB_CRM__PRIVACY__KEY_FILE", raising=False)
        assert main(["segment", "members", EXPR, "--store", store_url]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "set [privacy] key_file" in err[0] and "--identified" in err[0]

        assert main(["segment", "members", EXPR, "--identified", "--store", store_url]) == 0
        ids = [int(x) for x in capsys.readouterr().out.split()]
        assert ids == list(range(1, 20, 2))

        monkeypatch.setenv("STB_CRM__PRIVACY__KEY_FILE", str(key))
        assert main(["segment", "members", EXPR, "--store", store_url]) == 0
        out = capsys.readouterr().out.split()
        assert out == [Pseudonymizer(KEY)(h) for h in ids]
        assert not set(out) & {str(h) for h in ids}

        os.chmod(key, 0o644)
        assert main(["segment", "members", EXPR, "--store", store_url]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and f"chmod 600 {key}" in captured.err
    finally:
        close_and_drop(open_migrated(store_url), store_url)
