"""Churn: who leaves, when, why, and whether a retention offer would keep them.

    churn = Churn.generate(households)   # keyed by (seed, household id): independent of the fleet size
    churn.leave_day        # [N] first day (since the world's first day) with no events: the extract's
                           #     `ended` date; NEVER for a household that stays
    churn.kind             # [N] STAYS, UNHAPPY, MOVING
    churn.retention        # [N] SURE_THING, PERSUADABLE, LOST_CAUSE
    churn.day(rows, d)     # ChurnDay: who reports on day d, how unhappy they are (the simulator's hook)
    churn.hazard(days)     # [N, len(days)] P(leaving on the day | a subscriber at its start)
    churn.risk(d, 30)      # [N] P(leaving on day d+1 .. d+30 | a subscriber after day d): the ceiling

Two ways out, in continuous time t (days since the world's first day, 00:00 UTC):

- **moving** ("happy" leavers): a constant hazard per household (0.45 % a month on average;
  singles and first-year subscribers move more, seniors less). Nothing warns of it.
- **unhappy**: dissatisfaction sets in at an onset O (a Poisson process, 1.45 % a month on average:
  more in the first year and with a high fee, less with several boxes, times a hidden log-normal
  frailty) and grows over a ramp of R = 21-56 days: s(t) = clip((t - O) / R, 0, 1). The hazard is
  peak * s(t)^3 (peak 0.05-0.10 a day), so most leave late in the ramp or in the weeks after it.
  While s > 0 the household watches less (fewer and shorter sessions, prime time most), in
  fragments (fewer programmes watched to the end, more zapping) and switches the box on and off
  for a few minutes more often: the warning a model can see.

A leave moment is where the cumulative hazard reaches an Exp(1) draw (closed form); its calendar
day is the `ended` day, and the boxes report nothing from that day on (its last sessions end
by 23:15). The process starts on day 1, so everyone reports on the first day. Onsets are drawn
from 150 days before the world began; a household that would already have left by day 1 is
replaced by one like it (whose own onset may come later), so the fleet starts in a steady state,
not with a burst.

Decoy: households go away on holiday (about twice a year, 4-15 days, no viewing at all), so "no
viewing for a week" is not the same as "about to leave".

Retention (marketing's uplift truth): an unhappy household is PERSUADABLE with P 0.45 (an offer
would keep it), else a LOST_CAUSE; movers are lost causes; stayers are SURE_THINGs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from firmware_sim import rng
from firmware_sim.accounts import Accounts
from firmware_sim.households import SENIOR, Households

STAYS, UNHAPPY, MOVING = 0, 1, 2
KINDS: Final = ("stays", "unhappy", "moving")
SURE_THING, PERSUADABLE, LOST_CAUSE = 0, 1, 2
RETENTION: Final = ("sure_thing", "persuadable", "lost_cause")
NEVER: Final = 1 << 30          # leave_day of a household that stays
_HORIZON: Final = 2 * 365.0     # the process covers two years: a later leaver counts as staying
_PAD_DAYS: Final = 150.0        # onsets are drawn from this long before the world began
_HOLIDAYS: Final = 8            # holiday episodes drawn per household (from day -60: ~4 years)
_MAX_CYCLES: Final = 6
# Means of the observable drivers over the simulated population (measured on 200k households),
# so that the monthly rates below are fleet averages.
_ONSET_DRIVER_MEAN: Final = 1.023
_MOVE_DRIVER_MEAN: Final = 1.130


@dataclass(frozen=True)
class ChurnParams:
    """Rates of the churn process and the shape of an unhappy household's decline."""

    move_per_month: float = 0.0045          # average hazard of moving away
    unhappy_per_month: float = 0.0145       # average rate of dissatisfaction onsets
    ramp_days: tuple[float, float] = (21.0, 56.0)
    peak_hazard: tuple[float, float] = (0.05, 0.10)
    hazard_power: float = 3.0               # hazard = peak * s^power: leaving comes late in the decline
    frailty_sigma: float = 0.5              # hidden: what no model can see
    persuadable: float = 0.45
    holidays_per_year: float = 2.0
    holiday_days: tuple[int, int] = (4, 15)
    presence_drop: float = 0.6              # P(session) x (1 - this * s) ...
    prime_drop: float = 0.6                 # ... and prime time x (1 - this * s) more
    length_drop: float = 0.45               # session length x (1 - this * s)
    full_drop: float = 1.5                  # logit of watching a programme to its end - this * s
    partial_drop: float = 0.5               # partial stretches x (1 - this * s)
    zap_gain: float = 0.35                  # P(zapping) + this * s
    power_cycles: float = 2.5               # extra short on/off sessions a day at s = 1 (Poisson mean)

    @classmethod
    def off(cls) -> ChurnParams:
        """Nobody leaves, nobody goes on holiday: the simulator as it was before churn."""
        return cls(move_per_month=0.0, unhappy_per_month=0.0, holidays_per_year=0.0)

    def scaled(self, factor: float) -> ChurnParams:
        """Both leaving rates times `factor` (small test worlds need more leavers)."""
        return replace(self, move_per_month=self.move_per_month * factor,
                       unhappy_per_month=self.unhappy_per_month * factor)


