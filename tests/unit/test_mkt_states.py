"""Contact states from sends, shows, answers, extract conversions and time (marketing.states.derive)."""

from __future__ import annotations

import numpy as np

from marketing.states import Answers, ContactBook, Sends, derive

HOUR = 3_600_000
NOW = 100 * HOUR


def book(states: dict[int, str]) -> ContactBook:
    ids = np.array(sorted(states), dtype=np.uint64)
    n = len(ids)
    return ContactBook(ids, np.zeros(n, dtype=np.uint8), np.ones(n, dtype=np.int64),
                       np.array([states[int(h)] for h in ids], dtype=object), np.full(n, "a", dtype=object),
                       np.full(n, "", dtype=object))


def sends(last_ms: dict[int, int]) -> Sends:
    ids = np.array(sorted(last_ms), dtype=np.uint64)
    last = np.array([last_ms[int(h)] for h in ids], dtype=np.int64)
    return Sends(ids, np.ones(len(ids), dtype=np.int64), last, last,
                 np.array([f"m{int(h)}" for h in ids], dtype=object), np.full(len(ids), "a", dtype=object))


def answers(shown: list[int], codes: dict[int, list[int]]) -> Answers:
    who = [h for h, cs in codes.items() for _ in cs]
    return Answers(np.array([f"m{h}" for h in shown], dtype=object), np.array(who, dtype=np.uint64),
                   np.array([c for cs in codes.values() for c in cs], dtype=np.int64))


def run(states: dict[int, str], last_ms: dict[int, int], shown: list[int], codes: dict[int, list[int]],
        converters: list[int] = ()) -> dict[int, str]:  # type: ignore[assignment]
    s = sends(last_ms)
    got = derive(book(states), s, answers(shown, codes), np.array(converters, dtype=np.uint64), NOW, 24 * HOUR)
    return {int(h): str(v) for h, v in zip(s.household_id, got, strict=True)}


def test_shown_without_answer_is_contacted_until_the_window_passes() -> None:
    got = run({1: "not_contacted", 2: "not_contacted", 3: "not_contacted"},
              {1: NOW - HOUR, 2: NOW - 25 * HOUR, 3: NOW - HOUR}, shown=[1, 2], codes={})
    assert got == {1: "contacted", 2: "no_response", 3: "not_contacted"}


def test_answers_by_precedence_and_a_dismissal_is_no_answer() -> None:
    got = run({h: "not_contacted" for h in range(1, 6)}, {h: NOW - HOUR for h in range(1, 6)}, shown=[1, 2, 3, 4, 5],
              codes={1: [1, 2], 2: [3, 1], 3: [2, 4], 4: [1], 5: [0]})
    assert got == {1: "converted", 2: "refused", 3: "unsubscribed", 4: "interested", 5: "contacted"}


def test_an_extract_conversion_counts_and_settled_states_stay() -> None:
    got = run({1: "no_response", 2: "refused", 3: "converted"}, {1: NOW - 30 * HOUR, 2: NOW - 30 * HOUR,
                                                                  3: NOW - 30 * HOUR},
              shown=[], codes={}, converters=[1])
    assert got == {1: "converted", 2: "refused", 3: "converted"}


def test_a_new_wave_not_yet_shown_keeps_no_response() -> None:
    got = run({1: "no_response"}, {1: NOW - HOUR}, shown=[], codes={})
    assert got == {1: "no_response"}
