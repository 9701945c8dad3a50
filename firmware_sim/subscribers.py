"""The fleet's subscriber (BOSS) extract: what the operator's billing system knows of each household.

    write_subscribers("extract.csv", households, as_of=date(2025, 3, 10), start=date(2025, 3, 3))

One CSV row per household, in the format `python -m crm import-subscribers` reads (docs/CRM.md):
household_id, status, activated, ended, products, monthly_fee, region, birth_month,
contact_opt_in. Products follow the simulated package (`basic`, `plus`, `sports`, `films`,
`full`) plus add-ons (`hd`, `multiroom` for households with more than one box); the fee is the
package's list price plus add-ons (`accounts.py`). `start` is the world's first day: tenure counts
from before it (`activated` = start - tenure). A household is `ended` when the churn process
(`churn.py`) made it leave on or before `as_of`, with that day as `ended` — the day its boxes
stopped reporting; 3 % of the others are suspended. Deterministic: every draw is keyed by (seed,
household id). No personal data is invented.

`purchases` (the responder's ledger, `ledger.read_ledger`) closes the marketing loop: a product a
household bought on or before `as_of` (accepted on the TV or bought on its own) joins its
`products` and adds PURCHASE_FEE_CENTS to its fee; a household kept by a retention offer before its
leaving day does not end.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from firmware_sim import catalogue as cat
from firmware_sim.accounts import HD_FEE_CENTS, MULTIROOM_FEE_CENTS, P_SUSPENDED, PACKAGE_FEE_CENTS, Accounts
from firmware_sim.churn import Churn
from firmware_sim.households import Households
from firmware_sim.ledger import Purchase

COLUMNS: Final = ("household_id", "status", "activated", "ended", "products", "monthly_fee", "region",
                  "birth_month", "contact_opt_in")
# What a bought product adds to the monthly fee (an upgrade, not a second package).
PURCHASE_FEE_CENTS: Final = {"sports": 1500, "films": 1000, "hd": HD_FEE_CENTS, "multiroom": MULTIROOM_FEE_CENTS}
__all__ = ["COLUMNS", "HD_FEE_CENTS", "MULTIROOM_FEE_CENTS", "PACKAGE_FEE_CENTS", "PURCHASE_FEE_CENTS", "P_SUSPENDED",
           "subscriber_rows", "write_subscribers"]


def subscriber_rows(households: Households, as_of: dt.date, start: dt.date | None = None,
                    churn: Churn | None = None, purchases: Iterable[Purchase] = ()) -> list[list[str]]:
    """The extract's rows (strings), one per household, in household order. `start` (the world's
    first day) defaults to `as_of`; `churn` to the households' default churn process; `purchases`
    (a ledger) adds what households bought up to `as_of`."""
    start = start or as_of
    acc = Accounts.of(households)
    churn = churn or Churn.generate(households, accounts=acc)
    today = (as_of - start).days
    bought: dict[int, list[str]] = {}
    saved: set[int] = set()
    for p in purchases:
        if p.day > as_of:
            continue
        if p.source != "retention":
            bought.setdefault(p.household_id, []).append(p.product)
            continue
        try:
            leave_day = int(churn.leave_day[households.index_of(p.household_id)])
        except KeyError:  # a ledger of another world
            continue
        if (p.day - start).days < leave_day:
            saved.add(p.household_id)
    ended = churn.ended_by(today) & ~np.isin(households.household_id, np.array(sorted(saved), dtype=np.uint64))
    status = np.where(ended, "ended", np.where(acc.suspended, "suspended", "active"))
    rows = []
    for i in range(len(households)):
        package = households.package_name(i)
        products = [package] + (["hd"] if acc.hd[i] else []) + (["multiroom"] if acc.multiroom[i] else [])
        fee = int(acc.fee_cents[i])
        for product in bought.get(int(households.household_id[i]), ()):
            if product not in products:
                products.append(product)
                fee += PURCHASE_FEE_CENTS.get(product, 0)
        activated = start - dt.timedelta(days=int(acc.tenure_days[i]))
        end = start + dt.timedelta(days=int(churn.leave_day[i])) if ended[i] else None
        rows.append([str(int(households.household_id[i])), str(status[i]), activated.isoformat(),
                     end.isoformat() if end else "", ";".join(products),
                     f"{fee // 100}.{fee % 100:02d}", cat.REGIONS[int(households.region[i])],
                     str(acc.birth_month[i]) if acc.birth_month[i] else "", str(acc.opt_in[i])])
    return rows


def write_subscribers(path: str | Path, households: Households, as_of: dt.date, start: dt.date | None = None,
                      churn: Churn | None = None, purchases: Iterable[Purchase] = ()) -> int:
    """Write the extract as CSV (UTF-8, header); returns the number of rows."""
    rows = subscriber_rows(households, as_of, start, churn, purchases)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return len(rows)
