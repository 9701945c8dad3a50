"""Who a campaign may reach: its segment, consent, unsubscribes, and the box to send to.

Every function returns sorted unique uint64 household ids (or arrays aligned to them), so the
engine combines them with numpy set operations, never a Python loop per household.

- `segment_members`: the campaign's segment (crm.segments) on the newest profiled day;
- `consenting`: households whose subscriber record is not ended and whose `contact_opt_in` lists
  the channel (the extract's consent; with no extract imported nobody consents);
- `unsubscribed`: households that answered "unsubscribe" to any campaign: honoured by every later one;
- `Boxes`: each household's most-watched box of the last `device_days` days, with its region (the
  downlink topic is `stb/v1/{region}/{device}/messages`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crm import segments
from crm.errors import NoData
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
    def load(cls, warehouse: Warehouse, since_ms: int) -> Boxes:
        got = warehouse.query_columns(
            "SELECT household_id, argMax(device_id, n) AS device_id, argMax(region, n) AS region FROM ("
            "  SELECT household_id, device_id, any(region) AS region, count() AS n "
            f"  FROM {warehouse.database}.events WHERE ts_ms >= %(since)s AND kind != 'msg_shown' "
            "  AND kind != 'msg_response' GROUP BY household_id, device_id) "
            "GROUP BY household_id ORDER BY household_id", {"since": since_ms})
        return cls(np.asarray(got["household_id"], dtype=np.uint64), np.asarray(got["device_id"], dtype=object),
                   np.asarray(got["region"], dtype=object))

    def lookup(self, households: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found mask, device ids, regions) for `households`; '' where no box was seen."""
        device = aligned(self.household_id, self.device_id, households, "")
        return device != "", device, aligned(self.household_id, self.region, households, "")
