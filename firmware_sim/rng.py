"""Counter-based random numbers: every draw is a pure function of its key.

The simulator never keeps a random *stream* per household: a number is `hash(seed, household,
day, device, step, slot)`, so a household's behaviour does not depend on how many other
households are simulated, in which order, in which process or in which block. The hash is
SplitMix64's finaliser, applied to numpy `uint64` arrays (wrap-around arithmetic), so
millions of draws cost a few vectorised operations.

    k = key(seed, TAG_SESSIONS, household_ids, day)   # uint64 array, broadcast over the parts
    u = uniform(k, member_index, slot)                # float64 in (0, 1)
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy.special import ndtri

_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_ROOT: Final = np.uint64(0x243F6A8885A308D3)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)

# Purposes: one tag per kind of draw, so two draws never share a key by accident.
TAG_EPG: Final = 1
TAG_HOUSEHOLD: Final = 2
TAG_MEMBER: Final = 3
TAG_SESSIONS: Final = 4
TAG_DEVICE_DAY: Final = 5
TAG_REPERTOIRE: Final = 6
TAG_FAVOURITE: Final = 7
TAG_SUBSCRIBER: Final = 8
TAG_CHURN: Final = 9          # firmware_sim.churn: who leaves, when, why
TAG_ABSENCE: Final = 10       # ... holidays away from home (no viewing)
TAG_CHURN_DAY: Final = 11     # ... an unhappy household's extra power cycles of a day


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective scramble of uint64 values (returns a new array)."""
    x = x ^ (x >> _S30)
    t = np.empty_like(x)
    x *= _M1
    np.right_shift(x, _S27, out=t)
    x ^= t
    x *= _M2
    np.right_shift(x, _S31, out=t)
    x ^= t
    return x


def _u64(part: int | np.ndarray) -> np.ndarray:
    arr = np.asarray(part)
    if arr.dtype == np.uint64:
        return np.atleast_1d(arr)
    return np.atleast_1d(arr.astype(np.int64).astype(np.uint64))


def key(*parts: int | np.ndarray) -> np.ndarray:
    """Combine integers (or integer arrays, broadcast together) into uint64 keys."""
    k = np.atleast_1d(_ROOT)
    for part in parts:
        k = mix(k ^ (_u64(part) * _GOLDEN + _ROOT))
    return k


def bits(k: np.ndarray, *parts: int | np.ndarray) -> np.ndarray:
    """64 random bits per key (and per broadcast part)."""
    return key(k, *parts) if parts else mix(k + _GOLDEN)


def uniform(k: np.ndarray, *parts: int | np.ndarray) -> np.ndarray:
    """Uniform floats in the open interval (0, 1)."""
    return (bits(k, *parts) >> _S11).astype(np.float64) * 2.0**-53 + 2.0**-54


def stream(k: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """`n` uniforms per key, shape `k.shape + (n,)`: the SplitMix64 sequence seeded by each key.

    One scramble per number (cheaper than `uniform` with a counter part), for wide draws
    such as one number per channel.
    """
    counter = (np.arange(start + 1, start + n + 1, dtype=np.uint64) * _GOLDEN)
    x = mix(k[..., None] + counter)
    return (x >> _S11).astype(np.float64) * 2.0**-53 + 2.0**-54


def normal(k: np.ndarray, *parts: int | np.ndarray) -> np.ndarray:
    """Standard normal floats (inverse CDF of `uniform`)."""
    return np.asarray(ndtri(uniform(k, *parts)))


def gumbel(k: np.ndarray, *parts: int | np.ndarray) -> np.ndarray:
    """Standard Gumbel floats: argmax(scores + gumbel) samples softmax(scores)."""
    return -np.log(-np.log(uniform(k, *parts)))


def seed_key(seed: int, tag: int) -> np.ndarray:
    """The root key of one purpose under a world seed (seed may be any Python int)."""
    lo, hi = seed & 0xFFFFFFFFFFFFFFFF, (seed >> 64) & 0xFFFFFFFFFFFFFFFF
    return key(np.array([lo], dtype=np.uint64), np.array([hi], dtype=np.uint64), tag)