@dataclass(frozen=True, slots=True)
class ChurnDay:
    """One day of a block of households (arrays by position in the block)."""

    present: np.ndarray      # bool: still a subscriber and at home (the boxes may report)
    s: np.ndarray            # float64 dissatisfaction 0..1
    leave_day: np.ndarray    # int64: sessions of the day before stop at this day's midnight
    params: ChurnParams


@dataclass(frozen=True)
class Churn:
    """The churn process of a fleet: per household (index i), numpy arrays."""

    params: ChurnParams
    household_id: np.ndarray    # uint64 [N]
    onset: np.ndarray           # float64 [N] day dissatisfaction sets in (inf: never)
    ramp: np.ndarray            # float64 [N] days from onset to full dissatisfaction
    peak: np.ndarray            # float64 [N] daily hazard at full dissatisfaction
    move_hazard: np.ndarray     # float64 [N] daily hazard of moving
    leave_time: np.ndarray      # float64 [N] continuous leave moment (inf: stays)
    leave_day: np.ndarray       # int64 [N] the `ended` day (NEVER: stays)
    kind: np.ndarray            # int8 [N] STAYS / UNHAPPY / MOVING
    retention: np.ndarray       # int8 [N] SURE_THING / PERSUADABLE / LOST_CAUSE
    holiday_start: np.ndarray   # int64 [N, H] first day away
    holiday_days: np.ndarray    # int64 [N, H] days away
    onset_rate: np.ndarray      # float64 [N] onsets a day (what an observer at day d knows of a future onset)

    def __len__(self) -> int:
        return len(self.household_id)

    @classmethod
    def generate(cls, households: Households, params: ChurnParams | None = None,
                 accounts: Accounts | None = None) -> Churn:
        p = params or ChurnParams()
        acc = accounts or Accounts.of(households)
        ids = households.household_id
        k = rng.key(rng.seed_key(households.seed, rng.TAG_CHURN), ids)
        u = rng.uniform(k[:, None], np.arange(8)[None, :])
        n = len(ids)
        # Onsets: more for new and expensive subscriptions, fewer with several boxes; hidden frailty.
        t = acc.tenure_days
        driver = np.exp(0.8 * (t < 180) + 0.4 * ((t >= 180) & (t < 365)) - 0.4 * (t >= 1095)
                        + 0.35 * (acc.fee_cents >= 4500) - 0.3 * acc.multiroom) / _ONSET_DRIVER_MEAN
        frailty = np.exp(p.frailty_sigma * rng.normal(k, 100) - p.frailty_sigma ** 2 / 2)
        rate = p.unhappy_per_month / 30.0 * driver * frailty
        with np.errstate(divide="ignore"):
            onset = np.where(rate > 0, -_PAD_DAYS - np.log(u[:, 1]) / np.where(rate > 0, rate, 1.0), np.inf)
        ramp = p.ramp_days[0] + (p.ramp_days[1] - p.ramp_days[0]) * u[:, 2]
        peak = p.peak_hazard[0] + (p.peak_hazard[1] - p.peak_hazard[0]) * u[:, 3]
        e_u = -np.log(u[:, 4])
        # Already gone by day 1 (the process starts then): replaced by a household like it, whose own
        # dissatisfaction may set in later (a fresh onset after day 1).
        k_pow = p.hazard_power
        gone = e_u <= _cum_unhappy(np.ones(n), onset, ramp, peak, k_pow)
        with np.errstate(divide="ignore"):
            onset = np.where(gone, np.where(rate > 0, 1.0 - np.log(u[:, 7]) / np.where(rate > 0, rate, 1.0), np.inf),
                             onset)
        t_u = _leave_unhappy(e_u, onset, ramp, peak, k_pow)
        # Moving: singles and first-year subscribers move more, seniors less.
        first = households.archetype[households.member_start[:-1]]
        size = households.n_members
        comp = np.where(first == SENIOR, 0.4, np.select([size == 1, size == 2], [1.6, 1.1], 0.8))
        move = p.move_per_month / 30.0 * comp * np.where(t < 365, 1.6, 1.0) / _MOVE_DRIVER_MEAN
        with np.errstate(divide="ignore"):
            t_m = np.where(move > 0, 1.0 - np.log(u[:, 5]) / np.where(move > 0, move, 1.0), np.inf)
        leave = np.minimum(t_u, t_m)
        leave = np.where(leave < _HORIZON, leave, np.inf)
        kind = np.where(np.isinf(leave), STAYS, np.where(t_u <= t_m, UNHAPPY, MOVING)).astype(np.int8)
        persuadable = u[:, 6] < p.persuadable
        retention = np.where(kind == STAYS, SURE_THING,
                             np.where((kind == UNHAPPY) & persuadable, PERSUADABLE, LOST_CAUSE)).astype(np.int8)
        leave_day = np.where(np.isinf(leave), NEVER, np.floor(np.where(np.isinf(leave), 0, leave))).astype(np.int64)
        h_start, h_days = _holidays(households, p)
        return cls(p, ids, onset, ramp, peak, move, leave, leave_day, kind, retention, h_start, h_days, rate)

    # --- the simulator's view -------------------------------------------------------------

    def dissatisfaction(self, rows: np.ndarray, day: int) -> np.ndarray:
        """s in 0..1 at the middle of `day` (0 for households that are not unhappy)."""
        o = self.onset[rows]
        s = np.clip((day + 0.5 - np.where(np.isinf(o), day + 1.0, o)) / self.ramp[rows], 0.0, 1.0)
        return np.asarray(s, dtype=np.float64)

    def away(self, rows: np.ndarray, day: int) -> np.ndarray:
        start, days = self.holiday_start[rows], self.holiday_days[rows]
        return np.asarray(((start <= day) & (day < start + days)).any(axis=1))

    def day(self, rows: np.ndarray, day: int) -> ChurnDay:
        rows = np.asarray(rows, dtype=np.int64)
        present = (day < self.leave_day[rows]) & ~self.away(rows, day)
        return ChurnDay(present, self.dissatisfaction(rows, day), self.leave_day[rows], self.params)

    # --- ground truth -----------------------------------------------------------------------

    def cumulative(self, t: np.ndarray | float) -> np.ndarray:
        """[N, ...] cumulative hazard from day 1 to time t (days since the world's first day)."""
        t = np.maximum(np.asarray(t, dtype=np.float64), 1.0)
        shape = (len(self),) + (1,) * (t.ndim if t.ndim else 0)
        o, r, pk = (a.reshape(shape) for a in (self.onset, self.ramp, self.peak))
        one = np.ones_like(t)
        k = self.params.hazard_power
        unhappy = _cum_unhappy(t, o, r, pk, k) - _cum_unhappy(one, o, r, pk, k)
        return np.asarray(unhappy + self.move_hazard.reshape(shape) * (t - 1.0))

    def hazard(self, days: np.ndarray) -> np.ndarray:
        """[N, len(days)] P(leaving on each day | a subscriber at its start)."""
        d = np.asarray(days, dtype=np.float64)
        return np.asarray(1.0 - np.exp(-(self.cumulative(d + 1.0) - self.cumulative(d))))

    def risk(self, day: int, horizon: int = 30) -> np.ndarray:
        """[N] P(the `ended` day is in day+1 .. day+horizon | it is after `day`) given the household's
        state at the end of `day`: the ceiling of any churn model scored on that day. A household whose
        dissatisfaction has set in by then follows its known path; for one where it has not, a future
        onset is only a rate (integrated over the horizon, day by day) — no observer knows when."""
        t0, t1 = float(day + 1), float(day + 1 + horizon)
        started = self.onset <= t0
        move = self.move_hazard * (t1 - t0)
        known = self.cumulative(t1) - self.cumulative(t0) - move           # the unhappy part, path known
        # not started: P(onset at t0 + tau and leaving by t1), tau on a daily grid (midpoints)
        tau = np.arange(horizon) + 0.5
        dens = self.onset_rate[:, None] * np.exp(-self.onset_rate[:, None] * tau[None, :])
        rest = np.maximum(horizon - tau, 0.0)[None, :]
        r, pk = self.ramp[:, None], self.peak[:, None]
        within = 1.0 - np.exp(-_cum_unhappy(rest, np.zeros_like(r), r, pk, self.params.hazard_power))
        p_unhappy = np.where(started, 1.0 - np.exp(-known), np.minimum((dens * within).sum(axis=1), 1.0))
        return np.asarray(1.0 - np.exp(-move) * (1.0 - p_unhappy))

    def ended_by(self, day: int) -> np.ndarray:
        """bool [N]: the `ended` day is on or before `day`."""
        return np.asarray(self.leave_day <= day)


