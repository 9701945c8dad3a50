"""What the operator's billing system knows of each household: tenure, products, fee.

    acc = Accounts.of(households)        # arrays in household order; keyed by (seed, household id)

The subscriber extract (`subscribers.py`) writes these, and the churn process (`churn.py`) is
driven by them (new and expensive subscriptions leave more often), so a model can learn from
the extract what the simulator planted. Tenure is counted at the world's first day: every
household is a subscriber before its first event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from firmware_sim import rng
from firmware_sim.households import Households

PACKAGE_FEE_CENTS: Final = {"basic": 1499, "plus": 2499, "sports": 3999, "films": 3499, "full": 5499}
HD_FEE_CENTS: Final = 500
MULTIROOM_FEE_CENTS: Final = 700
P_SUSPENDED: Final = 0.03
_SUSPENDED_FROM: Final = 0.04   # u[2] in [0.04, 0.07): the same households as before churn was planted


@dataclass(frozen=True, slots=True)
class Accounts:
    tenure_days: np.ndarray   # int64 [N] days subscribed before the world's first day (>= 30)
    hd: np.ndarray            # bool [N] the HD add-on
    multiroom: np.ndarray     # bool [N] more than one box
    suspended: np.ndarray     # bool [N] suspended (boxes still report: the billing side of it)
    fee_cents: np.ndarray     # int64 [N] package list price + add-ons
    birth_month: np.ndarray   # int64 [N] 1-12, 0 = unknown
    opt_in: np.ndarray        # object [N] contact opt-ins, "" / "stb" / "email;stb"

    @classmethod
    def of(cls, households: Households) -> Accounts:
        k = rng.key(rng.seed_key(households.seed, rng.TAG_SUBSCRIBER), households.household_id)
        u = rng.uniform(k[:, None], np.arange(8)[None, :])
        hd = u[:, 1] < 0.55
        multiroom = households.n_devices > 1
        package_fee = np.array([PACKAGE_FEE_CENTS[households.package_name(i)] for i in range(len(households))],
                               dtype=np.int64)
        return cls(
            tenure_days=(30 + 3000 * u[:, 0] ** 1.5).astype(np.int64),        # many recent, a long tail
            hd=hd, multiroom=multiroom,
            suspended=(u[:, 2] >= _SUSPENDED_FROM) & (u[:, 2] < _SUSPENDED_FROM + P_SUSPENDED),
            fee_cents=package_fee + HD_FEE_CENTS * hd + MULTIROOM_FEE_CENTS * multiroom,
            birth_month=np.where(u[:, 4] < 0.8, 1 + (u[:, 5] * 12).astype(np.int64), 0),
            opt_in=np.where(u[:, 6] < 0.7, np.where(u[:, 7] < 0.4, "email;stb", "stb"), "").astype(object))
