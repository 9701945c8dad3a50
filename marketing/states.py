"""Contact states: the seven of the issue, per campaign and household, kept as a history in `contacts`.

    not_contacted  in the audience, no message shown yet (also every holdout household)
    contacted      a message was shown (msg_shown from the box)
    no_response    no answer within `waves.after_hours` of the message (shown or not; a dismissal
                   counts as no answer) — re-contacted while waves remain
    interested     answered 1
    converted      answered 2 (accepted), or the product appeared in the subscriber extract within
                   `attribution_days` of the campaign's first send, or (a guide campaign that tunes
                   or records) the household watched 5 minutes of the promoted airing
    refused        answered 3
    unsubscribed   answered 4; every later campaign leaves the household alone

Answers to any of the campaign's messages count, the strongest first: unsubscribed > converted >
refused > interested. The latest row of a household wins (argMax by `at_ms`); a row is written
only when the state changes, and one when a message is sent (state unchanged, new wave/variant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from marketing.campaign import Campaign
from marketing.store import text_column
from warehouse import Warehouse

STATES: Final = ("not_contacted", "contacted", "no_response", "interested", "converted", "refused", "unsubscribed")
# response code -> (precedence, state); 0 (dismissed) is no answer
ANSWERS: Final = {4: (4, "unsubscribed"), 2: (3, "converted"), 3: (2, "refused"), 1: (1, "interested")}
DAY_MS: Final = 86_400_000


def aligned(keys: np.ndarray, values: np.ndarray, to: np.ndarray, default: object) -> np.ndarray:
    """values[keys == to[i]] for each i (`keys` sorted and unique), `default` where absent."""
    out = np.full(len(to), default, dtype=values.dtype)
    if len(keys) == 0 or len(to) == 0:
        return out
    pos = np.minimum(np.searchsorted(keys, to), len(keys) - 1)
    hit = keys[pos] == to
    out[hit] = values[pos[hit]]
    return out


@dataclass(frozen=True)
class ContactBook:
    """The latest contact row of each household of one campaign (sorted by household)."""

    household_id: np.ndarray
    holdout: np.ndarray
    wave: np.ndarray
    state: np.ndarray
    variant: np.ndarray
    message_id: np.ndarray

    @classmethod
    def load(cls, warehouse: Warehouse, campaign: str) -> ContactBook:
        got = warehouse.query_columns(
            "SELECT household_id, argMax(holdout, at_ms) AS holdout, argMax(wave, at_ms) AS wave, "
            "argMax(state, at_ms) AS state, argMax(variant, at_ms) AS variant, argMax(message_id, at_ms) AS message_id "
            f"FROM {warehouse.database}.contacts WHERE campaign = %(c)s GROUP BY household_id ORDER BY household_id",
            {"c": campaign})
        return cls(np.asarray(got["household_id"], dtype=np.uint64), np.asarray(got["holdout"], dtype=np.uint8),
                   np.asarray(got["wave"], dtype=np.int64), np.asarray(got["state"], dtype=object),
                   np.asarray(got["variant"], dtype=object), np.asarray(got["message_id"], dtype=object))

    def __len__(self) -> int:
        return len(self.household_id)


@dataclass(frozen=True)
class Sends:
    """Per household of one campaign: messages sent (its wave), and the last one (sorted by household)."""

    household_id: np.ndarray
    waves: np.ndarray
    first_ms: np.ndarray
    last_ms: np.ndarray
    message_id: np.ndarray
    variant: np.ndarray

    @classmethod
    def load(cls, warehouse: Warehouse, campaign: str) -> Sends:
        got = warehouse.query_columns(
            "SELECT household_id, count() AS waves, min(decided_ms) AS first_ms, max(decided_ms) AS last_ms, "
            "argMax(message_id, decided_ms) AS message_id, argMax(variant, decided_ms) AS variant "
            f"FROM {warehouse.database}.deliveries WHERE campaign = %(c)s AND status = 'sent' "
            "GROUP BY household_id ORDER BY household_id", {"c": campaign})
        return cls(np.asarray(got["household_id"], dtype=np.uint64), np.asarray(got["waves"], dtype=np.int64),
                   np.asarray(got["first_ms"], dtype=np.int64), np.asarray(got["last_ms"], dtype=np.int64),
                   np.asarray(got["message_id"], dtype=object),
                   np.asarray(got["variant"], dtype=object))


@dataclass(frozen=True)
class Answers:
    """What the boxes said about one campaign's messages (from `events`)."""

    shown_ids: np.ndarray       # message ids with a msg_shown
    household_id: np.ndarray    # per answer (msg_response with code 1..4)
    code: np.ndarray

    @classmethod
    def load(cls, warehouse: Warehouse, campaign: str) -> Answers:
        db = warehouse.database
        shown = warehouse.query_columns(f"SELECT DISTINCT message_id FROM {db}.events WHERE kind = 'msg_shown' "
                                        "AND campaign = %(c)s", {"c": campaign})
        got = warehouse.query_columns(f"SELECT household_id, response FROM {db}.events WHERE kind = 'msg_response' "
                                      "AND campaign = %(c)s AND response > 0", {"c": campaign})
        return cls(np.asarray(shown["message_id"], dtype=object), np.asarray(got["household_id"], dtype=np.uint64),
                   np.asarray(got["response"], dtype=np.int64))


