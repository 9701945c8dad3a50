"""One cycle of the marketing daemon: states, occasions, audiences, caps, variants, sends, records.

    engine = Engine(settings, warehouse, publish)        # publish: list[Outgoing] -> PUBACK reason codes
    result = engine.cycle(now)

Order matters for correctness:
1. states first (answers since the last cycle decide who is due for a next wave);
2. every campaign's candidates are gathered, then capped together in one `caps.decide` call, so
   priorities across campaigns are respected and no cap is exceeded by two campaigns at once;
3. messages are published, and only then recorded: `deliveries` (every decision, with its
   reason) and a `contacts` row per send. A crash between the two re-sends next cycle with the
   same message id (`downlink.message_ids` is deterministic), which the box drops as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marketing import store as campaigns
from marketing.allocation import assign_variants, seed_for, thompson_shares_by_wave
from marketing.audience import BoxDirectory, consenting, segment_members, unsubscribed
from marketing.campaign import Campaign
from marketing.caps import Candidates, SendHistory, decide
from marketing.downlink import encode_many, message_ids, topic
from marketing.holdout import holdout_mask
from marketing.publisher import Outgoing
from marketing.settings import MarketingSettings
from marketing.states import ContactBook, Sends, aligned, update, write_contacts
from marketing.store import text_column
from marketing.triggers import Occasion, occasions
from warehouse import Warehouse

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
CHANNEL = "stb"
# list[Outgoing] -> a PUBACK reason code per message (>= 0x80 refused; < 0 never acknowledged)
Publish = Callable[[Sequence[Outgoing]], Sequence[int]]


@dataclass
class CycleResult:
    campaigns: int = 0
    occasions: int = 0
    statuses: dict[str, int] = field(default_factory=dict)   # deliveries written, by status
    state_changes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Wanted:
    """Candidates of one campaign at one occasion."""

    campaign: Campaign
    occasion: Occasion
    household_id: np.ndarray
    wave: np.ndarray
    state: np.ndarray          # each household's contact state now (a send keeps it, with the new wave)


class Engine:
    def __init__(self, settings: MarketingSettings, warehouse: Warehouse, publish: Publish) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.publish = publish
        key_file = settings.delivery.id_key_file
        self._id_key = Path(key_file).read_bytes().strip() if key_file else b""
        self._boxes = BoxDirectory()

    def cycle(self, now: dt.datetime) -> CycleResult:
        started = time.monotonic()
        now_ms = int(now.timestamp() * 1000)
        result = CycleResult()
        live = [r.campaign for r in campaigns.list_all(self.warehouse)
                if r.status == campaigns.ACTIVE and r.campaign.active_at(now)]
        live.sort(key=lambda c: (-c.priority, c.id))
        result.campaigns = len(live)
        sends: dict[str, Sends] = {}
        for campaign in live:
            changes, sends[campaign.id] = update(self.warehouse, campaign, now_ms)
            for state, n in changes.items():
                result.state_changes[state] = result.state_changes.get(state, 0) + n
        wanted: list[_Wanted] = []
        if live:
            consent = consenting(self.warehouse, self.settings.delivery.opt_in)
            unsub = unsubscribed(self.warehouse)
            members: dict[str, np.ndarray] = {}
            for campaign in live:
                occs = occasions(self.warehouse, campaign, now, self.settings.delivery.zone)
                result.occasions += len(occs)
                if occs:
                    if campaign.segment not in members:
                        members[campaign.segment] = segment_members(self.warehouse, campaign.segment)
                    audience = np.setdiff1d(np.intersect1d(members[campaign.segment], consent, assume_unique=True),
                                            unsub, assume_unique=True)
                    wanted.extend(self._due(campaign, occs, audience, sends[campaign.id], now_ms))
        if wanted:
            self._send(wanted, now_ms, result)
        result.seconds = time.monotonic() - started
        log.info("cycle: %d campaigns, %d occasions, decisions %s, state changes %s, %.2f s", result.campaigns,
                 result.occasions, result.statuses, result.state_changes, result.seconds)
        return result

    def _due(self, campaign: Campaign, occs: list[Occasion], audience: np.ndarray, sends: Sends,
             now_ms: int) -> list[_Wanted]:
        """Who gets a message of this campaign now, at which occasion and wave (one message a cycle)."""
        book = ContactBook.load(self.warehouse, campaign.id)
        touched = np.unique(np.concatenate([audience if o.households is None
                                            else np.intersect1d(audience, np.unique(o.households.astype(np.uint64)))
                                            for o in occs]))
        new = np.setdiff1d(touched, book.household_id, assume_unique=True)
        if len(new):  # intention to treat: every audience household is registered once, in its arm
            held = holdout_mask(campaign.id, new, campaign.holdout)
            n = len(new)
            write_contacts(self.warehouse, campaign.id, new, held.astype(np.uint8), np.zeros(n, dtype=np.int64),
                           np.full(n, "not_contacted", dtype=object), np.full(n, "", dtype=object),
                           np.full(n, "", dtype=object), now_ms)
            book = ContactBook.load(self.warehouse, campaign.id)
        waves = aligned(sends.household_id, sends.waves, book.household_id, 0)
        last = aligned(sends.household_id, sends.last_ms, book.household_id, 0)
        after_ms = int(campaign.waves.after_hours * 3_600_000)
        first_time = (book.state == "not_contacted") & (waves == 0)
        again = (book.state == "no_response") & (waves < campaign.waves.count) & (now_ms - last >= after_ms)
        is_due = (book.holdout == 0) & (first_time | again)
        due, due_wave, due_state = book.household_id[is_due], (waves[is_due] + 1).astype(np.int64), book.state[is_due]
        done = self._decided(campaign.id, [o.key for o in occs])
        out, taken = [], np.empty(0, dtype=np.uint64)
        for occ in occs:
            pick = np.isin(due, audience if occ.households is None else occ.households.astype(np.uint64))
            settled_households, settled_keys = done.get(occ.key, (np.empty(0, dtype=np.uint64),) * 2)
            if occ.waves_here:
                pick &= ~np.isin(_wave_key(due, due_wave), settled_keys)
            else:
                pick &= ~np.isin(due, settled_households)
            pick &= ~np.isin(due, taken)
            if pick.any():
                out.append(_Wanted(campaign, occ, due[pick], due_wave[pick], due_state[pick]))
                taken = np.concatenate([taken, due[pick]])
        return out

    def _decided(self, campaign: str, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per occasion, the households settled there and their (household, wave) keys: sent, capped
        for good, or skipped (deferred and failed sends are tried again while the occasion is open)."""
        got = self.warehouse.query_columns(
            f"SELECT occasion, household_id, wave FROM {self.warehouse.database}.deliveries WHERE campaign = %(c)s "
            "AND status IN ('sent', 'capped', 'skipped') AND occasion IN %(keys)s",
            {"c": campaign, "keys": tuple(keys)})
        occ = np.asarray(got["occasion"], dtype=object)
        ids = np.asarray(got["household_id"], dtype=np.uint64)
        keyed = _wave_key(ids, np.asarray(got["wave"], dtype=np.int64))
        return {k: (ids[occ == k], keyed[occ == k]) for k in keys}

    def _send(self, wanted: list[_Wanted], now_ms: int, result: CycleResult) -> None:
        s = self.settings
        sizes = [len(w.household_id) for w in wanted]
        index = np.repeat(np.arange(len(wanted)), sizes)
        households = np.concatenate([w.household_id for w in wanted]).astype(np.uint64)
        wave = np.concatenate([w.wave for w in wanted])
        product = np.repeat(np.array([w.campaign.product for w in wanted], dtype=object), sizes)
        boxes = self._boxes.get(self.warehouse, now_ms, s.delivery.device_days)
        found, device, region = boxes.lookup(households)
        status = np.full(len(households), "skipped", dtype=object)
        reason = np.full(len(households), f"no box seen in {s.delivery.device_days} days", dtype=object)
        reach = np.flatnonzero(found)[: s.delivery.max_messages]
        history = self._history(now_ms)
        decisions = decide(s.caps, history, Candidates(
            household_id=households[reach], product=product[reach], channel=np.full(len(reach), CHANNEL, dtype=object),
            priority=np.repeat(np.array([w.campaign.priority for w in wanted]), sizes)[reach],
            campaign=np.repeat(np.array([w.campaign.id for w in wanted], dtype=object), sizes)[reach]),
            now_ms, s.delivery.zone)
        status[reach], reason[reach] = decisions.status, decisions.reason
        variant = np.full(len(households), "", dtype=object)
        ids = np.full(len(households), "", dtype=object)
        expires_ms = np.zeros(len(households), dtype=np.int64)
        outgoing: list[Outgoing] = []
        rows: list[int] = []
        for i, w in enumerate(wanted):
            go = np.flatnonzero((index == i) & (status == "sent"))
            if len(go) == 0:
                continue
            ids[go] = message_ids(w.campaign.id, households[go], wave[go], key=self._id_key)
            for wv in np.unique(wave[go]):
                at = go[wave[go] == wv]
                chosen = self._allocate(w.campaign, int(wv), len(at), now_ms)
                variant[at] = chosen
            for v in w.campaign.variants:
                at = go[variant[go] == v.id]
                if len(at) == 0:
                    continue
                title, body = v.render(w.occasion.context)
                action = {**v.action, **w.occasion.action}
                if v.action.get("type") == "offer" and w.campaign.product:
                    action.setdefault("product", w.campaign.product)
                expires = now_ms + int(w.campaign.expires_hours * 3_600_000)
                if "start" in w.occasion.action:  # a programme's message is stale an hour after it starts
                    expires = min(expires, int(w.occasion.action["start"]) + 3_600_000)
                expiry_s = int(max(1, (expires - now_ms) // 1000))
                expires_ms[at] = expires
                payloads = encode_many(ids[at].tolist(), w.campaign.id, v.id, title, body, action, expires)
                outgoing.extend(Outgoing(topic(str(region[j]), str(device[j])), payload, expiry_s)
                                for j, payload in zip(at.tolist(), payloads, strict=True))
                rows.extend(at.tolist())
        if outgoing:
            codes = np.asarray(self.publish(outgoing), dtype=np.int64)
            refused, lost = np.asarray(rows)[codes >= 0x80], np.asarray(rows)[codes < 0]
            status[refused] = "failed"
            reason[refused] = [f"broker refused 0x{c:02x}" for c in codes[codes >= 0x80]]
            status[lost] = "failed"
            reason[lost] = "not acknowledged by the broker"
        self._record(wanted, index, households, device, region, product, wave, variant, ids, status, reason,
                     expires_ms, now_ms)
        names, counts = np.unique(status.astype(str), return_counts=True)
        result.statuses = {str(k): int(v) for k, v in zip(names, counts, strict=True)}

    def _history(self, now_ms: int) -> SendHistory:
        days = max((r.days for r in self.settings.caps.rules), default=0.0)
        got = self.warehouse.query_columns(
            f"SELECT household_id, decided_ms, product FROM {self.warehouse.database}.deliveries "
            "WHERE status = 'sent' AND decided_ms > %(since)s", {"since": now_ms - int(days * DAY_MS)})
        households = np.asarray(got["household_id"], dtype=np.uint64)
        sent_ms = np.asarray(got["decided_ms"], dtype=np.int64)
        product = np.asarray(got["product"], dtype=object)
        if self.settings.caps.count_recommendations:
            # One row of recommendations in the guide (a request) is one message on the box, of no product.
            rec = self.warehouse.query_columns(
                f"SELECT household_id, min(ts_ms) AS shown_ms FROM {self.warehouse.database}.events "
                "WHERE kind = 'rec_impression' AND ts_ms > %(since)s GROUP BY household_id, request_id",
                {"since": now_ms - int(days * DAY_MS)})
            households = np.concatenate([households, np.asarray(rec["household_id"], dtype=np.uint64)])
            sent_ms = np.concatenate([sent_ms, np.asarray(rec["shown_ms"], dtype=np.int64)])
            product = np.concatenate([product, np.full(len(rec["shown_ms"]), "", dtype=object)])
        return SendHistory(household_id=households, sent_ms=sent_ms, product=product,
                           channel=np.full(len(households), CHANNEL, dtype=object))

    def _allocate(self, campaign: Campaign, wave: int, n: int, now_ms: int) -> np.ndarray:
        """Variant ids for n sends of a wave, by Thompson sampling on what each variant converted so far."""
        order = [v.id for v in campaign.variants]
        db = self.warehouse.database
        sent_by = self.warehouse.query_rows(
            f"SELECT wave, variant, count() FROM {db}.deliveries WHERE campaign = %(c)s AND status = 'sent' "
            "GROUP BY wave, variant", {"c": campaign.id})
        converted_by = self.warehouse.query_rows(
            f"SELECT wave, variant, count() FROM (SELECT household_id, argMax(state, at_ms) AS state, "
            f"argMax(wave, at_ms) AS wave, argMax(variant, at_ms) AS variant FROM {db}.contacts "
            "WHERE campaign = %(c)s GROUP BY household_id) WHERE state = 'converted' GROUP BY wave, variant",
            {"c": campaign.id})
        strata: dict[int, dict[str, list[int]]] = {}
        for w, v, count in sent_by:
            strata.setdefault(int(w), {}).setdefault(str(v), [0, 0])[0] = int(count)
        for w, v, count in converted_by:
            cell = strata.setdefault(int(w), {}).setdefault(str(v), [0, 0])
            cell[1] = min(int(count), cell[0])   # a conversion is credited to a message that was sent
        sent = {v: sum(s.get(v, [0, 0])[0] for s in strata.values()) for v in order}
        converted = {v: sum(s.get(v, [0, 0])[1] for s in strata.values()) for v in order}
        shares = thompson_shares_by_wave([{v: (c[0], c[1]) for v, c in s.items()} for _, s in sorted(strata.items())],
                                         order, floor=self.settings.allocation.floor,
                                         seed=seed_for(campaign.id, wave) ^ now_ms)
        picks = assign_variants([shares[v] for v in order], n, seed_for(campaign.id, wave) ^ now_ms)
        self.warehouse.insert_columns("allocations", {
            "campaign": text_column([campaign.id] * len(order)), "wave": np.full(len(order), wave, dtype=np.uint16),
            "variant": text_column(order), "share": np.array([shares[v] for v in order], dtype=np.float64),
            "sent": np.array([sent[v] for v in order], dtype=np.uint64),
            "converted": np.array([converted[v] for v in order], dtype=np.uint64),
            "decided_ms": np.full(len(order), now_ms, dtype=np.int64)})
        return np.asarray(order, dtype=object)[picks]

    def _record(self, wanted: list[_Wanted], index: np.ndarray, households: np.ndarray, device: np.ndarray,
                region: np.ndarray, product: np.ndarray, wave: np.ndarray, variant: np.ndarray, ids: np.ndarray,
                status: np.ndarray, reason: np.ndarray, expires: np.ndarray, now_ms: int) -> None:
        n = len(households)
        camp = np.array([w.campaign.id for w in wanted], dtype=object)[index]
        occ = np.array([w.occasion.key for w in wanted], dtype=object)[index]
        sent = status == "sent"
        self.warehouse.insert_columns("deliveries", {
            "campaign": camp, "household_id": households, "device_id": device, "region": region, "product": product,
            "wave": wave.astype(np.uint16), "variant": variant, "occasion": occ, "message_id": ids, "status": status,
            "reason": reason, "decided_ms": np.full(n, now_ms, dtype=np.int64), "expires_ms": expires})
        state = np.concatenate([w.state for w in wanted])
        for cid in np.unique(camp[sent]):
            at = sent & (camp == cid)
            write_contacts(self.warehouse, str(cid), households[at], np.zeros(int(at.sum()), dtype=np.uint8),
                           wave[at], state[at], variant[at], ids[at], now_ms + 1)


def _wave_key(households: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """One uint64 per (household, wave): waves are at most 20 (campaign.py), 5 bits."""
    return (households.astype(np.uint64) << np.uint64(5)) | waves.astype(np.uint64)
