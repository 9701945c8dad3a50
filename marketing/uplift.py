"""Treated vs holdout: conversion rates, the uplift and its 95 % interval.

    effect = uplift(treated_n=9_000, treated_converted=540, holdout_n=1_000, holdout_converted=40)
    effect.absolute, effect.relative, effect.ci95, effect.incremental

The interval is Newcombe's hybrid score interval for a difference of two independent proportions
(Newcombe 1998, "Interval estimation for the difference between independent proportions",
Statistics in Medicine 17:873-890, method 10): the Wilson score interval of each rate, combined
as the square root of the sum of squared distances. Why not the textbook Wald interval
`d ± 1.96 sqrt(p1 q1 / n1 + p2 q2 / n2)`: campaign conversion rates are often near 0 and a
holdout is a tenth of the audience, so counts are small; there Wald's interval collapses to zero
width at 0/n, overshoots [-1, 1] and covers the true difference far less than 95 % of the time.
Wilson-based limits stay inside the possible range, are never degenerate and keep close to nominal
coverage at small counts and extreme rates (Newcombe's evaluation; also Brown, Cai, DasGupta 2001).

Without a holdout there is no baseline: uplift, interval and incremental conversions are None
(the report says "no control group") rather than the treated rate passed off as an effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


@dataclass(frozen=True)
class Uplift:
    treated_n: int
    treated_converted: int
    treated_rate: float                          # 0.0 when treated_n is 0
    holdout_n: int
    holdout_converted: int
    holdout_rate: float                          # 0.0 when holdout_n is 0
    absolute: float | None                       # treated - holdout rate; None without both arms
    relative: float | None                       # absolute / holdout rate; None also when that rate is 0
    ci95: tuple[float, float] | None             # of `absolute`, Newcombe's hybrid score interval
    incremental: float | None                    # absolute * treated_n: conversions the campaign caused


def wilson(converted: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion converted/n (n > 0)."""
    p = converted / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of x1/n1 - x2/n2 (both n > 0)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def uplift(treated_n: int, treated_converted: int, holdout_n: int, holdout_converted: int) -> Uplift:
    """The campaign's effect; ValueError when a count is negative or converted exceeds its arm."""
    for name, conv, n in (("treated", treated_converted, treated_n), ("holdout", holdout_converted, holdout_n)):
        if n < 0 or not 0 <= conv <= n:
            raise ValueError(f"{name}: converted {conv} of {n} households is impossible")
    t_rate = treated_converted / treated_n if treated_n else 0.0
    h_rate = holdout_converted / holdout_n if holdout_n else 0.0
    if treated_n == 0 or holdout_n == 0:
        return Uplift(treated_n, treated_converted, t_rate, holdout_n, holdout_converted, h_rate,
                      absolute=None, relative=None, ci95=None, incremental=None)
    absolute = t_rate - h_rate
    return Uplift(treated_n, treated_converted, t_rate, holdout_n, holdout_converted, h_rate,
                  absolute=absolute, relative=absolute / h_rate if h_rate > 0 else None,
                  ci95=newcombe(treated_converted, treated_n, holdout_converted, holdout_n),
                  incremental=absolute * treated_n)
