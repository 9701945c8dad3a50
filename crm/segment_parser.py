"""The segment expression language: tokens -> AST. No SQL here (crm.segment_sql compiles the AST).

    interest.football and value in (high, mid) and not lifecycle.dormant
        and minutes_28d >= 300 and region = 'north' and bucket('spring') < 1000

Grammar (keywords case-insensitive):
    expr     := and_expr ("or" and_expr)*
    and_expr := unary ("and" unary)*
    unary    := "not" unary | "(" expr ")" | atom
    atom     := TAG                                   a tag of the day: interest.football
              | LEVEL ("=" NAME | ["not"] "in" "(" NAME ("," NAME)* ")")   value in (high, mid)
              | FIELD OP VALUE | FIELD ["not"] "in" "(" VALUE ("," VALUE)* ")"
              | "bucket" "(" STRING | NAME ")" OP NUMBER      stable hash of household and salt, 0..9999
    OP := = != <> < <= > >=      VALUE := NUMBER | 'string' | "string" | NAME
Errors carry the 1-based position and, for a name that is not a field, the nearest valid one.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Final

from crm.catalogue import LEVELS
from crm.errors import SegmentError
from crm.fields import FIELDS

MAX_LENGTH: Final = 4000
MAX_DEPTH: Final = 50
KEYWORDS: Final = ("and", "or", "not", "in")
OPS: Final = ("=", "!=", "<>", "<", "<=", ">", ">=")
_TOKEN: Final = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*)
  | (?P<op><=|>=|!=|<>|[=<>(),])
""", re.VERBOSE)


# --- AST -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tag:
    name: str


@dataclass(frozen=True)
class TagIn:
    level: str
    names: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: float | str


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[float | str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Bucket:
    salt: str
    op: str
    value: float


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Tag | TagIn | Compare | In | Bucket | Not | And | Or


@dataclass(frozen=True)
class Token:
    kind: str      # number, string, name, op, end
    text: str
    pos: int       # 1-based

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "name" else ""


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise SegmentError(f"expression longer than {MAX_LENGTH} characters", position=MAX_LENGTH + 1)
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise SegmentError(f"unexpected {text[i]!r} at {i + 1}", position=i + 1)
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), i + 1))
        i = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


def _unquote(text: str) -> str:
    q = text[0]
    return text[1:-1].replace(q + q, q)


