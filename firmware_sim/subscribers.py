"""The fleet's subscriber (BOSS) extract: what the operator's billing system knows of each household.

    write_subscribers("extract.csv", households, as_of=date(2025, 3, 10))

One CSV row per household, in the format `python -m crm import-subscribers` reads (docs/CRM.md):
household_id, status, activated, ended, products, monthly_fee, region, birth_month,
contact_opt_in. Products follow the simulated package (`basic`, `plus`, `sports`, `films`,
`full`) plus add-ons (`hd`, `multiroom` for households with more than one box); the fee is the
package's list price plus add-ons. Most households are active; a few are suspended or ended
(ended within the 60 days before `as_of`) — the kind of churn later analyses label by date.
Deterministic: every draw is keyed by (seed, household id). No personal data is invented.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Final

import numpy as np

from firmware_sim import catalogue as cat
from firmware_sim import rng
from firmware_sim.households import Households

COLUMNS: Final = ("household_id", "status", "activated", "ended", "products", "monthly_fee", "region",
                  "birth_month", "contact_opt_in")
PACKAGE_FEE_CENTS: Final = {"basic": 1499, "plus": 2499, "sports": 3999, "films": 3499, "full": 5499}
HD_FEE_CENTS: Final = 500
MULTIROOM_FEE_CENTS: Final = 700
P_SUSPENDED: Final = 0.03
P_ENDED: Final = 0.04


def subscriber_rows(households: Households, as_of: dt.date) -> list[list[str]]:
    """The extract's rows (strings), one per household, in household order."""
    k = rng.key(rng.seed_key(households.seed, rng.TAG_SUBSCRIBER), households.household_id)
    u = rng.uniform(k[:, None], np.arange(8)[None, :])
    tenure_days = (30 + 3000 * u[:, 0] ** 1.5).astype(np.int64)        # many recent, a long tail
    hd = u[:, 1] < 0.55
    multiroom = households.n_devices > 1
    status = np.where(u[:, 2] < P_ENDED, "ended", np.where(u[:, 2] < P_ENDED + P_SUSPENDED, "suspended", "active"))
    ended_ago = (u[:, 3] * 60).astype(np.int64)
    birth_month = np.where(u[:, 4] < 0.8, 1 + (u[:, 5] * 12).astype(np.int64), 0)
    opt_in = np.where(u[:, 6] < 0.7, np.where(u[:, 7] < 0.4, "email;stb", "stb"), "")
    rows = []
    for i in range(len(households)):
        package = households.package_name(i)
        products = [package] + (["hd"] if hd[i] else []) + (["multiroom"] if multiroom[i] else [])
        fee = PACKAGE_FEE_CENTS[package] + HD_FEE_CENTS * hd[i] + MULTIROOM_FEE_CENTS * multiroom[i]
        activated = as_of - dt.timedelta(days=int(tenure_days[i]))
        ended = as_of - dt.timedelta(days=int(min(ended_ago[i], tenure_days[i] - 1)))
        rows.append([str(int(households.household_id[i])), str(status[i]), activated.isoformat(),
                     ended.isoformat() if status[i] == "ended" else "", ";".join(products),
                     f"{fee // 100}.{fee % 100:02d}", cat.REGIONS[int(households.region[i])],
                     str(birth_month[i]) if birth_month[i] else "", str(opt_in[i])])
    return rows


def write_subscribers(path: str | Path, households: Households, as_of: dt.date) -> int:
    """Write the extract as CSV (UTF-8, header); returns the number of rows."""
    rows = subscriber_rows(households, as_of)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return len(rows)
