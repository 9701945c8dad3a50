"""Console users in `console_users` (a row per change, newest `updated_ms` wins) and their roles.

Roles nest: admin > marketer > viewer. A viewer reads every page (households pseudonymised) and
changes nothing; a marketer also edits segments and campaigns; an admin also reads the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from console import BadUserInput, LoginRefused
from console.db import column
from console.security import hash_password, verify_password
from warehouse import Warehouse
from warehouse.schema import CONSOLE_USER_COLUMNS

ROLES: Final = {"viewer": 1, "marketer": 2, "admin": 3}
NAME: Final = re.compile(r"[a-z][a-z0-9._-]{0,31}")


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]

    @property
    def sees_ids(self) -> bool:
        """Personal-data access: household ids instead of pseudonyms."""
        return self.can("marketer")


def add_user(warehouse: Warehouse, name: str, role: str, password: str, at_ms: int) -> None:
    """Create a user, or replace an existing one's role and password."""
    if not NAME.fullmatch(name):
        raise BadUserInput(f"name {name!r}: lower case letter, then letters, digits . _ - (32 at most)",
                           field="name")
    if role not in ROLES:
        raise BadUserInput(f"role {role!r}: one of {', '.join(ROLES)}", field="role")
    hashed = hash_password(password)
    found = warehouse.query_rows(f"SELECT min(created_ms) FROM {warehouse.database}.console_users "
                                 "WHERE name = %(name)s HAVING count() > 0", {"name": name})
    created = int(found[0][0]) if found else at_ms
    row = {"name": name, "role": role, "password_hash": hashed, "created_ms": created, "updated_ms": at_ms,
           "disabled": 0}
    warehouse.insert_columns("console_users", {c: column([row[c]], t) for c, t in CONSOLE_USER_COLUMNS.items()})


def lookup(warehouse: Warehouse, name: str) -> tuple[User, str] | None:
    """(user, password hash) of an enabled user, else None."""
    rows = warehouse.query_rows(
        f"SELECT argMax(role, updated_ms), argMax(password_hash, updated_ms), argMax(disabled, updated_ms) "
        f"FROM {warehouse.database}.console_users WHERE name = %(name)s GROUP BY name", {"name": name})
    if not rows or int(rows[0][2]) or str(rows[0][0]) not in ROLES:
        return None
    return User(name, str(rows[0][0])), str(rows[0][1])


def authenticate(warehouse: Warehouse, name: str, password: str) -> User:
    found = lookup(warehouse, name)
    if found is None:
        verify_password(password, _DUMMY)  # the same work either way: no telling names apart by time
        raise LoginRefused()
    user, hashed = found
    if not verify_password(password, hashed):
        raise LoginRefused()
    return user


_DUMMY: Final = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