def _cum_unhappy(t: np.ndarray, onset: np.ndarray, ramp: np.ndarray, peak: np.ndarray, k: float) -> np.ndarray:
    """Cumulative unhappy hazard (peak * s^k) from the onset to t (0 before it, 0 when never unhappy)."""
    finite = np.isfinite(onset)
    o = np.where(finite, onset, 0.0)
    s = np.clip((t - o) / ramp, 0.0, 1.0)
    h = peak * (ramp / (k + 1) * s ** (k + 1) + np.maximum(0.0, t - o - ramp))
    return np.asarray(np.where(finite, h, 0.0))


def _leave_unhappy(e: np.ndarray, onset: np.ndarray, ramp: np.ndarray, peak: np.ndarray, k: float) -> np.ndarray:
    """The time the cumulative unhappy hazard reaches e (inf when never unhappy)."""
    finite = np.isfinite(onset)
    o = np.where(finite, onset, 0.0)
    in_ramp = e <= peak * ramp / (k + 1)
    t = np.where(in_ramp, o + ramp * ((k + 1) * e / (peak * ramp)) ** (1 / (k + 1)),
                 o + ramp + (e - peak * ramp / (k + 1)) / peak)
    return np.asarray(np.where(finite, t, np.inf))


def _holidays(households: Households, p: ChurnParams) -> tuple[np.ndarray, np.ndarray]:
    n = len(households)
    if p.holidays_per_year <= 0:
        return np.full((n, 1), NEVER, dtype=np.int64), np.zeros((n, 1), dtype=np.int64)
    k = rng.key(rng.seed_key(households.seed, rng.TAG_ABSENCE), households.household_id)
    u = rng.uniform(k[:, None], np.arange(2 * _HOLIDAYS)[None, :])
    gaps = -np.log(u[:, :_HOLIDAYS]) * 365.0 / p.holidays_per_year
    start = np.floor(-60.0 + np.cumsum(gaps, axis=1)).astype(np.int64)
    lo, hi = p.holiday_days
    days = (lo + np.floor(u[:, _HOLIDAYS:] * (hi - lo + 1))).astype(np.int64)
    return start, days


