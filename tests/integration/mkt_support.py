"""Shared by the marketing tests: a store with 100 profiled, consenting households and their boxes,
campaign files, and a publish function that records what the engine hands the broker."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import replace

import msgpack
import numpy as np

from marketing.engine import Engine
from marketing.publisher import Outgoing
from marketing.settings import MarketingSettings
from tests.integration.crm_support import event_rows
from tests.integration.test_crm_ratings import DAY
from tests.integration.test_crm_segments import fill
from warehouse import Warehouse

NOW = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(12), dt.UTC)   # the day after the profiles
NOW_MS = int(NOW.timestamp() * 1000)
FANS = [h for h in range(1, 101) if h % 3 == 0]                               # interest.football in `fill`
_SEQ = itertools.count(10_000)                                               # answer events' sequence numbers
NO_BOX = 99                                                                   # a fan whose box never reported


def campaign_file(cid: str, *, segment: str = "interest.football", product: str = "sports", holdout: float = 0.2,
                  priority: int = 0, extra: str = "", variants: Sequence[str] = ("a",), waves: str = "",
                  action: str = "offer") -> str:
    body = "\n".join(f'[[variants]]\nid = "{v}"\ntitle = "{v}: {{title}}"\nbody = "{{title}} on {{channel}} at '
                     f'{{start}}, {{product}}"\naction = {{ type = "{action}" }}' for v in variants)
    return (f'id = "{cid}"\nproduct = "{product}"\nsegment = "{segment}"\nholdout = {holdout}\n'
            f'priority = {priority}\n{waves}\n{extra}\n{body}\n')


def fill_marketing(store: Warehouse, seen_ms: int = NOW_MS - 20 * 3_600_000) -> None:
    """Profiles and tags of households 1..100 (test_crm_segments.fill), each consenting to messages on the
    box ("stb") with products "basic", and each but NO_BOX with one box (stb-<h>-0, region north) that
    reported at `seen_ms` (default: the day before NOW)."""
    fill(store)
    db = store.database
    store.execute(f"INSERT INTO {db}.subscribers (household_id, status, activated, products, region, "
                  f"contact_opt_in, as_of, imported_ms) SELECT number + 1, 'active', toDate('2024-01-01'), 'basic', "
                  f"'north', 'stb', toDate('{DAY}'), 1 FROM system.numbers LIMIT 100")
    store.execute(f"INSERT INTO {db}.subscriber_history (household_id, day, status, products, imported_ms) "
                  f"SELECT number + 1, toDate('2024-01-01'), 'active', 'basic', 1 FROM system.numbers LIMIT 100")
    store.insert_columns("events", event_rows([(h, 0, "view", seen_ms + h, 101, 11, 600)
                                               for h in range(1, 101) if h != NO_BOX]))


class Recorder:
    """Stands in for the broker connection: keeps every message, answers each with a reason code."""

    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[Outgoing] = []
        self.refuse = refuse

    def __call__(self, messages: Sequence[Outgoing]) -> list[int]:
        self.sent.extend(messages)
        return [self.refuse] * len(messages)

    def payloads(self) -> list[dict[str, object]]:
        return [msgpack.unpackb(m.payload) for m in self.sent]

    def households(self) -> set[int]:
        """From the topic's device id (stb-<household>-<k>, as crm_support.event_rows names boxes)."""
        return {int(m.topic.split("/")[3].split("-")[1]) for m in self.sent}


def engine(store: Warehouse, recorder: Recorder, **caps: object) -> Engine:
    settings = MarketingSettings()
    if caps:
        settings = replace(settings, caps=replace(settings.caps, **caps))
    return Engine(settings, store, recorder)


def deliveries(store: Warehouse, campaign: str) -> dict[str, int]:
    return {str(s): int(n) for s, n in store.query_rows(
        f"SELECT status, count() FROM {store.database}.deliveries WHERE campaign = %(c)s GROUP BY status",
        {"c": campaign})}


def states(store: Warehouse, campaign: str) -> dict[int, tuple[int, str]]:
    """household -> (holdout, latest state)."""
    return {int(h): (int(o), str(s)) for h, o, s in store.query_rows(
        f"SELECT household_id, argMax(holdout, at_ms), argMax(state, at_ms) FROM {store.database}.contacts "
        "WHERE campaign = %(c)s GROUP BY household_id", {"c": campaign})}


def answer(store: Warehouse, campaign: str, recorder: Recorder, codes: dict[int, int], at_ms: int) -> None:
    """The boxes of `codes`' households report msg_shown and then msg_response(code) for their last message."""
    by_household = {int(m.topic.split("/")[3].split("-")[1]): msgpack.unpackb(m.payload) for m in recorder.sent}
    rows = []
    for h, code in codes.items():
        msg = by_household[h]
        rows.append((h, msg, 8, None))
        if code >= 0:
            rows.append((h, msg, 9, code))
    cols = event_rows([(h, 0, "msg_shown" if kind == 8 else "msg_response", at_ms + i, 0, 0, 0)
                       for i, (h, _m, kind, _c) in enumerate(rows)])
    cols["seq"] = np.array([next(_SEQ) for _ in rows], dtype=np.uint64)
    for i, (_h, msg, _kind, code) in enumerate(rows):
        cols["message_id"][i] = msg["id"]
        cols["campaign"][i] = msg["campaign"]
        cols["variant"][i] = msg["variant"]
        cols["response"][i] = code or 0
    store.insert_columns("events", cols)