def first_send_ms(warehouse: Warehouse, campaign: str) -> int | None:
    got = warehouse.query_rows(f"SELECT min(decided_ms), count() FROM {warehouse.database}.deliveries "
                               "WHERE campaign = %(c)s AND status = 'sent'", {"c": campaign})
    return int(got[0][0]) if got and int(got[0][1]) else None


def extract_converters(warehouse: Warehouse, product: str, since_ms: int, days: float) -> np.ndarray:
    """Households whose subscriber record gained `product` in [since, since + days] (by the history)."""
    if not product:
        return np.empty(0, dtype=np.uint64)
    since_day = np.datetime64(since_ms, "ms").astype("datetime64[D]")
    until_day = np.datetime64(since_ms + int(days * DAY_MS), "ms").astype("datetime64[D]")
    has = "has(splitByChar(';', products), %(p)s)"
    got = warehouse.query_columns(
        f"SELECT household_id FROM (SELECT household_id, "
        f"  argMaxIf({has}, day, day < toDate(%(since)s)) AS had, "
        f"  maxIf(1, {has} AND day >= toDate(%(since)s) AND day <= toDate(%(until)s)) AS got "
        f"  FROM {warehouse.database}.subscriber_history GROUP BY household_id) WHERE got = 1 AND had = 0",
        {"p": product, "since": str(since_day), "until": str(until_day)})
    return np.unique(np.asarray(got["household_id"], dtype=np.uint64))


WATCHED_MS: Final = 5 * 60_000   # a promoted airing counts as watched after 5 minutes of it


def airing_watchers(warehouse: Warehouse, campaign: str) -> np.ndarray:
    """Households that watched at least 5 minutes of an airing the campaign promoted (its guide
    occasions with a message sent), whether or not they got the message: a tune/record campaign's
    conversion, measurable in the holdout too."""
    db = warehouse.database
    keys = [str(k) for (k,) in warehouse.query_rows(
        f"SELECT DISTINCT occasion FROM {db}.deliveries WHERE campaign = %(c)s AND status = 'sent' "
        "AND startsWith(occasion, 'airing:')", {"c": campaign})]
    spans = []
    for key in keys:
        _, channel, start = key.split(":")
        got = warehouse.query_rows(f"SELECT max(stop_ms) FROM {db}.airings FINAL WHERE channel_id = %(ch)s "
                                   "AND start_ms = %(start)s", {"ch": int(channel), "start": int(start)})
        if got and got[0][0]:
            spans.append(f"(channel_id = {int(channel)} AND least(ts_ms + duration_s * 1000, {int(got[0][0])}) - "
                         f"greatest(ts_ms, {int(start)}) >= {WATCHED_MS})")
    if not spans:
        return np.empty(0, dtype=np.uint64)
    got_ids = warehouse.query_columns(f"SELECT DISTINCT household_id FROM {db}.events WHERE kind = 'view' AND "
                                      f"({' OR '.join(spans)})")
    return np.unique(np.asarray(got_ids["household_id"], dtype=np.uint64))


