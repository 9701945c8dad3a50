"""Simulated households: composition, entitlements, tastes, and independence from fleet size."""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import cache

import numpy as np

from firmware_sim import catalogue as cat
from firmware_sim.epg import Epg
from firmware_sim.households import CHILD, REPERTOIRE, Households, entitlements


@cache
def world(n: int = 600) -> tuple[Epg, Households]:
    e = Epg.generate(dt.date(2025, 3, 3), 3, seed=1, size="medium")
    return e, Households.generate(e, n, seed=7)


def test_composition() -> None:
    _, h = world()
    assert len(h) == 600 and h.household_id.tolist() == list(range(1, 601))
    assert set(np.unique(h.n_members).tolist()) == {1, 2, 3, 4}
    assert set(np.unique(h.n_devices).tolist()) <= {1, 2, 3} and (h.n_devices > 1).any()
    assert set(np.unique(h.package).tolist()) == set(range(len(cat.PACKAGE_NAMES)))
    for i in range(len(h)):
        members = h.members_of(i)
        assert np.all(h.device[members] < h.n_devices[i])
        assert h.device_ids(i)[0] == f"stb-{int(h.household_id[i]):07d}-0"
        assert h.region_name(i) in cat.REGIONS
    assert h.index_of(17) == 16


def test_tastes_follow_archetypes() -> None:
    _, h = world()
    share = np.exp(h.tastes.taste)
    share /= share.sum(axis=1, keepdims=True)
    kids = h.archetype == CHILD
    assert share[kids, cat.KIDS].mean() > 0.4 > share[~kids, cat.KIDS].mean() * 4
    assert np.all(h.presence >= 0) and np.all(h.presence < 1)
    assert h.presence[:, :, 3].mean() > h.presence[:, :, 1].mean()  # prime time beats daytime


def test_channels_are_entitled_and_favourites_reachable() -> None:
    e, h = world()
    ent = entitlements(e)
    hh_of = np.repeat(np.arange(len(h)), h.n_members)
    allowed = ent[h.package[hh_of], h.region[hh_of]]
    rows = np.arange(len(hh_of))[:, None]
    assert np.all(allowed[rows, np.maximum(h.repertoire, 0)] | (h.repertoire < 0))
    assert np.all((h.repertoire >= 0).sum(axis=1) == REPERTOIRE)
    assert all(set(h.tastes.home[m].tolist()) <= set(h.repertoire[m].tolist()) for m in range(len(hh_of)))
    fav = h.tastes.favourites
    assert (fav >= 0).any(axis=1).mean() > 0.7
    home = np.array([e.channel_index[c.channel_id] if c.channel_id else -1 for c in e.contents])
    for m in range(len(hh_of)):
        for k in fav[m][fav[m] >= 0]:
            assert e.contents[int(k)].kind in ("series", "event")
            assert home[k] in h.repertoire[m]  # members know where their favourites are on
    assert len(np.unique(fav[fav >= 0])) > 100  # a long tail, not only the hits


def test_a_household_does_not_depend_on_fleet_size() -> None:
    e, big = world()
    small = Households.generate(e, 40, seed=7)
    m = int(small.member_start[-1])
    for f in dataclasses.fields(Households):
        a, b = getattr(small, f.name), getattr(big, f.name)
        if f.name == "tastes":
            for g in dataclasses.fields(a):
                assert np.array_equal(getattr(a, g.name), getattr(b, g.name)[:m])
        elif isinstance(a, np.ndarray):
            assert np.array_equal(a, b[:len(a)]), f.name
    shifted = Households.generate(e, 10, seed=7, first_id=31)
    assert np.array_equal(shifted.tastes.taste, big.tastes.taste[big.member_start[30]:big.member_start[40]])
    other = Households.generate(e, 40, seed=8)
    assert not np.array_equal(other.tastes.taste[:10], small.tastes.taste[:10])
