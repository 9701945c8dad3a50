"""The marketing benchmark's quality part: the real engine in a closed loop with simulated households.

A simulated fleet (firmware_sim) is loaded into ClickHouse 18.16 (guide, events, subscriber extract),
profiled and tagged by the CRM; then a campaign — a sports-package offer with three content variants
and four daily waves — runs cycle by cycle in simulated time. Each message the engine hands over is
answered by the simulator's response model (firmware_sim.responses: taste, fatigue, the variant's
hidden appeal) and the answers are written as the boxes' msg_shown / msg_response events; organic
purchases of the product (what the holdout converts at) go into the subscriber history. The same
campaign runs on a second copy of the world with a random audience of the same size.

Measured against the simulator's truth: targeted vs random conversion, whether the report's 95 %
uplift interval holds the planted (expected) uplift of the treated arm, and the share of the last
wave that went to the best variant.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from benchmarks.churn import ChurnWorld
from crm.catalogue import load_catalogue
from crm.profiles import build_profiles
from crm.settings import CrmSettings
from crm.tags import build_tags
from firmware_sim.responses import ACCEPTED, MessageTopic, ResponseModel, decision_rng, variant_appeal
from firmware_sim.xmltv import write_xmltv
from marketing import store as registry
from marketing.caps import CapRule
from marketing.engine import Engine
from marketing.publisher import Outgoing
from marketing.report import build_report
from marketing.settings import MarketingSettings
from warehouse import Warehouse
from warehouse.columns import EVENT_COLUMNS
from warehouse.xmltv_import import import_xmltv

DAY_MS = 86_400_000
CAMPAIGN = "sports-offer"
# Three content variants; their hidden appeal (firmware_sim.responses.variant_appeal, fixed by campaign and
# variant id) is 1.32, 0.88 and 0.60: a clear best for the bandit to find. (With ids a/b/c the two best were
# 1.075 and 0.989, 9 % apart: no allocation can tell them apart at this size, and none should.)
VARIANTS = ("match", "price", "quiz")
WAVES = 4
TARGETED = "interest.football and not product.sports and not product.full"
# Waves a day apart need a product cap of one a day (the default, one a week, would hold wave 2 for a week).
CAPS = (CapRule("channel", 2, 1), CapRule("product", 1, 1), CapRule("global", 5, 7))


def campaign_text(segment: str) -> str:
    variants = "\n".join(f'[[variants]]\nid = "{v}"\ntitle = "Sports package, offer {v.upper()}"\n'
                         f'body = "All the football for {{product}}. Press OK."\naction = {{ type = "offer" }}'
                         for v in VARIANTS)
    return (f'id = "{CAMPAIGN}"\nproduct = "sports"\nsegment = "{segment}"\nholdout = 0.1\nattribution_days = 7\n'
            f'[waves]\ncount = {WAVES}\nafter_hours = 23\n{variants}\n')


def load_world(store: Warehouse, world: ChurnWorld, tmp: Path) -> None:
    write_xmltv(world.epg, tmp / "guide.xml")
    import_xmltv(tmp / "guide.xml", store, progress=False)
    world.load(store, tmp)
    catalogue = load_catalogue()
    build_profiles(store, world.last_day, CrmSettings(), catalogue)
    build_tags(store, world.last_day, catalogue)


@dataclass
class Loop:
    """The simulated households' side: answers each message, remembers what each household got."""

    world: ChurnWorld
    model: ResponseModel
    seed: int
    store: Warehouse
    received: dict[int, list[int]] = field(default_factory=dict)           # household -> send times
    reach: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # household -> (P shown, P accept)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(5_000_000))

    def __call__(self, messages: Sequence[Outgoing]) -> list[int]:
        rows: list[tuple[int, str, int, int, dict[str, Any], int]] = []
        for m in messages:
            payload = msgpack.unpackb(m.payload)
            device = m.topic.split("/")[3]
            household = device_household(device)
            row = self.world.households.index_of(household)
            now_ms = int(payload["expires"]) - m.expiry_s * 1000
            past = self.received.setdefault(household, [])
            k = sum(1 for t in past if now_ms - t < 7 * DAY_MS)
            past.append(now_ms)
            topic = MessageTopic.of(payload, self.world.epg)
            shown_p = float(self.model.p_shown(np.array([row]), now_ms, int(payload["expires"]))[0])
            accept_p = float(self.model.p_response(np.array([row]), topic, k)[0, ACCEPTED])
            self.reach.setdefault(household, []).append((shown_p, accept_p))
            answer = self.model.decide(row, payload, now_ms, k, decision_rng(self.seed, household, payload["id"]))
            if answer.shown_at_ms is not None:
                rows.append((household, device, 8, answer.shown_at_ms, payload, 0))
            if answer.response is not None and answer.responded_at_ms is not None:
                rows.append((household, device, 9, answer.responded_at_ms, payload, answer.response))
        if rows:
            self.store.insert_columns("events", self._columns(rows))
        return [0] * len(messages)

    def _columns(self, rows: list[tuple[int, str, int, int, dict[str, Any], int]]) -> dict[str, np.ndarray]:
        n = len(rows)
        cols: dict[str, np.ndarray] = {}
        for name, ch_type in EVENT_COLUMNS.items():
            cols[name] = (np.full(n, "", dtype=object) if ch_type == "String" else
                          np.zeros(n, dtype=np.int8 if ch_type.startswith("Enum8") else np.dtype(ch_type.lower())))
        for i, (household, device, kind, at, payload, code) in enumerate(rows):
            cols["household_id"][i], cols["device_id"][i], cols["kind"][i] = household, device, kind
            cols["seq"][i] = next(self._seq)
            cols["device_ts_ms"][i] = cols["ts_ms"][i] = cols["received_ms"][i] = at
            cols["region"][i], cols["firmware"][i] = "sim", "sim"
            cols["message_id"][i], cols["campaign"][i] = payload["id"], payload["campaign"]
            cols["variant"][i], cols["response"][i] = payload["variant"], code
        return cols