def converters(warehouse: Warehouse, campaign: Campaign, first_ms: int) -> np.ndarray:
    """Conversions the boxes' answers do not show: the product in the extract within attribution_days
    of the first send, and, for a guide campaign that tunes or records, the promoted airing watched."""
    out = extract_converters(warehouse, campaign.product, first_ms, campaign.attribution_days)
    promotes_airing = any(v.action.get("type") in ("tune", "record") for v in campaign.variants)
    if campaign.trigger is not None and campaign.trigger.kind == "guide" and promotes_airing:
        out = np.union1d(out, airing_watchers(warehouse, campaign.id))
    return out


def derive(book: ContactBook, sends: Sends, answers: Answers, converters: np.ndarray, now_ms: int,
           after_ms: int) -> np.ndarray:
    """The state each household of `sends` is in now (aligned to sends.household_id)."""
    n = len(sends.household_id)
    current = aligned(book.household_id, book.state, sends.household_id, "not_contacted")
    shown = np.isin(sends.message_id, answers.shown_ids)
    late = now_ms - sends.last_ms >= after_ms
    state = current.copy()
    # The last message's fate, unless an answer says more.
    state[shown & ~late] = "contacted"
    state[late] = "no_response"
    rank = np.zeros(n, dtype=np.int64)
    for code, (precedence, _name) in ANSWERS.items():
        who = np.unique(answers.household_id[answers.code == code])
        hit = np.isin(sends.household_id, who)
        rank = np.where(hit, np.maximum(rank, precedence), rank)
    rank = np.where(np.isin(sends.household_id, converters), np.maximum(rank, ANSWERS[2][0]), rank)
    for precedence, name in ANSWERS.values():
        state[rank == precedence] = name
    # Never back from a settled state (a late re-derivation of the same data changes nothing).
    settled = np.isin(current, ("converted", "refused", "unsubscribed")) & (rank == 0)
    state[settled] = current[settled]
    return state


def update(warehouse: Warehouse, campaign: Campaign, now_ms: int) -> tuple[dict[str, int], Sends]:
    """Bring the campaign's treated households' states up to date; returns the counts of changes by
    new state, and the sends it read (the engine's next step needs them; nothing is sent between)."""
    sends = Sends.load(warehouse, campaign.id)
    if len(sends.household_id) == 0:
        return {}, sends
    book = ContactBook.load(warehouse, campaign.id)
    answers = Answers.load(warehouse, campaign.id)
    state = derive(book, sends, answers, converters(warehouse, campaign, int(sends.first_ms.min())), now_ms,
                   int(campaign.waves.after_hours * 3_600_000))
    changed = state != aligned(book.household_id, book.state, sends.household_id, "")
    if not changed.any():
        return {}, sends
    ids = sends.household_id[changed]
    write_contacts(warehouse, campaign.id, ids, np.zeros(len(ids), dtype=np.uint8), sends.waves[changed],
                   state[changed], sends.variant[changed], sends.message_id[changed], now_ms)
    names, counts = np.unique(state[changed].astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}, sends


def write_contacts(warehouse: Warehouse, campaign: str, households: np.ndarray, holdout: np.ndarray,
                   waves: np.ndarray, states: np.ndarray, variants: np.ndarray, message_ids: np.ndarray,
                   at_ms: int) -> None:
    n = len(households)
    if n == 0:
        return
    warehouse.insert_columns("contacts", {
        "campaign": text_column([campaign] * n), "household_id": np.asarray(households, dtype=np.uint64),
        "holdout": np.asarray(holdout, dtype=np.uint8), "wave": np.asarray(waves, dtype=np.uint16),
        "state": np.asarray(states, dtype=object), "variant": np.asarray(variants, dtype=object),
        "message_id": np.asarray(message_ids, dtype=object), "at_ms": np.full(n, at_ms, dtype=np.int64)})
