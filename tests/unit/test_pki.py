"""stbcommon.pki: the CA folder, certificates by kind, revocation, passphrases, CLI errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from proto.telemetry import DEVICE_ID_RE
from stbcommon import pki
from stbcommon.pki import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ca_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    d = tmp_path / "ca"
    assert run(capsys, "init", "--dir", str(d))[0] == 0
    return d


def cert(d: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((d / f"{name}.crt").read_bytes())


def crl(d: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((d / "crl.pem").read_bytes())


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_init_writes_a_ca_a_private_key_and_an_empty_crl(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = cert(ca_dir, "ca")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign      # OpenSSL refuses a CRL from a CA without crl_sign
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert mode(ca_dir / "ca.key") == 0o600 and mode(ca_dir / "ca.crt") == 0o644
    assert b"ENCRYPTED" not in (ca_dir / "ca.key").read_bytes()
    empty = crl(ca_dir)
    assert len(empty) == 0 and empty.is_signature_valid(ca.public_key())   # type: ignore[arg-type]
    assert empty.next_update_utc is not None and empty.next_update_utc > dt.datetime.now(dt.UTC)
    before = (ca_dir / "ca.key").read_bytes()
    code, _, err = run(capsys, "init", "--dir", str(ca_dir))
    assert code == 1 and "already holds a CA" in err and err.count("\n") == 1
    assert (ca_dir / "ca.key").read_bytes() == before


def test_device_certificate_is_a_client_identity_chained_to_the_ca(ca_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "issue", "device", "stb-000042", "--dir", str(ca_dir))
    assert code == 0 and "stb-000042" in out and "PRIVATE" not in out
    dev, ca = cert(ca_dir, "stb-000042"), cert(ca_dir, "ca")
    assert dev.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "stb-000042"
    dev.verify_directly_issued_by(ca)
    chain = PolicyBuilder().store(Store([ca])).build_client_verifier().verify(dev, [])
    assert chain.chain[-1] == ca
    assert dev.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert not dev.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    years = (dev.not_valid_after_utc - dev.not_valid_before_utc).days / 365
    assert 9.9 < years <= 10.1                           # factory-provisioned: outlives the box
    with pytest.raises(VerificationError):               # not usable as a server
        PolicyBuilder().store(Store([ca])).build_server_verifier(DNSName("stb-000042")).verify(dev, [])
    assert mode(ca_dir / "stb-000042.key") == 0o600
    key = serialization.load_pem_private_key((ca_dir / "stb-000042.key").read_bytes(), None)
    assert key.public_key() == dev.public_key()


def test_server_certificate_carries_each_host_as_a_san(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ipaddress

    assert run(capsys, "issue", "server", "broker", "--dir", str(ca_dir))[0] == 0
    default = cert(ca_dir, "broker").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert default.get_values_for_type(x509.DNSName) == ["localhost"]
    assert default.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert run(capsys, "issue", "server", "mqtt", "--dir", str(ca_dir), "--host", "mqtt.example.net",
               "--host", "10.1.2.3", "--host", "::1")[0] == 0
    srv, ca = cert(ca_dir, "mqtt"), cert(ca_dir, "ca")
    verifier = PolicyBuilder().store(Store([ca]))
    verifier.build_server_verifier(DNSName("mqtt.example.net")).verify(srv, [])
    verifier.build_server_verifier(IPAddress(ipaddress.ip_address("10.1.2.3"))).verify(srv, [])
    with pytest.raises(VerificationError):
        verifier.build_server_verifier(DNSName("localhost")).verify(srv, [])    # only the hosts given
    assert srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])


def test_keys_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pki.init_ca(tmp_path / "ca")
        pki.issue(tmp_path / "ca", "service", "collector")
    finally:
        os.umask(old)
    assert mode(tmp_path / "ca" / "ca.key") == 0o600 and mode(tmp_path / "ca" / "collector.key") == 0o600
    assert not list((tmp_path / "ca").glob(".*.tmp"))


def test_issuing_a_name_again_needs_force_and_revoke_takes_every_live_one(
        ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "issue", "device", "stb-1", "--dir", str(ca_dir))[0] == 0
    first = cert(ca_dir, "stb-1").serial_number
    code, _, err = run(capsys, "issue", "device", "stb-1", "--dir", str(ca_dir))
    assert code == 1 and "--force" in err and err.count("\n") == 1
    assert cert(ca_dir, "stb-1").serial_number == first            # untouched
    assert run(capsys, "issue", "device", "stb-1", "--dir", str(ca_dir), "--force")[0] == 0
    second = cert(ca_dir, "stb-1").serial_number
    assert second != first
    code, out, _ = run(capsys, "revoke", "stb-1", "--dir", str(ca_dir))
    assert code == 0 and f"{first:x}" in out and f"{second:x}" in out
    revoked = crl(ca_dir)
    assert {r.serial_number for r in revoked} == {first, second}
    assert revoked.is_signature_valid(cert(ca_dir, "ca").public_key())   # type: ignore[arg-type]
    assert revoked.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    code, out, _ = run(capsys, "revoke", "stb-1", "--dir", str(ca_dir))       # again: harmless
    assert code == 0 and "already revoked" in out
    assert run(capsys, "issue", "device", "stb-1", "--dir", str(ca_dir))[0] == 0   # re-provisioning
    index = json.loads((ca_dir / "index.json").read_text())
    assert [(c["serial"], c["revoked"] is not None) for c in index["certs"]] == [
        (f"{first:x}", True), (f"{second:x}", True), (f"{cert(ca_dir, 'stb-1').serial_number:x}", False)]
    code, _, err = run(capsys, "revoke", "stb-nobody", "--dir", str(ca_dir))
    assert code == 1 and "no certificate was issued" in err


def test_crl_is_resigned_with_the_same_list(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki.issue(ca_dir, "device", "stb-2")
    pki.revoke(ca_dir, "stb-2")
    code, out, _ = run(capsys, "crl", "--dir", str(ca_dir), "--crl-days", "7")
    assert code == 0 and "1 revoked" in out
    fresh = crl(ca_dir)
    assert [r.serial_number for r in fresh] == [cert(ca_dir, "stb-2").serial_number]
    assert fresh.next_update_utc is not None
    assert fresh.next_update_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=7, minutes=1)


def test_passphrases_encrypt_keys_and_unlock_the_ca(ca_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    secret, wrong = tmp_path / "pass", tmp_path / "wrong"
    secret.write_text("correct horse\n")
    wrong.write_text("battery staple\n")
    locked = tmp_path / "locked"
    assert run(capsys, "init", "--dir", str(locked), "--passphrase-file", str(secret))[0] == 0
    assert b"ENCRYPTED PRIVATE KEY" in (locked / "ca.key").read_bytes()
    code, _, err = run(capsys, "issue", "device", "stb-3", "--dir", str(locked))
    assert code == 1 and "encrypted" in err
    code, _, err = run(capsys, "issue", "device", "stb-3", "--dir", str(locked), "--ca-passphrase-file", str(wrong))
    assert code == 1 and "wrong passphrase" in err and "correct" not in err and "battery" not in err
    # --ca-passphrase-file unlocks the CA only: the device key stays loadable by firmware as is.
    assert run(capsys, "issue", "device", "stb-3", "--dir", str(locked), "--ca-passphrase-file", str(secret))[0] == 0
    assert b"ENCRYPTED" not in (locked / "stb-3.key").read_bytes()
    # --passphrase-file encrypts the key written, and (without --ca-passphrase-file) unlocks the CA.
    assert run(capsys, "issue", "service", "marketing", "--dir", str(locked), "--passphrase-file", str(secret))[0] == 0
    serialization.load_pem_private_key((locked / "marketing.key").read_bytes(), b"correct horse")
    assert run(capsys, "revoke", "stb-3", "--dir", str(locked), "--passphrase-file", str(secret))[0] == 0


@pytest.mark.parametrize(("argv", "reason"), [
    (["issue", "device", "collector"], "service identity"),
    (["issue", "device", "ca"], "not ca"),
    (["issue", "device", "stb/1"], "letters, digits"),
    (["issue", "device", "-x"], "arguments are required: NAME"),   # argparse: "-x" looks like an option
    (["issue", "device", ".hidden"], "letters, digits"),
    (["issue", "device", "stb+1"], "letters, digits"),
    (["issue", "device", "stb-4", "--host", "example.net"], "server certificates only"),
    (["issue", "server", "srv", "--host", "bad host"], "neither a DNS name"),
    (["issue", "device", "stb-4", "--days", "9000"], "past the CA's expiry"),
    (["issue", "device", "stb-4", "--days", "0"], "--days must be >= 1"),
])
def test_bad_requests_are_refused_with_one_line(ca_dir: Path, capsys: pytest.CaptureFixture[str],
                                                argv: list[str], reason: str) -> None:
    try:
        code, out, err = run(capsys, *argv, "--dir", str(ca_dir))
    except SystemExit as exc:                                      # argparse's own checks
        code, (out, err) = int(exc.code or 0), capsys.readouterr()
    assert code != 0 and reason in err and err.count("\n") == 1 and out == ""
    assert not list(ca_dir.glob("stb-4.*"))


def test_a_name_keeps_its_kind(ca_dir: Path) -> None:
    pki.issue(ca_dir, "service", "recommender")
    with pytest.raises(pki.PkiError, match="never change kind"):
        pki.issue(ca_dir, "server", "recommender", force=True)


def test_every_name_is_a_valid_device_id_and_topic_level() -> None:
    for name in ("stb-000042", "A.b_c-9", "x" * 64):
        assert pki.NAME_RE.fullmatch(name) and DEVICE_ID_RE.fullmatch(name)
    for name in ("x" * 65, "", "a/b", "a+b", "a#b", "%u", "a b"):
        assert not pki.NAME_RE.fullmatch(name)


def test_an_expired_certificate_for_tests(ca_dir: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    old = pki.issue(ca_dir, "device", "stb-old", not_before=past, days=1)
    assert old.not_valid_after_utc < dt.datetime.now(dt.UTC)


def test_without_a_ca_every_command_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["issue", "device", "stb-5"], ["revoke", "stb-5"], ["crl"], ["list"]):
        code, _, err = run(capsys, *argv, "--dir", str(tmp_path / "none"))
        assert code == 1 and err.startswith("stb-pki: error:") and err.count("\n") == 1


def test_module_entry_point_help_and_list(ca_dir: Path) -> None:
    pki.issue(ca_dir, "device", "stb-6")
    done = subprocess.run([sys.executable, "-m", "stbcommon.pki", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "init" in done.stdout and "revoke" in done.stdout
    done = subprocess.run([sys.executable, "-m", "stbcommon.pki", "list", "--dir", str(ca_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "stb-6" in done.stdout