def nearest(name: str) -> str:
    choices = [*FIELDS, *LEVELS, "bucket"]
    found = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean '{found[0]}'?" if found else f" (fields: {', '.join(sorted(FIELDS))})"


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.t = tokens
        self.i = 0
        self.depth = 0

    @property
    def cur(self) -> Token:
        return self.t[self.i]

    def take(self) -> Token:
        tok = self.t[self.i]
        self.i = min(self.i + 1, len(self.t) - 1)
        return tok

    def fail(self, what: str, tok: Token | None = None) -> SegmentError:
        tok = tok or self.cur
        got = "the end" if tok.kind == "end" else repr(tok.text if len(tok.text) <= 30 else tok.text[:27] + "...")
        return SegmentError(f"expected {what} at {tok.pos}, got {got}", position=tok.pos)

    def expect_op(self, op: str) -> Token:
        if self.cur.kind != "op" or self.cur.text != op:
            raise self.fail(f"'{op}'")
        return self.take()

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SegmentError(f"expression nested deeper than {MAX_DEPTH} at {self.cur.pos}", position=self.cur.pos)
        items = [self.and_expr()]
        while self.cur.word == "or":
            self.take()
            items.append(self.and_expr())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.cur.word == "and":
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        if self.cur.word == "not":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise SegmentError(f"expression nested deeper than {MAX_DEPTH} at {self.cur.pos}",
                                   position=self.cur.pos)
            negated: Node = Not(self.unary())
            self.depth -= 1
            return negated
        if self.cur.kind == "op" and self.cur.text == "(":
            self.take()
            node = self.expr()
            self.expect_op(")")
            return node
        return self.atom()

    def atom(self) -> Node:
        tok = self.cur
        if tok.kind != "name" or tok.word in KEYWORDS:
            raise self.fail("a tag, a field or bucket(...)")
        self.take()
        name = tok.text.lower()
        if "." in name:
            if name.split(".")[0] not in LEVELS:
                raise SegmentError(f"unknown tag level '{name.split('.')[0]}' at {tok.pos} (levels: "
                                   f"{', '.join(LEVELS)})", position=tok.pos)
            return Tag(name)
        if name == "bucket" and self.cur.kind == "op" and self.cur.text == "(":
            return self.bucket()
        if name in LEVELS:
            return self.level(name)
        if name not in FIELDS:
            raise SegmentError(f"unknown field '{tok.text}' at {tok.pos}{nearest(name)}", position=tok.pos)
        negate = self.cur.word == "not"
        if negate:
            self.take()
            if self.cur.word != "in":
                raise self.fail("'in' after 'not'")
        if self.cur.word == "in":
            self.take()
            self.expect_op("(")
            values = [self.value(name)]
            while self.cur.kind == "op" and self.cur.text == ",":
                self.take()
                values.append(self.value(name))
            self.expect_op(")")
            return In(name, tuple(values), negate)
        if self.cur.kind != "op" or self.cur.text not in OPS:
            raise self.fail(f"a comparison ({' '.join(OPS)}) or 'in' after '{name}'")
        op = self.take().text
        return Compare(name, "!=" if op == "<>" else op, self.value(name))

    def level(self, level: str) -> Node:
        negate = False
        if self.cur.kind == "op" and self.cur.text == "=":
            self.take()
            return Tag(f"{level}.{self.name_value()}")
        if self.cur.word == "not":
            self.take()
            negate = True
        if self.cur.word != "in":
            raise self.fail(f"'=' or 'in' after the tag level '{level}'")
        self.take()
        self.expect_op("(")
        names = [self.name_value()]
        while self.cur.kind == "op" and self.cur.text == ",":
            self.take()
            names.append(self.name_value())
        self.expect_op(")")
        return TagIn(level, tuple(names), negate)

    def name_value(self) -> str:
        tok = self.cur
        if tok.kind == "name" and "." not in tok.text and tok.word not in KEYWORDS:
            return self.take().text.lower()
        if tok.kind == "string" and re.fullmatch(r"[a-z0-9_][a-z0-9_.-]{0,62}", _unquote(tok.text).lower()):
            return _unquote(self.take().text).lower()
        raise self.fail("a tag name")

    def value(self, field: str) -> float | str:
        tok = self.cur
        if FIELDS[field].kind == "number":
            if tok.kind != "number":
                raise self.fail(f"a number for '{field}'")
            self.take()
            return float(tok.text)
        if tok.kind == "string":
            return _unquote(self.take().text)
        if tok.kind == "name" and tok.word not in KEYWORDS:
            return self.take().text
        raise self.fail(f"a text value for '{field}'")

    def bucket(self) -> Node:
        self.expect_op("(")
        tok = self.cur
        if tok.kind == "string":
            salt = _unquote(self.take().text)
        elif tok.kind == "name" and tok.word not in KEYWORDS:
            salt = self.take().text
        else:
            raise self.fail("a salt ('text') in bucket(...)")
        self.expect_op(")")
        if self.cur.kind != "op" or self.cur.text not in OPS:
            raise self.fail("a comparison after bucket(...)")
        op = self.take().text
        if self.cur.kind != "number":
            raise self.fail("a number 0..10000 after bucket(...)")
        return Bucket(salt, "!=" if op == "<>" else op, float(self.take().text))


def parse(text: str) -> Node:
    """The AST of an expression; SegmentError (with a position) for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise SegmentError("empty expression", position=1)
    p = _Parser(tokenize(text))
    node = p.expr()
    if p.cur.kind != "end":
        raise p.fail("'and', 'or' or the end")
    return node
