"""The console's audit log (`console_audit`): who changed which campaign or segment, when, how.

Logins are logged too (by name only, never a password). Details name what changed (a segment's
expression, a campaign's status move), never a household id.
"""

from __future__ import annotations

from console.db import Db, now_ms
from warehouse.schema import CONSOLE_AUDIT_COLUMNS


async def record(db: Db, user: str, action: str, target: str, detail: str = "") -> None:
    await db.insert("console_audit", [{"at_ms": now_ms(), "user": user, "action": action, "target": target,
                                       "detail": detail[:2000]}], CONSOLE_AUDIT_COLUMNS)


async def recent(db: Db, limit: int = 200, target: str | None = None) -> list[tuple[int, str, str, str, str]]:
    where = " WHERE target = %(target)s" if target is not None else ""
    rows = await db.rows("SELECT at_ms, user, action, target, detail FROM {db}.console_audit" + where +
                         f" ORDER BY at_ms DESC LIMIT {int(limit)}", {"target": target} if target else None)
    return [(int(a), str(u), str(ac), str(t), str(d)) for a, u, ac, t, d in rows]
