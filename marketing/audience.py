"""Who a campaign may reach: its segment, consent, unsubscribes, and the box to send to.

Every function returns sorted unique uint64 household ids (or arrays aligned to them), so the
engine combines them with numpy set operations, never a Python loop per household.

- `segment_members`: the campaign's segment (crm.segments) on the newest profiled day;
- `consenting`: households whose subscriber record is not ended and whose `contact_opt_in` lists
  the channel (the extract's consent; with no extract imported nobody consents);
- `unsubscribed`: households that answered "unsubscribe" to any campaign: honoured by every later one;
- `Boxes`: each household's most-watched box of the last `device_days` days, with its region (the
  downlink topic is `stb/v1/{region}/{device}/messages`);
- `BoxDirectory`: `Boxes` kept between cycles. The full look-up scans `device_days` of events,
  too much for every cycle that sends on a real store, so it runs every `FULL_EVERY_MS`; the
  cycles in between only add households whose box reported since the last look (with an hour's
  overlap for events still on their way), so a new subscriber is reachable at the next cycle.
  A household's main box changing shows at the next full look-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crm import segments
from crm.errors import NoData
from crm.settings import DAY_MS
from marketing.states import aligned
from warehouse import Warehouse


def segment_members(warehouse: Warehouse, expr: str) -> np.ndarray:
    """The segment's households; empty (not an error) when nothing is profiled yet."""
    try:
        ids = segments.members(warehouse, expr)
    except NoData:
        return np.empty(0, dtype=np.uint64)
    return np.unique(np.asarray(ids, dtype=np.uint64))


def consenting(warehouse: Warehouse, channel: str) -> np.ndarray:
    cond = "" if not channel else " AND has(splitByChar(';', contact_opt_in), %(channel)s)"
    got = warehouse.query_columns(f"SELECT household_id FROM {warehouse.database}.subscribers FINAL "
                                  f"WHERE status != 'ended'{cond}", {"channel": channel})
    return np.unique(np.asarray(got["household_id"], dtype=np.uint64))


def unsubscribed(warehouse: Warehouse) -> np.ndarray:
    got = warehouse.query_columns(
        f"SELECT household_id FROM (SELECT campaign, household_id, argMax(state, at_ms) AS state "
        f"FROM {warehouse.database}.contacts GROUP BY campaign, household_id) WHERE state = 'unsubscribed' "
        "GROUP BY household_id")
    return np.unique(np.asarray(got["household_id"], dtype=np.uint64))


@dataclass(frozen=True)
class Boxes:
    household_id: np.ndarray  # sorted uint64
    device_id: np.ndarray     # object (str)
    region: np.ndarray        # object (str)

    @classmethod
    def load(cls, warehouse: Warehouse, since_ms: int, device_since_ms: int | None = None) -> Boxes:
        """Each household's most active box and its region, from the events since `since_ms`;
        `device_since_ms` also bounds the box clock's time (the table's partition key) to read less."""
        device = "" if device_since_ms is None else " AND device_ts_ms >= %(device_since)s"
        got = warehouse.query_columns(
            "SELECT household_id, argMax(device_id, n) AS device_id, argMax(region, n) AS region FROM ("
            "  SELECT household_id, device_id, any(region) AS region, count() AS n "
            f"  FROM {warehouse.database}.events WHERE ts_ms >= %(since)s{device} AND kind != 'msg_shown' "
            "  AND kind != 'msg_response' GROUP BY household_id, device_id) "
            "GROUP BY household_id ORDER BY household_id", {"since": since_ms, "device_since": device_since_ms or 0})
        return cls(np.asarray(got["household_id"], dtype=np.uint64), np.asarray(got["device_id"], dtype=object),
                   np.asarray(got["region"], dtype=object))

    @classmethod
    def seen_since(cls, warehouse: Warehouse, since_ms: int) -> Boxes:
        """Boxes of the events since `since_ms` (`Boxes.load` over a short window: the partitions
        of the device days from a day before it, so a skewed box clock is still read)."""
        return cls.load(warehouse, since_ms, device_since_ms=since_ms - DAY_MS)

    def adding(self, other: Boxes) -> Boxes:
        """These boxes plus `other`'s households that are not here yet (sorted by household)."""
        new = ~np.isin(other.household_id, self.household_id)
        if not new.any():
            return self
        ids = np.concatenate([self.household_id, other.household_id[new]])
        order = np.argsort(ids, kind="stable")
        return Boxes(ids[order], np.concatenate([self.device_id, other.device_id[new]])[order],
                     np.concatenate([self.region, other.region[new]])[order])

    def lookup(self, households: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found mask, device ids, regions) for `households`; '' where no box was seen."""
        device = aligned(self.household_id, self.device_id, households, "")
        return device != "", device, aligned(self.household_id, self.region, households, "")


FULL_EVERY_MS = 6 * 3_600_000
NEW_OVERLAP_MS = 3_600_000


class BoxDirectory:
    """`Boxes` between cycles: a full look-up every FULL_EVERY_MS, new households in between."""

    def __init__(self, full_every_ms: int = FULL_EVERY_MS) -> None:
        self.full_every_ms = full_every_ms
        self._boxes: Boxes | None = None
        self._full_ms = 0      # `now` of the last full look-up
        self._looked_ms = 0    # `now` of the last look, full or not

    def get(self, warehouse: Warehouse, now_ms: int, device_days: int) -> Boxes:
        if self._boxes is None or not 0 <= now_ms - self._full_ms < self.full_every_ms:
            self._boxes = Boxes.load(warehouse, now_ms - device_days * DAY_MS)
            self._full_ms = now_ms
        else:  # an hour's overlap: events reach the store a little after they happen
            self._boxes = self._boxes.adding(Boxes.seen_since(warehouse, self._looked_ms - NEW_OVERLAP_MS))
        self._looked_ms = now_ms
        return self._boxes
