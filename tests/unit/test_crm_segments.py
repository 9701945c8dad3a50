"""The segment language: parsing, errors with positions, and compilation that never puts user text in SQL."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.errors import SegmentError
from crm.fields import FIELDS
from crm.segment_parser import KEYWORDS, And, Bucket, Compare, In, Not, Or, Tag, TagIn, parse
from crm.segment_sql import compile_segment

ISSUE_EXAMPLE = ("interest.football and value in (high, mid) and not lifecycle.dormant and minutes_28d >= 300 "
                 "and region = 'north'")


def test_the_issue_example() -> None:
    assert parse(ISSUE_EXAMPLE) == And((
        Tag("interest.football"), TagIn("value", ("high", "mid")), Not(Tag("lifecycle.dormant")),
        Compare("minutes_28d", ">=", 300.0), Compare("region", "=", "north")))


def test_precedence_parentheses_and_forms() -> None:
    want = Or((Tag("interest.b"), And((Tag("value.d"), Not(Tag("risk.f"))))))
    assert parse("interest.b or value.d and not risk.f") == want
    assert parse("(product.sports OR product.full) AND bucket('spring-25') < 1000") == And((
        Or((Tag("product.sports"), Tag("product.full"))), Bucket("spring-25", "<", 1000.0)))
    assert parse("region not in ('north', \"so'uth\", east)") == In("region", ("north", "so'uth", "east"), True)
    assert parse("value = high") == Tag("value.high")
    assert parse("value not in (low)") == TagIn("value", ("low",), True)
    assert parse("trend <> 1.5") == Compare("trend", "!=", 1.5)
    assert parse("region = 'it''s'") == Compare("region", "=", "it's")


@pytest.mark.parametrize(("expr", "message", "position"), [
    ("interest.football and minuts_28d >= 300", "unknown field 'minuts_28d' at 23; did you mean 'minutes_28d'?", 23),
    ("minutes_28d >= 'many'", "expected a number for 'minutes_28d' at 16", 16),
    ("region = ", "expected a text value for 'region' at 10, got the end", 10),
    ("interest.football and", "expected a tag, a field or bucket(...) at 22, got the end", 22),
    ("(value in (high)", "expected ')' at 17", 17),
    ("hobby.chess", "unknown tag level 'hobby' at 1", 1),
    ("minutes_28d >= 3 minutes_7d", "expected 'and', 'or' or the end at 18", 18),
    ("region ~ 'x'", "unexpected '~' at 8", 8),
    ("", "empty expression", 1),
    ("valeu in (high)", "did you mean 'value'?", 1),
    ("bucket(1) < 10", "expected a salt", 8),
])
def test_errors_name_the_position(expr: str, message: str, position: int) -> None:
    with pytest.raises(SegmentError) as caught:
        parse(expr)
    assert message in str(caught.value) and caught.value.position == position


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(SegmentError, match="nested deeper"):
        parse("(" * 500 + "value.high" + ")" * 500)
    with pytest.raises(SegmentError, match="nested deeper"):
        parse("not " * 500 + "value.high")


def test_values_are_parameters() -> None:
    sql, params = compile_segment(parse("region = 'x'' OR 1=1 --' and interest.football and bucket('s') < 5"), "stb")
    assert "OR 1=1" not in sql and "football" not in sql and "'s'" not in sql
    assert sorted(params.values(), key=str) == sorted(["x' OR 1=1 --", "interest.football", "s", 5.0], key=str)


# --- properties ---------------------------------------------------------------------------------

MARK = "\u00a7"  # every generated text value carries it; no SQL template does
_text = st.text(st.characters(codec="utf-8"), max_size=12).map(lambda s: MARK + s)
# A bare tag name is never a keyword: `value in (in)` is rightly a syntax error.
_name = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
_numeric = sorted(f for f, spec in FIELDS.items() if spec.kind == "number")
_textual = sorted(f for f, spec in FIELDS.items() if spec.kind == "text")
_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


_atoms = st.one_of(
    st.builds(lambda lv, n: f"{lv}.{n}", st.sampled_from(["interest", "value", "lifecycle", "product"]), _name),
    st.builds(lambda f, op, v: f"{f} {op} {v}", st.sampled_from(_numeric), _ops,
              st.integers(-10**6, 10**6).map(str)),
    st.builds(lambda f, op, v: f"{f} {op} {_quote(v)}", st.sampled_from(_textual), _ops, _text),
    st.builds(lambda f, vs: f"{f} in ({', '.join(map(_quote, vs))})", st.sampled_from(_textual),
              st.lists(_text, min_size=1, max_size=3)),
    st.builds(lambda s, n: f"bucket({_quote(s)}) < {n}", _text, st.integers(0, 10_000)),
    st.builds(lambda ns: f"value in ({', '.join(ns)})", st.lists(_name, min_size=1, max_size=3)),
)
_exprs = st.recursive(_atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
    st.builds(lambda a, b: f"{a} or {b}", inner, inner),
    st.builds(lambda a: f"not ({a})", inner)), max_leaves=8)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=200))
def test_the_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        node = parse(text)
    except SegmentError as exc:
        assert 1 <= exc.position <= len(text) + 2
        return
    compile_segment(node, "stb")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(st.sampled_from(list("abcinotrdemg_.()'=<>, 0123456789")), max_size=60))
def test_the_parser_never_crashes_on_near_valid_text(text: str) -> None:
    try:
        node = parse(text)
    except SegmentError as exc:
        assert 1 <= exc.position <= len(text) + 2
        return
    sql, params = compile_segment(node, "stb")
    assert len(params) == sql.count("%(v")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_exprs)
def test_compiled_sql_depends_only_on_the_shape(expr: str) -> None:
    """Every value is a parameter: the SQL has one placeholder per value, and no user text in it."""
    node = parse(expr)
    sql, params = compile_segment(node, "stb")
    assert len(params) == sql.count("%(v") and MARK not in sql
    assert all(f"%({name})s" in sql for name in params)
    for value in params.values():
        if isinstance(value, str) and "." in value:      # a tag name
            assert value not in sql
