"""Stable per-campaign holdout assignment: which households form the control group.

A household is in campaign C's holdout when `hash(C, household) / 2**64 < share`. The hash must
give the same answer in every process, run and platform (the engine registers each audience
household once, but the report, a re-run or another engine must agree with it), so it is built
only from fixed-width integer arithmetic, never from Python's salted `hash()`:

    key  = first 8 bytes of blake2b(campaign id), little-endian     (one per campaign)
    hash = splitmix64(splitmix64(household) ^ key)

splitmix64's finaliser is a bijection on 64 bits with full avalanche, so the hashes of one
campaign are uniform, and two campaigns' keys (unrelated blake2b outputs) give independent
assignments: a household held out of one campaign is no likelier to be held out of the next.
All of it runs in numpy uint64 arithmetic (wrapping multiplication), vectorised over households.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def campaign_key(campaign_id: str) -> np.uint64:
    """The campaign's 64-bit key: the first 8 bytes of blake2b of its id (UTF-8), little-endian."""
    digest = hashlib.blake2b(campaign_id.encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 (Steele, Lea, Flood 2014) of every element of a uint64 array."""
    z = np.asarray(x, dtype=np.uint64) + _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def holdout_hash(campaign_id: str, household_ids: np.ndarray) -> np.ndarray:
    """The uint64 hash of (campaign, household) for each household."""
    ids = np.atleast_1d(np.asarray(household_ids, dtype=np.uint64))
    with np.errstate(over="ignore"):
        return splitmix64(splitmix64(ids) ^ campaign_key(campaign_id))


def holdout_mask(campaign_id: str, household_ids: np.ndarray, share: float) -> np.ndarray:
    """True for the households in the campaign's holdout (`hash / 2**64 < share`).

    share 0 holds out nobody and share 1 everybody; ValueError outside [0, 1].
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"holdout share must be within 0..1, got {share!r}")
    ids = np.atleast_1d(np.asarray(household_ids, dtype=np.uint64))
    threshold = math.ceil(share * 2.0**64)  # hash < share * 2**64  <=>  hash < ceil(share * 2**64)
    if threshold == 0:
        return np.zeros(len(ids), dtype=bool)
    if threshold >= 2**64:
        return np.ones(len(ids), dtype=bool)
    return holdout_hash(campaign_id, ids) < np.uint64(threshold)
