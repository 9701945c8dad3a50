"""Households, their set-top boxes and members, with latent tastes and viewing habits.

    hh = Households.generate(epg, 5000, seed=7)
    hh.household_id[i], hh.device_ids(i), hh.region_name(i), hh.package_name(i)

Stored column-wise (numpy arrays; members in CSR layout: household i owns members
`member_start[i]:member_start[i + 1]`), generated in vectorised chunks. Every draw is keyed by
(seed, household_id, member index), so a household is the same whatever the fleet size.

Composition: single adult, couple, family (2 adults + 1-2 children or teens), single parent,
seniors (1-2). Archetypes child, teen, adult, senior set the priors of each member's
- genre mixture: softmax(archetype prior + N(0, 1)) over the 11 genres (`Tastes.taste`
  holds log(share * 11)),
- hidden style factors (N(0, 1) in 4 dimensions),
- favourite series: 0-5, genre drawn from the mixture, then a content of that genre on the
  household's channels with probability ~ popularity * airings^0.75 (a popular head and
  a personal tail),
- channel repertoire: the 16 entitled channels with the highest
  log(taste . channel genre mix) + 0.8 log(reach) + Gumbel noise; the first 2 are the
  member's home channels,
- football: a fan or not (P by archetype, raised by the taste for sport); fans like football
  matches, everyone else avoids them, and fans keep a football channel in their repertoire
  (`football_fan_households` is the ground truth of the CRM's interest.football tag),
- daypart habits: probability of a viewing session per daypart, weekday and weekend,
- zapping, guide and VOD propensities, the utility of "not watching" and the typical
  length of a partial view.

Package (channel subscription) depends on the household's sport and film appetite; regional
channels are entitled only in their own region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.special import expit, logsumexp

from firmware_sim import catalogue as cat
from firmware_sim import rng
from firmware_sim.choice import DAYPARTS, LATENT_DIM, Tastes
from firmware_sim.epg import Epg

ARCHETYPES: Final = ("child", "teen", "adult", "senior")
CHILD, TEEN, ADULT, SENIOR = range(4)
MAX_MEMBERS: Final = 4
MAX_FAVOURITES: Final = 5
HOME_CHANNELS: Final = 2
REPERTOIRE: Final = 16
CHUNK: Final = 8192

#                  News Drama Comedy Ent  Film Sport Kids  Doc  Music Life  Regional
_GENRE_PRIOR: Final = np.array([
    [-2.0, -1.5, 0.3, 0.0, 0.3, -0.8, 2.8, -0.8, 0.0, -1.5, -2.0],    # child
    [-1.5, 0.0, 1.0, 0.5, 1.0, 0.4, -0.5, -0.5, 1.2, -0.8, -1.8],     # teen
    [0.4, 0.6, 0.4, 0.4, 0.6, 0.2, -2.5, 0.2, -0.2, 0.0, -0.3],       # adult
    [1.0, 0.6, 0.0, 0.5, 0.0, -0.1, -3.0, 0.5, -0.6, 0.5, 0.4],       # senior
], dtype=np.float32)
# P(a viewing session in daypart) [archetype, weekday/weekend, daypart]
_PRESENCE: Final = np.array([
    [[0.45, 0.08, 0.75, 0.40, 0.02, 0.00], [0.70, 0.55, 0.60, 0.45, 0.03, 0.00]],
    [[0.20, 0.08, 0.45, 0.55, 0.25, 0.04], [0.15, 0.40, 0.40, 0.55, 0.35, 0.06]],
    [[0.30, 0.10, 0.25, 0.82, 0.35, 0.04], [0.30, 0.35, 0.35, 0.80, 0.40, 0.05]],
    [[0.45, 0.55, 0.55, 0.85, 0.22, 0.03], [0.45, 0.50, 0.50, 0.85, 0.25, 0.03]],
], dtype=np.float32)
_ZAP: Final = np.array([0.45, 0.75, 0.5, 0.3])        # P(zapping to a nearby channel)
_GUIDE: Final = np.array([0.15, 0.2, 0.25, 0.3])      # P(using the guide to switch)
_VOD: Final = np.array([0.45, 0.5, 0.3, 0.1])         # P(VOD instead of switching off)
_PARTIAL_S: Final = np.array([420.0, 240.0, 480.0, 720.0])  # median partial view before tuning away
_N_FAVOURITES: Final = np.array([0.12, 0.23, 0.25, 0.2, 0.12, 0.08])
# Football fans: P(fan) by archetype, raised by the member's taste for sport. Fans get FAN_UTILITY on
# every football match, everyone else NON_FAN_UTILITY: football divides audiences far more than
# sport as a whole, which is what makes "interest.football" a tag worth having (and testable).
_FOOTBALL_FAN: Final = np.array([0.08, 0.30, 0.28, 0.12])
FAN_UTILITY: Final = 3.5
NON_FAN_UTILITY: Final = -5.0
_FAN_CHANNEL: Final = 4.0   # repertoire score bonus of channels carrying football, for fans
_FAVOURITE_GENRES: Final = np.array([g not in (cat.NEWS, cat.FILM) for g in range(cat.G)])


@dataclass(frozen=True, slots=True)
class Households:
    """A fleet. Per household (index i) and per member (index m), all numpy arrays."""

    seed: int
    household_id: np.ndarray     # uint64 [N]
    region: np.ndarray           # int8 [N] index into catalogue.REGIONS
    package: np.ndarray          # int8 [N] index into catalogue.PACKAGE_NAMES
    n_devices: np.ndarray        # int8 [N] 1..3
    member_start: np.ndarray     # int64 [N + 1]
    archetype: np.ndarray        # int8 [M]
    device: np.ndarray           # int8 [M] the member's usual box
    presence: np.ndarray         # float32 [M, 2, 6] P(session) weekday/weekend x daypart
    session_scale: np.ndarray    # float32 [M] multiplies session lengths
    zap: np.ndarray              # float32 [M]
    guide: np.ndarray            # float32 [M]
    vod: np.ndarray              # float32 [M]
    outside: np.ndarray          # float32 [M] utility of switching off
    partial_s: np.ndarray        # float32 [M] median seconds of a partial view
    repertoire: np.ndarray       # int16 [M, REPERTOIRE] channel indices, best first, -1 pad
    tastes: Tastes

    def __len__(self) -> int:
        return len(self.household_id)

    @property
    def n_members(self) -> np.ndarray:
        return np.diff(self.member_start)

    def members_of(self, i: int) -> range:
        return range(int(self.member_start[i]), int(self.member_start[i + 1]))

    def device_ids(self, i: int) -> list[str]:
        hh = int(self.household_id[i])
        return [device_id(hh, k) for k in range(int(self.n_devices[i]))]

    def region_name(self, i: int) -> str:
        return cat.REGIONS[int(self.region[i])]

    def package_name(self, i: int) -> str:
        return cat.PACKAGE_NAMES[int(self.package[i])]

    def index_of(self, household_id: int) -> int:
        i = int(np.searchsorted(self.household_id, np.uint64(household_id)))
        if i >= len(self) or int(self.household_id[i]) != household_id:
            raise KeyError(household_id)
        return i

    @classmethod
    def generate(cls, epg: Epg, n: int, seed: int, first_id: int = 1) -> Households:
        """`n` households with ids first_id .. first_id + n - 1."""
        ent = entitlements(epg)
        fav_index = _FavouriteIndex(epg, ent)
        parts = [_chunk(epg, ent, fav_index, seed, np.arange(lo, min(n, lo + CHUNK), dtype=np.uint64)
                        + np.uint64(first_id)) for lo in range(0, n, CHUNK)]
        return _concat(seed, parts)


def device_id(household_id: int, k: int) -> str:
    return f"stb-{household_id:07d}-{k}"


def entitlements(epg: Epg) -> np.ndarray:
    """bool [packages, regions, channels]: what a (package, region) household can watch."""
    out = np.zeros((len(cat.PACKAGE_NAMES), len(cat.REGIONS), len(epg.channels)), dtype=bool)
    for p, tiers in enumerate(cat.PACKAGES.values()):
        for r, region in enumerate(cat.REGIONS):
            out[p, r] = [c.tier in tiers and c.region in ("", region) for c in epg.channels]
    return out


class _FavouriteIndex:
    """Cumulative weights of favourite candidates per (package, region, genre) group."""

    def __init__(self, epg: Epg, ent: np.ndarray) -> None:
        n_airings = np.bincount(epg.features.content_idx, minlength=len(epg.contents))
        pop = np.array([c.popularity for c in epg.contents])
        home = np.array([epg.channel_index.get(c.channel_id, -1) for c in epg.contents])
        series = np.array([c.kind in ("series", "event") for c in epg.contents])
        eligible = series & (n_airings > 0) & (home >= 0)
        weight = pop * n_airings ** 0.75
        keys: list[np.ndarray] = []
        contents: list[np.ndarray] = []
        for p in range(ent.shape[0]):
            for r in range(ent.shape[1]):
                ok = eligible & ent[p, r][np.maximum(home, 0)]
                for g in range(cat.G):
                    ks = np.flatnonzero(ok & (epg.content_genre == g))
                    gid = (p * ent.shape[1] + r) * cat.G + g
                    if len(ks):
                        w = np.cumsum(weight[ks])
                        keys.append(np.full(len(ks), gid, dtype=np.float64) + w / w[-1])
                        contents.append(ks)
        self.keys = np.concatenate(keys)      # group id + cumulative share, increasing
        self.contents = np.concatenate(contents).astype(np.int32)
        self.n_regions = ent.shape[1]

    def draw(self, package: np.ndarray, region: np.ndarray, genre: np.ndarray, u: np.ndarray) -> np.ndarray:
        gid = (package.astype(np.int64) * self.n_regions + region) * cat.G + genre
        j = np.searchsorted(self.keys, gid + u)
        j = np.minimum(j, len(self.keys) - 1)
        ok = np.floor(self.keys[j] - 1e-12).astype(np.int64) == gid
        return np.where(ok, self.contents[j], -1)


def _members(kh: np.ndarray) -> np.ndarray:
    """int8 [n, MAX_MEMBERS] archetypes, -1 = nobody."""
    n = len(kh)
    u = rng.uniform(kh[:, None], np.arange(8)[None, :])
    kid = np.where(u[:, 1] < 0.6, CHILD, TEEN)
    kid2 = np.where(u[:, 2] < 0.6, CHILD, TEEN)
    out = np.full((n, MAX_MEMBERS), -1, dtype=np.int8)
    t = np.searchsorted(np.cumsum([0.22, 0.24, 0.28, 0.08, 0.18]), u[:, 0])  # household type
    single, couple, family, parent, seniors = (t == i for i in range(5))
    out[:, 0] = np.where(seniors, SENIOR, ADULT)
    out[couple | family, 1] = ADULT
    out[seniors & (u[:, 3] < 0.55), 1] = SENIOR
    out[family, 2] = kid[family]
    out[family & (u[:, 3] < 0.55), 3] = kid2[family & (u[:, 3] < 0.55)]
    out[parent, 1] = kid[parent]
    out[parent & (u[:, 4] < 0.4), 2] = kid2[parent & (u[:, 4] < 0.4)]
    del single
    return out


def _chunk(epg: Epg, ent: np.ndarray, fav_index: _FavouriteIndex, seed: int,
           ids: np.ndarray) -> dict[str, np.ndarray]:
    content_channel = np.array([epg.channel_index.get(c.channel_id, -1) for c in epg.contents])
    kh = rng.key(rng.seed_key(seed, rng.TAG_HOUSEHOLD), ids)
    u = rng.uniform(kh[:, None], np.arange(8, 16)[None, :])
    arche = _members(kh)
    present = arche >= 0
    n_members = present.sum(axis=1)
    hh_of = np.repeat(np.arange(len(ids)), n_members)
    k_of = np.nonzero(present)[1]
    arch = arche[present].astype(np.int64)
    km = rng.key(rng.seed_key(seed, rng.TAG_MEMBER), ids[hh_of], k_of)
    um = rng.uniform(km[:, None], np.arange(16)[None, :])
    n_dev = np.minimum(3, 1 + (n_members >= 2) * (u[:, 0] < 0.45) + (n_members >= 3) * (u[:, 1] < 0.35))
    region = np.searchsorted(np.cumsum([0.3, 0.25, 0.25, 0.2]), u[:, 2]).astype(np.int8)

    # Tastes.
    logits = _GENRE_PRIOR[arch] + rng.normal(km[:, None], 100 + np.arange(cat.G)[None, :])
    log_share = logits - logsumexp(logits, axis=1, keepdims=True)
    share = np.exp(log_share)
    taste = np.maximum(log_share + np.log(cat.G), -5.0).astype(np.float32)
    latent = rng.normal(km[:, None], 200 + np.arange(LATENT_DIM)[None, :]).astype(np.float32)

    base = _FOOTBALL_FAN[arch]
    fan = rng.uniform(km, 800) < expit(np.log(base / (1 - base)) + 0.8 * taste[:, cat.SPORT])
    football = np.where(fan, FAN_UTILITY, NON_FAN_UTILITY).astype(np.float32)

    # Package from the household's appetite for sport and films.
    sport = np.maximum.reduceat(share[:, cat.SPORT], np.r_[0, np.cumsum(n_members)[:-1]])
    film = np.maximum.reduceat(share[:, cat.FILM], np.r_[0, np.cumsum(n_members)[:-1]])
    w = np.array(cat.PACKAGE_SHARE)[None, :] * np.exp(np.stack([
        np.zeros_like(sport), np.zeros_like(sport), 8 * (sport - 0.12), 8 * (film - 0.12),
        4 * (sport + film - 0.24)], axis=1))
    package = (u[:, 3:4] * w.sum(axis=1, keepdims=True) > np.cumsum(w, axis=1)).sum(axis=1).astype(np.int8)

    # Favourite series.
    n_fav = np.searchsorted(np.cumsum(_N_FAVOURITES), um[:, 4])
    fav_share = np.where(_FAVOURITE_GENRES, share, 0.0)
    fav_cum = np.cumsum(fav_share / fav_share.sum(axis=1, keepdims=True), axis=1)
    ug = rng.uniform(km[:, None], 300 + np.arange(MAX_FAVOURITES)[None, :])
    uc = rng.uniform(km[:, None], 400 + np.arange(MAX_FAVOURITES)[None, :])
    genre = (ug[:, :, None] > fav_cum[:, None, :]).sum(axis=2).clip(max=cat.G - 1)
    pk, rg = package[hh_of][:, None], region[hh_of][:, None]
    fav = fav_index.draw(np.broadcast_to(pk, genre.shape), np.broadcast_to(rg, genre.shape), genre, uc)
    fav[np.arange(MAX_FAVOURITES)[None, :] >= n_fav[:, None]] = -1
    fav = np.sort(fav, axis=1)
    fav[:, 1:][fav[:, 1:] == fav[:, :-1]] = -1  # duplicates
    fav = -np.sort(-fav, axis=1)

    # Home channels and repertoire: Gumbel-top-k over entitled channels.
    channel_ent = ent[package[hh_of], region[hh_of]]
    reach = np.log(np.array([c.reach for c in epg.channels], dtype=np.float32))
    score = np.log(share.astype(np.float32) @ epg.channel_genre_mix.T + 1e-6) + 0.8 * reach
    score += rng.gumbel(km[:, None], 1000 + np.arange(len(epg.channels))[None, :]).astype(np.float32)
    score[~channel_ent] = -np.inf
    home = np.argsort(-score, axis=1, kind="stable")[:, :HOME_CHANNELS].astype(np.int16)
    # Members know where their favourites are on: those channels join the repertoire.
    fav_ch = np.where(fav >= 0, content_channel[np.maximum(fav, 0)], -1)
    rows = np.broadcast_to(np.arange(len(score))[:, None], fav_ch.shape)
    ok = fav_ch >= 0
    score[rows[ok], fav_ch[ok]] += 100.0
    # ... and football fans know where football is on.
    score[fan] += _FAN_CHANNEL * epg_football_channels(epg)[None, :]
    top = np.argsort(-score, axis=1, kind="stable")[:, :REPERTOIRE]
    repertoire = np.where(np.take_along_axis(score, top, axis=1) > -np.inf, top, -1).astype(np.int16)

    # Habits.
    engagement = np.exp(0.35 * rng.normal(km, 500))[:, None, None]
    noise = np.exp(0.3 * rng.normal(km[:, None, None], 600 + np.arange(12).reshape(1, 2, 6)))
    presence = np.minimum(0.97, _PRESENCE[arch] * engagement * noise).astype(np.float32)

    def propensity(base: np.ndarray, slot: int, spread: float = 0.8) -> np.ndarray:
        return np.asarray(expit(np.log(base[arch] / (1 - base[arch])) + spread * rng.normal(km, slot)),
                          dtype=np.float32)

    device = np.where(k_of == 0, 0, np.where(np.isin(arch, (CHILD, TEEN)) & (um[:, 5] < 0.7),
                                             n_dev[hh_of] - 1, np.where(um[:, 6] < 0.75, 0, 1)))
    device = np.minimum(device, n_dev[hh_of] - 1)
    return {
        "household_id": ids, "region": region, "package": package, "n_devices": n_dev.astype(np.int8),
        "n_members": n_members, "archetype": arch.astype(np.int8), "device": device.astype(np.int8),
        "presence": presence, "session_scale": np.exp(0.3 * rng.normal(km, 700)).astype(np.float32),
        "zap": propensity(_ZAP, 701), "guide": propensity(_GUIDE, 702), "vod": propensity(_VOD, 703),
        "outside": (-0.8 + 0.5 * rng.normal(km, 704)).astype(np.float32),
        "partial_s": (_PARTIAL_S[arch] * np.exp(0.5 * rng.normal(km, 705))).astype(np.float32),
        "repertoire": repertoire, "taste": taste, "latent": latent, "favourites": fav.astype(np.int32),
        "home": home, "football": football,
    }


def _concat(seed: int, parts: list[dict[str, np.ndarray]]) -> Households:
    def cat_(name: str) -> np.ndarray:
        return np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)

    n_members = cat_("n_members").astype(np.int64)
    return Households(
        seed=seed, household_id=cat_("household_id").astype(np.uint64), region=cat_("region"),
        package=cat_("package"), n_devices=cat_("n_devices"),
        member_start=np.concatenate([[0], np.cumsum(n_members)]).astype(np.int64),
        archetype=cat_("archetype"), device=cat_("device"), presence=cat_("presence"),
        session_scale=cat_("session_scale"), zap=cat_("zap"), guide=cat_("guide"), vod=cat_("vod"),
        outside=cat_("outside"), partial_s=cat_("partial_s"), repertoire=cat_("repertoire"),
        tastes=Tastes(cat_("taste"), cat_("latent"), cat_("favourites"), cat_("home"), cat_("football")),
    )


def epg_football_channels(epg: Epg) -> np.ndarray:
    """bool [channels]: channels whose contents include a football competition."""
    out = np.zeros(len(epg.channels), dtype=bool)
    for k in np.flatnonzero(epg.content_football):
        c = epg.channel_index.get(epg.contents[k].channel_id, -1)
        if c >= 0:
            out[c] = True
    return out


def football_fan_households(households: Households) -> np.ndarray:
    """bool [N]: households with at least one planted football fan (the tag's ground truth)."""
    fan = households.tastes.football > 0
    return np.logical_or.reduceat(fan, households.member_start[:-1]) if len(fan) else np.zeros(0, dtype=bool)


__all__ = ["ARCHETYPES", "DAYPARTS", "HOME_CHANNELS", "MAX_FAVOURITES", "REPERTOIRE", "Households",
           "device_id", "entitlements", "football_fan_households"]