def power_cycles(household_id: np.ndarray, day: int, seed: int, s: np.ndarray,
                 mean_at_full: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extra short sessions of unhappy households: (index into the inputs, start s after 00:00, length s).

    A Poisson(mean_at_full * s) count per household (at most 6), each 2-8 minutes between 07:00 and
    23:30 — switching on, finding nothing, switching off."""
    k = rng.key(rng.seed_key(seed, rng.TAG_CHURN_DAY), household_id, day)
    u = rng.stream(k, 1 + 2 * _MAX_CYCLES)
    lam = mean_at_full * s
    # Poisson by inversion: count the k with P(N < k) < u
    ks = np.arange(_MAX_CYCLES)
    log_pmf = -lam[:, None] + ks[None, :] * np.log(np.maximum(lam, 1e-300))[:, None] - np.cumsum(
        np.log(np.maximum(ks, 1)))[None, :]
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    count = np.where(lam > 0, (u[:, :1] > cdf).sum(axis=1), 0)
    i, j = np.nonzero(ks[None, :] < count[:, None])
    start = np.round((7.0 + 16.5 * u[i, 1 + j]) * 3600).astype(np.int64)
    length = np.round((2.0 + 6.0 * u[i, 1 + _MAX_CYCLES + j]) * 60).astype(np.int64)
    return i, start, length


__all__ = ["KINDS", "LOST_CAUSE", "MOVING", "NEVER", "PERSUADABLE", "RETENTION", "STAYS", "SURE_THING",
           "UNHAPPY", "Churn", "ChurnDay", "ChurnParams", "power_cycles"]
