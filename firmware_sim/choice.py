"""The viewer choice model: what a member gets out of watching an airing.

The simulator and the ground truth (`truth.py`) share this module, so "ranking candidates by
true utility" is exactly the model that generated the viewing.

Utility of airing `a` (content `k`, genre `g`, channel `c`) for member `m` at daypart `d`:

    u = genre      * taste[m, g]                 log(share of g in m's genre mixture * G)
      + latent     * <z_m, w_k> / sqrt(L)        hidden style factors (L = 4)
      + popularity * pop_z[k]                    standardised log popularity
      + favourite  * [k in favourites[m]]
      + home       * [c in home_channels[m]]
      + premiere   * is_new[a]
      + DAYPART_GENRE_BIAS[d, g]                 shared: news at breakfast, films late, ...
      + football[m] * [k is a football match]    fans +2.0, everyone else -1.5 (households.py)

A member choosing among alternatives picks one with probability softmax(u) (multinomial
logit, scale 1); the simulator adds situational terms that are not part of the truth:
inertia (staying on, or resuming, the current channel), the member's channel repertoire
(the channels they consider), and leaving the channel they just got bored of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

import numpy as np

from firmware_sim.catalogue import (
    COMEDY,
    DOC,
    DRAMA,
    ENTERTAINMENT,
    FILM,
    KIDS,
    LIFESTYLE,
    MUSIC,
    NEWS,
    REGIONAL,
    SPORT,
    G,
)

LATENT_DIM: Final = 4
DAYPARTS: Final = ("morning", "daytime", "afternoon", "prime", "late", "night")
MORNING, DAYTIME, AFTERNOON, PRIME, LATE, NIGHT = range(6)
# UTC hour -> daypart. Morning 04-09, daytime 09-16, afternoon 16-19, prime 19-23,
# late 23-01, night 01-04.
HOUR_DAYPART: Final = np.array([LATE] + [NIGHT] * 3 + [MORNING] * 5 + [DAYTIME] * 7 + [AFTERNOON] * 3
                               + [PRIME] * 4 + [LATE], dtype=np.int8)


def _bias() -> np.ndarray:
    b = np.zeros((len(DAYPARTS), G), dtype=np.float32)
    b[MORNING, [NEWS, KIDS, REGIONAL, FILM, DRAMA]] = (1.0, 0.5, 0.3, -1.0, -0.5)
    b[DAYTIME, [LIFESTYLE, ENTERTAINMENT, NEWS, FILM]] = (0.5, 0.3, 0.2, -0.3)
    b[AFTERNOON, [KIDS, ENTERTAINMENT, NEWS]] = (0.6, 0.3, 0.2)
    b[PRIME, [DRAMA, FILM, SPORT, ENTERTAINMENT, COMEDY, NEWS, KIDS]] = (0.5, 0.5, 0.3, 0.3, 0.2, -0.2, -0.8)
    b[LATE, [FILM, COMEDY, NEWS, KIDS]] = (0.4, 0.3, 0.2, -1.5)
    b[NIGHT, [FILM, MUSIC, DOC, KIDS]] = (0.3, 0.5, 0.2, -2.0)
    return b


DAYPART_GENRE_BIAS: Final = _bias()


@dataclass(frozen=True, slots=True)
class ChoiceModel:
    """Utility coefficients (see the module docstring) and the simulator's situational terms."""

    genre: float = 1.2
    latent: float = 1.3
    popularity: float = 0.5
    favourite: float = 3.0
    home: float = 0.4
    premiere: float = 0.4
    # situational, simulator only
    stay: float = 1.5       # at a programme's end, staying on the channel (lead-in effect)
    resume: float = 1.0     # at power-on, watching what the box resumed on

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class AiringFeatures:
    """What the model reads about airings (index a) and contents (index k)."""

    channel_idx: np.ndarray      # int32 [A]
    content_idx: np.ndarray      # int32 [A]
    is_new: np.ndarray           # bool [A]
    start_ms: np.ndarray         # int64 [A]
    content_genre: np.ndarray    # int16 [K]
    content_pop_z: np.ndarray    # float32 [K]
    content_latent: np.ndarray   # float32 [K, LATENT_DIM]
    content_football: np.ndarray  # bool [K]: a football competition (planted football fans follow it)


@dataclass(frozen=True, slots=True)
class Tastes:
    """Per-member preferences (index m)."""

    taste: np.ndarray        # float32 [M, G]: log(genre share * G), clipped at -5
    latent: np.ndarray       # float32 [M, LATENT_DIM]
    favourites: np.ndarray   # int32 [M, F]: content indices, -1 = none
    home: np.ndarray         # int16 [M, H]: channel indices, -1 = none
    football: np.ndarray     # float32 [M]: utility of football matches (fans > 0, the rest < 0)

    def take(self, rows: np.ndarray) -> Tastes:
        return Tastes(self.taste[rows], self.latent[rows], self.favourites[rows], self.home[rows],
                      self.football[rows])


def daypart_of(ts_ms: np.ndarray) -> np.ndarray:
    """Daypart index of UTC unix-ms times."""
    hour = (np.asarray(ts_ms, dtype=np.int64) // 3_600_000) % 24
    return HOUR_DAYPART[hour]


def utility(model: ChoiceModel, feats: AiringFeatures, tastes: Tastes, members: np.ndarray,
            airings: np.ndarray, daypart: np.ndarray) -> np.ndarray:
    """float32 [n, k]: utility of airings[i, j] for member members[i] (-inf where airings < 0).

    `daypart` is [n] or [n, k] (the daypart each airing would be watched in).
    """
    airings = np.asarray(airings)
    valid = airings >= 0
    a = np.where(valid, airings, 0)
    k = feats.content_idx[a]
    g = feats.content_genre[k]
    m = np.asarray(members)[:, None]
    dp = np.asarray(daypart)
    dp = dp[:, None] if dp.ndim == 1 else dp
    u = model.genre * tastes.taste[m, g]
    u += model.popularity * feats.content_pop_z[k]
    u += model.premiere * feats.is_new[a]
    u += DAYPART_GENRE_BIAS[dp, g]
    z = tastes.latent[m[:, 0]]
    u += (model.latent / math.sqrt(LATENT_DIM)) * np.einsum("nl,nkl->nk", z, feats.content_latent[k])
    fav = tastes.favourites[m[:, 0]]
    u += model.favourite * (k[:, :, None] == fav[:, None, :]).any(axis=2)
    home = tastes.home[m[:, 0]]
    u += model.home * (feats.channel_idx[a][:, :, None] == home[:, None, :]).any(axis=2)
    u += tastes.football[m[:, 0]][:, None] * feats.content_football[k]
    u[~valid] = -np.inf
    return u.astype(np.float32, copy=False)


def softmax(u: np.ndarray, axis: int = -1) -> np.ndarray:
    """Choice probabilities of utilities (rows of -inf only give zeros)."""
    top = np.max(u, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(u - top)
    s = e.sum(axis=axis, keepdims=True)
    return np.asarray(e / np.where(s > 0, s, 1.0))
