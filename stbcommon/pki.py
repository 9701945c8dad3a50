"""A small certificate authority for the fleet: `python -m stbcommon.pki` (console script `stb-pki`).

    stb-pki init --dir D [--days N]                      D/ca.crt, D/ca.key (0600), D/crl.pem
    stb-pki issue device|server|service NAME --dir D [--days N] [--host H]... [--force]
    stb-pki revoke NAME --dir D                          NAME's certificates into a re-signed D/crl.pem
    stb-pki crl --dir D                                  re-sign D/crl.pem (before it expires)
    stb-pki list --dir D                                 what was issued, revoked, expires

A certificate's CN is its identity at the broker (`use_identity_as_username`): a device's is its
device id, services are `collector`, `marketing`, ... . D/index.json records every certificate
issued (name, kind, serial, validity, revocation) so that `revoke NAME` needs no certificate file.
Private keys are written unencrypted with mode 0600 unless `--passphrase-file F` is given;
an encrypted ca.key is unlocked with `--ca-passphrase-file` (default: the --passphrase-file).
Operations on one folder are serialised by a lock file (parallel factory stations).
Errors: `PkiError` (one-line reason; the CLI prints it and exits 1).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KINDS = ("device", "server", "service")
# Days of validity by kind. Device certificates are written at the factory into firmware
# storage and must outlive the box (field re-provisioning is rare and costly): 10 years.
# Server and service certificates live on headend hosts where rotation is a deploy: 825 days.
DEFAULT_DAYS = {"ca": 20 * 365, "device": 10 * 365, "server": 825, "service": 825}
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
# A CRL past its nextUpdate makes OpenSSL (mosquitto) refuse EVERY client certificate, so a
# long default; re-sign with `crl` (or any revoke) well before it runs out.
DEFAULT_CRL_DAYS = 365
# Same characters as proto's DEVICE_ID_RE (the name is a topic level and the MQTT username),
# but starting with a letter or digit: the name is also a file name and a command argument.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Service identities that the broker's ACL grants fleet-wide rights: never a device's name.
SERVICE_IDENTITIES = frozenset({"collector", "marketing"})
_RESERVED = frozenset({"ca", "crl", "index"})


class PkiError(Exception):
    """What went wrong, in one line (no key material)."""


@dataclass(frozen=True)
class Issued:
    """One certificate in D/index.json."""

    name: str
    kind: str
    serial: str                  # hex
    not_before: str              # ISO 8601, UTC
    not_after: str
    revoked: str | None = None   # ISO 8601 time of revocation


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # EC P-256: 32-byte keys and ~70-byte signatures keep handshakes cheap on STB CPUs and flash
    # small; every TLS stack involved (OpenSSL in mosquitto, Python ssl, grpc's BoringSSL) has it.
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, created with its final mode (a key is never readable by others, even briefly)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def read_passphrase(path: str | Path) -> bytes:
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise PkiError(f"passphrase file {path}: {exc.strerror}") from None
    if not lines or not lines[0]:
        raise PkiError(f"passphrase file {path}: the first line is empty")
    return lines[0]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    if not (folder / "ca.crt").is_file():
        raise PkiError(f"{folder} holds no CA (run: stb-pki init --dir {folder})")
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_index(folder: Path) -> dict[str, object]:
    try:
        return dict(json.loads((folder / "index.json").read_text()))
    except (OSError, ValueError) as exc:
        raise PkiError(f"{folder}/index.json unreadable: {exc}") from None


def _entries(index: dict[str, object]) -> list[Issued]:
    return [Issued(**e) for e in index["certs"]]  # type: ignore[attr-defined]


def _save_index(folder: Path, index: dict[str, object], entries: list[Issued]) -> None:
    index["certs"] = [asdict(e) for e in entries]
    _write(folder / "index.json", (json.dumps(index, indent=1) + "\n").encode(), 0o644)


def _load_ca(folder: Path, passphrase: bytes | None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    try:
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), passphrase)
    except OSError as exc:
        raise PkiError(f"{folder}/ca.key: {exc.strerror}") from None
    except TypeError:
        if passphrase is None:
            raise PkiError(f"{folder}/ca.key is encrypted: give --ca-passphrase-file") from None
        raise PkiError(f"{folder}/ca.key is not encrypted: drop the CA passphrase") from None
    except ValueError:
        raise PkiError(f"{folder}/ca.key: wrong passphrase or not a PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise PkiError(f"{folder}/ca.key does not belong to {folder}/ca.crt")
    return cert, key


def init_ca(folder: str | Path, *, days: int = DEFAULT_DAYS["ca"], common_name: str = "stb-telemetry CA",
            passphrase: bytes | None = None, crl_days: int = DEFAULT_CRL_DAYS) -> x509.Certificate:
    """A new self-signed CA in `folder`, an empty CRL and an empty index. Never replaces a CA."""
    folder = Path(folder)
    if days < 1 or crl_days < 1:
        raise PkiError("--days and --crl-days must be >= 1")
    if (folder / "ca.crt").exists() or (folder / "ca.key").exists():
        raise PkiError(f"{folder} already holds a CA; refusing to replace it (every certificate it issued "
                       "would stop working)")
    folder.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write(folder / "ca.key", _key_pem(key, passphrase), 0o600)
        _write(folder / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        index: dict[str, object] = {"crl_number": 0, "crl_days": crl_days, "certs": []}
        _sign_crl(folder, cert, key, index, [])
    return cert


def issue(folder: str | Path, kind: str, name: str, *, days: int | None = None, hosts: Sequence[str] = (),
          force: bool = False, passphrase: bytes | None = None, ca_passphrase: bytes | None = None,
          not_before: dt.datetime | None = None) -> x509.Certificate:
    """Issue NAME.crt/NAME.key of `kind`. `not_before` (tests: an already expired certificate)
    defaults to now; validity is `days` from it. Refuses a name already issued unless `force`."""
    folder = Path(folder)
    if kind not in KINDS:
        raise PkiError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    if not NAME_RE.fullmatch(name) or name in _RESERVED:
        raise PkiError(f"name {name!r}: letters, digits, '.', '_', '-' (1-64, starting with a letter or digit), "
                       f"not {', '.join(sorted(_RESERVED))}")
    if kind == "device" and name in SERVICE_IDENTITIES:
        raise PkiError(f"name {name!r} is a service identity with fleet-wide broker rights, never a device")
    if hosts and kind != "server":
        raise PkiError("--host applies to server certificates only")
    days = DEFAULT_DAYS[kind] if days is None else days
    if days < 1:
        raise PkiError("--days must be >= 1")
    # Clients carry their identity as a URI SAN too: verifiers with the RFC 5280 profile
    # (cryptography's, grpc's) want a SAN; mosquitto reads the CN.
    san = ([_san(h) for h in (hosts or DEFAULT_HOSTS)] if kind == "server"
           else [x509.UniformResourceIdentifier(f"urn:stb-telemetry:{kind}:{name}")])
    with _locked(folder):
        ca_cert, ca_key = _load_ca(folder, ca_passphrase)
        index = _load_index(folder)
        entries = _entries(index)
        live = [e for e in entries if e.name == name and e.revoked is None]
        if any(e.kind != kind for e in entries if e.name == name):
            raise PkiError(f"{name} was issued as another kind; names are identities and never change kind")
        if live and not force:
            raise PkiError(f"{name} already has a certificate (serial {live[0].serial}, until {live[0].not_after}); "
                           "--force issues a new one (the old one stays valid until revoked)")
        start = (not_before or _now()).astimezone(dt.UTC)
        end = start + dt.timedelta(days=days)
        if end > ca_cert.not_valid_after_utc:
            raise PkiError(f"--days {days} runs past the CA's expiry ({ca_cert.not_valid_after_utc:%Y-%m-%d})")
        key = _new_key()
        eku = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())  # random: unguessable, no counter to keep
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .add_extension(x509.SubjectAlternativeName(san), critical=False))
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(folder / f"{name}.key", _key_pem(key, passphrase), 0o600)
        _write(folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        entries.append(Issued(name, kind, f"{cert.serial_number:x}", start.isoformat(), end.isoformat()))
        _save_index(folder, index, entries)
    return cert


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
        raise PkiError(f"--host {host!r} is neither a DNS name nor an IP address")
    return x509.DNSName(host)


def revoke(folder: str | Path, name: str, *, ca_passphrase: bytes | None = None) -> list[Issued]:
    """Revoke every live certificate of NAME and re-sign the CRL. Returns what it revoked
    (empty when NAME was revoked already: running it again is harmless)."""
    folder = Path(folder)
    with _locked(folder):
        ca_cert, ca_key = _load_ca(folder, ca_passphrase)
        index = _load_index(folder)
        entries = _entries(index)
        if not any(e.name == name for e in entries):
            raise PkiError(f"no certificate was issued for {name!r} in {folder}")
        when = _now().isoformat()
        revoked = [e for e in entries if e.name == name and e.revoked is None]
        entries = [Issued(**{**asdict(e), "revoked": when}) if e in revoked else e for e in entries]
        _sign_crl(folder, ca_cert, ca_key, index, entries)
    return revoked


def refresh_crl(folder: str | Path, *, ca_passphrase: bytes | None = None,
                crl_days: int | None = None) -> x509.CertificateRevocationList:
    """Re-sign D/crl.pem with a new validity (the list itself unchanged)."""
    folder = Path(folder)
    with _locked(folder):
        ca_cert, ca_key = _load_ca(folder, ca_passphrase)
        index = _load_index(folder)
        if crl_days is not None:
            if crl_days < 1:
                raise PkiError("--crl-days must be >= 1")
            index["crl_days"] = crl_days
        return _sign_crl(folder, ca_cert, ca_key, index, _entries(index))


def _sign_crl(folder: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
              index: dict[str, object], entries: list[Issued]) -> x509.CertificateRevocationList:
    now = _now()
    number = int(index.get("crl_number", 0)) + 1  # type: ignore[call-overload]
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=int(index["crl_days"])))  # type: ignore[call-overload]
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    for e in entries:
        if e.revoked is not None:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(e.serial, 16))
                .revocation_date(dt.datetime.fromisoformat(e.revoked)).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    index["crl_number"] = number
    _write(folder / "crl.pem", crl.public_bytes(serialization.Encoding.PEM), 0o644)
    _save_index(folder, index, entries)  # after the CRL: a crash in between leaves it unrevoked on paper only
    return crl


def list_certs(folder: str | Path) -> list[Issued]:
    return _entries(_load_index(Path(folder)))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line on stderr, like every other failure (scripts log it); usage is in --help.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stb-pki", description=(__doc__ or "").split("Errors:")[0].strip(),
                epilog="Exit status 0 on success, 1 with a one-line reason on stderr, 2 for a malformed "
                       "command line. Factory flow and broker deployment: docs/SECURITY.md.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=text, description=text)
        sp.add_argument("--dir", required=True, type=Path, help="the CA folder (ca.crt, ca.key, crl.pem, index.json)")
        return sp

    sp = add("init", "create a CA: ca.crt, ca.key (0600), an empty crl.pem")
    sp.add_argument("--days", type=int, default=DEFAULT_DAYS["ca"], help="CA validity (default %(default)s)")
    sp.add_argument("--cn", default="stb-telemetry CA", help="the CA's common name")
    sp.add_argument("--crl-days", type=int, default=DEFAULT_CRL_DAYS,
                    help="CRL validity: re-sign before it ends or the broker refuses everyone (default %(default)s)")
    sp.add_argument("--passphrase-file", help="encrypt ca.key with the first line of this file")
    sp = add("issue", "issue NAME.crt and NAME.key signed by the CA (CN = NAME)")
    sp.add_argument("kind", choices=KINDS, help="device: client, CN = device id; server: TLS server with --host "
                    "SANs; service: client identity of a headend service (collector, marketing)")
    sp.add_argument("name", metavar="NAME", help="the identity: a device id, a service or a host name")
    sp.add_argument("--days", type=int, help="validity (default device 3650, server/service 825)")
    sp.add_argument("--host", action="append", default=[],
                    help="server only, repeatable: a DNS name or IP in the SAN (default localhost, 127.0.0.1)")
    sp.add_argument("--force", action="store_true", help="issue although NAME has a live certificate "
                    "(renewal: the old one stays valid until it expires or is revoked)")
    sp.add_argument("--passphrase-file", help="encrypt NAME.key with this file's first line; also unlocks ca.key "
                    "unless --ca-passphrase-file is given")
    sp.add_argument("--ca-passphrase-file", help="unlocks an encrypted ca.key")
    for name, text in (("revoke", "revoke NAME's certificates: a re-signed crl.pem (reload the broker after)"),
                       ("crl", "re-sign crl.pem with a fresh validity")):
        sp = add(name, text)
        if name == "revoke":
            sp.add_argument("name", metavar="NAME")
        else:
            sp.add_argument("--crl-days", type=int, help="new CRL validity in days")
        sp.add_argument("--ca-passphrase-file", "--passphrase-file", dest="ca_passphrase_file",
                        help="unlocks an encrypted ca.key")
    add("list", "list issued certificates")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        pw = read_passphrase(args.passphrase_file) if getattr(args, "passphrase_file", None) else None
        ca_pw = read_passphrase(args.ca_passphrase_file) if getattr(args, "ca_passphrase_file", None) else pw
        d: Path = args.dir
        if args.command == "init":
            cert = init_ca(d, days=args.days, common_name=args.cn, passphrase=pw, crl_days=args.crl_days)
            print(f"CA {args.cn!r} until {cert.not_valid_after_utc:%Y-%m-%d}: {d}/ca.crt, {d}/ca.key, {d}/crl.pem")
        elif args.command == "issue":
            cert = issue(d, args.kind, args.name, days=args.days, hosts=args.host, force=args.force,
                         passphrase=pw, ca_passphrase=ca_pw)
            print(f"{args.kind} {args.name} serial {cert.serial_number:x} until {cert.not_valid_after_utc:%Y-%m-%d}: "
                  f"{d}/{args.name}.crt, {d}/{args.name}.key")
        elif args.command == "revoke":
            done = revoke(d, args.name, ca_passphrase=ca_pw)
            print(f"revoked {args.name} serial {', '.join(e.serial for e in done)}: {d}/crl.pem" if done
                  else f"{args.name} was already revoked")
        elif args.command == "crl":
            crl = refresh_crl(d, ca_passphrase=ca_pw, crl_days=args.crl_days)
            print(f"{d}/crl.pem re-signed, {len(crl)} revoked, valid until {crl.next_update_utc:%Y-%m-%d}")
        else:
            for e in list_certs(d):
                state = f"revoked {e.revoked}" if e.revoked else f"until {e.not_after}"
                print(f"{e.kind:8} {e.name:32} {e.serial:42} {state}")
    except PkiError as exc:
        print(f"stb-pki: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"stb-pki: error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
