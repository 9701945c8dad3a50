"""Compiling a segment AST to one parameterised query over a day's profiles (crm.fields.base_sql).

The SQL text is built only from this module's templates, whitelisted field SQL and integers the
compiler counts itself; every value of the expression (tag names, strings, numbers, salts) is a
%(vN)s parameter. So two expressions with the same shape compile to the same SQL text.
"""

from __future__ import annotations

from typing import Any

from crm.fields import FIELDS, base_sql
from crm.segment_parser import And, Bucket, Compare, In, Node, Not, Or, Tag, TagIn

BUCKETS = 10_000


class _Compiler:
    def __init__(self, db: str) -> None:
        self.db = db
        self.params: dict[str, Any] = {}

    def param(self, value: float | str) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def tags_in(self, names: list[str]) -> str:
        values = ", ".join(self.param(n) for n in names)
        # %(run)s: the day's newest tag run, looked up once by the caller (crm.segments.query)
        return (f"household_id IN (SELECT household_id FROM {self.db}.household_tags WHERE day = toDate(%(day)s) "
                f"AND computed_ms = %(run)s AND tag IN ({values}))")

    def node(self, n: Node) -> str:
        if isinstance(n, Tag):
            return self.tags_in([n.name])
        if isinstance(n, TagIn):
            cond = self.tags_in([f"{n.level}.{name}" for name in n.names])
            return f"NOT ({cond})" if n.negate else cond
        if isinstance(n, Compare):
            return f"({FIELDS[n.field].sql}) {n.op} {self.param(n.value)}"
        if isinstance(n, In):
            cond = f"({FIELDS[n.field].sql}) IN ({', '.join(self.param(v) for v in n.values)})"
            return f"NOT ({cond})" if n.negate else cond
        if isinstance(n, Bucket):
            return (f"modulo(sipHash64(concat(toString(household_id), ':', {self.param(n.salt)})), {BUCKETS}) "
                    f"{n.op} {self.param(n.value)}")
        if isinstance(n, Not):
            return f"NOT ({self.node(n.item)})"
        if isinstance(n, And):
            return "(" + " AND ".join(self.node(i) for i in n.items) + ")"
        if isinstance(n, Or):
            return "(" + " OR ".join(self.node(i) for i in n.items) + ")"
        raise TypeError(f"not a segment node: {n!r}")


def compile_segment(node: Node, db: str) -> tuple[str, dict[str, Any]]:
    """`SELECT household_id FROM ... WHERE ...` for day %(day)s and tag run %(run)s (the caller adds both),
    and its parameters."""
    c = _Compiler(db)
    where = c.node(node)
    return f"SELECT household_id FROM ({base_sql(db)}) WHERE {where}", c.params
