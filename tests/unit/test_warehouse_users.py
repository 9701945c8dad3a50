"""`python -m warehouse.users`: password files, network entries and the rendered users file."""

from __future__ import annotations

import hashlib
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from warehouse.users import USERS, UsersError, main, network_entry, write_users


def test_missing_passwords_are_created_0600_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "stb-users.xml"
    names = write_users(tmp_path / "secrets", out, "stb", ["127.0.0.1"])
    assert names == ["default", *(u.name for u in USERS)]
    files = sorted((tmp_path / "secrets").iterdir())
    assert len(files) == len(names)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    first = out.read_text()
    write_users(tmp_path / "secrets", out, "stb", ["127.0.0.1"])
    assert out.read_text() == first  # same passwords, same file


def test_the_file_holds_hashes_profiles_and_databases(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "reader.password").write_text("correct horse\n")
    os.chmod(secrets / "reader.password", 0o600)
    out = tmp_path / "u.xml"
    write_users(secrets, out, "tv", ["10.0.0.0/8", "2001:db8::/32"])
    text = out.read_text()
    assert "correct horse" not in text
    users = ET.fromstring(text).find("users")
    assert users is not None
    reader = users.find("reader")
    assert reader is not None
    assert reader.findtext("password_sha256_hex") == hashlib.sha256(b"correct horse").hexdigest()
    assert reader.findtext("profile") == "stb_reader"
    assert [d.text for d in reader.iter("database")] == ["tv"]
    assert [ip.text for ip in reader.iter("ip")] == ["10.0.0.0/255.0.0.0", "2001:db8::/32"]
    default = users.find("default")
    assert default is not None and [ip.text for ip in default.iter("ip")] == ["::1", "127.0.0.1"]
    assert users.find("readonly") is not None and users.find("readonly").get("remove") == "remove"  # type: ignore[union-attr]
    profiles = ET.fromstring(text).find("profiles")
    assert profiles is not None and profiles.findtext("stb_reader/readonly") == "2"


def test_a_password_file_others_can_read_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "crm.password").write_text("s3cr3t-value\n")
    os.chmod(secrets / "crm.password", 0o644)
    assert main(["--secrets-dir", str(secrets), "--out", str(tmp_path / "u.xml")]) == 1
    err = capsys.readouterr().err
    assert "crm.password" in err and "chmod 600" in err and "s3cr3t" not in err
    assert not (tmp_path / "u.xml").exists()


@pytest.mark.parametrize(("cidr", "entry"), [
    ("10.0.0.0/8", "10.0.0.0/255.0.0.0"), ("192.168.1.7/24", "192.168.1.0/255.255.255.0"),
    ("127.0.0.1", "127.0.0.1"), ("fc00::/7", "fc00::/7"), ("::1", "::1")])
def test_network_entries_use_netmasks_for_ipv4(cidr: str, entry: str) -> None:
    assert network_entry(cidr) == entry


def test_bad_network_or_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsersError, match="bad network"):
        write_users(tmp_path / "s", tmp_path / "u.xml", "stb", ["10.0.0.0/33"])
    with pytest.raises(UsersError, match="bad database"):
        write_users(tmp_path / "s", tmp_path / "u.xml", "stb; DROP", ["127.0.0.1"])
    assert not (tmp_path / "s").exists()
