"""ClickHouse users for the project, least privilege as far as 18.16's users.xml allows.

ClickHouse 18.16 has no SQL GRANTs (they came with 20.x): access control is users.xml only,
that is per user a password, the networks it may connect from, the databases it may touch
(`allow_databases`) and a settings profile (`readonly`, `allow_ddl`). It cannot restrict a
user to some tables of a database. So each component gets its own user, password and
profile, and docs/SECURITY.md gives the per-table GRANTs for modern servers.

    python -m warehouse.users --secrets-dir DIR --out users.d/stb-users.xml [--database stb]
                              [--network CIDR]...

reads each user's password from `DIR/<user>.password` (first line; the file must be mode
0600) and creates a random one, mode 0600, for a user that has none. The output holds only
SHA-256 hashes of the passwords; it replaces the `default` user so that it answers only on
the server's own loopback addresses (an administrator's login, which also runs migrations
by hand), and drops the package's passwordless `readonly` example user.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape


class UsersError(Exception):
    """A password file is unsafe or unreadable, or an argument is invalid; the message says which."""


@dataclass(frozen=True)
class User:
    """One ClickHouse login: its profile and why it needs what it gets."""

    name: str
    profile: str
    purpose: str


# Writers call migrate() when they start (CREATE ... IF NOT EXISTS), and crm also builds
# staging tables and runs ALTER ... DELETE mutations (`crm forget`): 18.16's allow_ddl is
# per user, so writers keep DDL. Readers get readonly = 2: reads only, no DDL, no INSERT,
# but a client may send query settings (max_threads, max_execution_time ...), which
# readonly = 1 refuses even when the value is unchanged; `readonly` itself cannot be lowered.
PROFILES: Final[Mapping[str, Mapping[str, str]]] = {
    "stb_writer": {"readonly": "0", "allow_ddl": "1"},
    "stb_reader": {"readonly": "2", "allow_ddl": "0"},
}
USERS: Final[tuple[User, ...]] = (
    User("collector", "stb_writer", "inserts events and dead_letters; migrates the schema at start"),
    User("crm", "stb_writer", "subscribers, profiles, tags, segments, churn tables; staging tables, forget mutations"),
    User("marketing", "stb_writer", "campaigns, campaign_log, contacts, deliveries, allocations"),
    User("console", "stb_writer", "console_users, console_audit, campaigns (through marketing.store)"),
    User("recommender", "stb_reader", "reads events, the guide and feedback to train and serve"),
    User("reader", "stb_reader", "dashboards and analysts: reads the database, changes nothing"),
)
ADMIN: Final = "default"
# Headend hosts sit on private networks; a site narrows this with --network.
DEFAULT_NETWORKS: Final = ("::1", "127.0.0.1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
LOOPBACK: Final = ("::1", "127.0.0.1")


def read_or_create_password(folder: Path, user: str) -> str:
    """The password in `folder/<user>.password` (mode 0600 enforced), created at random if absent."""
    path = folder / f"{user}.password"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_password(path)
    password = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    return password


def _read_password(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UsersError(f"{path} is readable by other users (mode {mode:o}): chmod 600 {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise UsersError(f"{path} is empty: put the password on its first line")
    return lines[0]


def network_entry(cidr: str) -> str:
    """`cidr` as an `<ip>` entry 18.16 matches correctly.

    18.16 compares IPv4 clients as IPv4-mapped IPv6 addresses and applies an IPv4 prefix
    length to all 128 bits: `10.0.0.0/8` admits every IPv4 client (measured, see
    tests/integration/test_clickhouse_users.py). A dotted netmask (`10.0.0.0/255.0.0.0`)
    is matched right, on 18.16 and on modern servers alike.
    """
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise UsersError(f"bad network {cidr!r}: {exc}") from None
    if net.num_addresses == 1:
        return str(net.network_address)
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address}/{net.netmask}"
    return str(net)


def sha256_hex(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def render(passwords: Mapping[str, str], database: str, networks: Sequence[str]) -> str:
    """The users.d file: profiles, the component users and the loopback-only `default`."""
    def nets(ips: Iterable[str]) -> str:
        return "".join(f"<ip>{escape(network_entry(ip))}</ip>" for ip in ips)

    out = ["<?xml version=\"1.0\"?>",
           "<!-- Generated by `python -m warehouse.users`; see docs/SECURITY.md. Holds password hashes: mode 0640. -->",
           "<yandex>", "    <profiles>"]
    for name, settings in PROFILES.items():
        body = "".join(f"<{k}>{v}</{k}>" for k, v in settings.items())
        out.append(f"        <{name}>{body}</{name}>")
    out += ["    </profiles>", "    <users>",
            "        <!-- The administrator, from the server itself only. -->",
            f"        <{ADMIN} replace=\"replace\">",
            f"            <password_sha256_hex>{sha256_hex(passwords[ADMIN])}</password_sha256_hex>",
            f"            <networks>{nets(LOOPBACK)}</networks>",
            "            <profile>default</profile><quota>default</quota>",
            f"        </{ADMIN}>",
            "        <readonly remove=\"remove\"/>"]
    for user in USERS:
        out += [f"        <!-- {escape(user.purpose)} -->",
                f"        <{user.name} replace=\"replace\">",
                f"            <password_sha256_hex>{sha256_hex(passwords[user.name])}</password_sha256_hex>",
                f"            <networks>{nets(networks)}</networks>",
                f"            <profile>{user.profile}</profile><quota>default</quota>",
                f"            <allow_databases><database>{escape(database)}</database></allow_databases>",
                f"        </{user.name}>"]
    out += ["    </users>", "</yandex>", ""]
    return "\n".join(out)


def write_users(secrets_dir: Path, out: Path, database: str, networks: Sequence[str]) -> list[str]:
    """Render the file from the passwords in `secrets_dir`; returns the user names written."""
    if not database.isidentifier():
        raise UsersError(f"bad database name {database!r}")
    for cidr in networks:
        network_entry(cidr)  # every bad network is refused before any file is written
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = [ADMIN, *(u.name for u in USERS)]
    passwords = {name: read_or_create_password(secrets_dir, name) for name in names}
    text = render(passwords, database, networks)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.users", description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets-dir", type=Path, required=True, metavar="DIR",
                        help="folder of USER.password files (0600); missing ones are created at random")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="the users.d file to write, e.g. /etc/clickhouse-server/users.d/stb-users.xml")
    parser.add_argument("--database", default="stb", help="the one database the users may touch (default stb)")
    parser.add_argument("--network", action="append", metavar="CIDR",
                        help="where component users may connect from (repeat; default: loopback and "
                             "private ranges)")
    args = parser.parse_args(argv)
    try:
        names = write_users(args.secrets_dir, args.out, args.database, tuple(args.network or DEFAULT_NETWORKS))
    except (UsersError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: users {', '.join(names)}; passwords in {args.secrets_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