def device_household(device: str) -> int:
    """The household of a simulated box id (firmware_sim.households.device_id: stb-<household>-<k>)."""
    return int(device.split("-")[1])


def organic_purchases(store: Warehouse, model: ResponseModel, world: ChurnWorld, households: np.ndarray,
                      first_ms: int, days: float, seed: int) -> np.ndarray:
    """Draw who buys the product on their own within the window; write it to the subscriber history."""
    rows = np.array([world.households.index_of(int(h)) for h in households], dtype=np.int64)
    p = model.p_organic(rows, "sports", days)
    gen = np.random.default_rng([seed, 77])
    buy = gen.random(len(rows)) < p
    buyers = households[buy]
    if len(buyers):
        day0 = np.datetime64(first_ms, "ms").astype("datetime64[D]")
        offset = gen.integers(0, int(days), len(buyers))
        store.insert_columns("subscriber_history", {
            "household_id": buyers.astype(np.uint64), "day": (day0 + offset).astype("datetime64[s]"),
            "status": np.full(len(buyers), "active", dtype=object),
            "products": np.full(len(buyers), "basic;sports", dtype=object),
            "monthly_fee_cents": np.zeros(len(buyers), dtype=np.int64),
            "imported_ms": np.full(len(buyers), first_ms, dtype=np.int64)})
    return np.asarray(p, dtype=np.float64)


def run_campaign(store: Warehouse, world: ChurnWorld, segment: str, seed: int) -> dict[str, Any]:
    """Register the campaign, run its waves a day apart with answers, draw organic purchases, report."""
    model = ResponseModel(world.epg, world.households, world.churn)
    loop = Loop(world, model, seed, store)
    settings = MarketingSettings()
    settings = replace(settings, caps=replace(settings.caps, rules=CAPS))
    registry.create(store, campaign_text(segment))
    engine = Engine(settings, store, loop)
    start = dt.datetime.combine(world.last_day + dt.timedelta(days=1), dt.time(12), dt.UTC)
    for wave in range(WAVES + 1):                      # the last cycle only settles the last wave's states
        engine.cycle(start + dt.timedelta(hours=24 * wave))
    book = store.query_columns(
        "SELECT household_id, argMax(holdout, at_ms) AS holdout FROM "
        f"{store.database}.contacts WHERE campaign = %(c)s GROUP BY household_id ORDER BY household_id",
        {"c": CAMPAIGN})
    households = np.asarray(book["household_id"], dtype=np.uint64)
    held = np.asarray(book["holdout"], dtype=np.uint8) == 1
    first_ms = int(start.timestamp() * 1000)
    organic = organic_purchases(store, model, world, households, first_ms, 7, seed)
    engine.cycle(start + dt.timedelta(hours=24 * (WAVES + 1), minutes=1))   # extract conversions into states
    report = build_report(store, registry.get(store, CAMPAIGN))
    # The truth: P(convert) of each treated household given the messages it really got, vs organic only.
    treated = households[~held]
    p_treated = []
    for h, o in zip(treated, organic[~held], strict=True):
        stay = 1.0 - o
        for shown_p, accept_p in loop.reach.get(int(h), []):
            stay *= 1.0 - shown_p * accept_p
        p_treated.append(1.0 - stay)
    planted = float(np.mean(p_treated) - np.mean(organic[~held])) if len(treated) else 0.0
    # Conversion by the first message alone (wave 1 accepted), per treated household: the targeting's effect
    # without the re-contacts of later waves, which lift a weak audience more than a strong one.
    first = store.query_rows(f"SELECT uniqExact(household_id) FROM {store.database}.events WHERE kind = 'msg_response' "
                             "AND response = 2 AND campaign = %(c)s AND message_id LIKE %(w1)s",
                             {"c": CAMPAIGN, "w1": f"{CAMPAIGN}.1.%"})[0][0]
    return {"report": report, "planted_uplift": planted, "audience": len(households),
            "first_message_conversion": int(first) / max(int((~held).sum()), 1),
            "appeal": {v: round(variant_appeal(CAMPAIGN, v), 3) for v in VARIANTS}}
