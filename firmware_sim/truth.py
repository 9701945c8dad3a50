"""Ground truth for scoring recommenders: what each household really likes.

    write_truth("truth.npz", epg, households)          # after generating the world
    truth = Truth.load("truth.npz")                    # anywhere, without the simulator running
                                                       # (load_truth_scorer: the recommender's hook)
    p = truth.choice_probabilities(household_id, at_ms, [(programme_id, channel_id, start_ms), ...])
    u = truth.utility(household_id, at_ms, candidates) # expected utility per candidate
    truth.members(household_id)                        # tastes and favourites, readable
    truth.score(household_id, at_ms, airings)          # recommender.truth.TruthScorer protocol

Scoring: rank a household's candidate airings by `choice_probabilities` (or `utility`) — that
ranking is the ceiling any recommender can reach; compare it with the recommender's ranking
(NDCG, precision@k against the top true items) or sum the true probabilities of the items
recommended. What households actually watched is in the events (views); it is not repeated here.

The household's value of an airing is a mixture over its members: member m's weight is its
habit of watching in the daypart (and weekday/weekend) when the airing would be watched,
max(at_ms, start_ms); its utility is `choice.utility` (taste, hidden style, popularity,
favourite, home channel, premiere, daypart), the very function the simulator samples
choices from. Situational terms (inertia, boredom, the member's channel repertoire) are not
part of the truth: a recommendation shows an item whatever channel it is on.

    choice_probabilities = sum_m w_m * softmax_over_candidates(u_m)
    utility              = sum_m w_m * u_m

File format: one numpy `.npz` (`np.load(path)`; no pickles), arrays:

| key | shape | meaning |
|-----|-------|---------|
| `meta` | () str | JSON: version, seed, model coefficients, genres, dayparts, guide start/end |
| `household_id` | [N] uint64 | sorted |
| `member_start` | [N+1] int64 | household i's members are rows member_start[i]:member_start[i+1] |
| `archetype` | [M] int8 | 0 child, 1 teen, 2 adult, 3 senior |
| `presence` | [M, 2, 6] float32 | P(session) weekday/weekend x daypart: the mixture weights |
| `taste` | [M, G] float32 | log(genre share x G) |
| `genre_share` | [M, G] float32 | the genre mixture |
| `latent` | [M, 4] float32 | hidden style factors |
| `favourite_content_id` | [M, 5] uint64 | favourite series (0 = none) |
| `home_channel_id` | [M, 2] uint32 | |
| `football`, `football_fan` | [M] float32, [M] bool | utility of football matches; planted fans (> 0) |
| `content_football` | [K] bool | football competitions |
| `content_id`, `content_genre`, `content_pop_z`, `content_latent` | [K], [K], [K], [K, 4] | contents |
| `channel_id` | [C] uint32 | |
| `airing_channel_idx`, `airing_start_ms`, `airing_programme_id`, | [A] | airings, sorted by |
| `airing_content_idx`, `airing_is_new`                             |     | (channel, start)   |
| `daypart_genre_bias` | [6, G] float32 | |
| `churn_kind`, `churn_retention` | [N] int8 | 0 stays, 1 unhappy, 2 moving; 0 sure thing, 1 persuadable, 2 lost cause |
| `churn_leave_day` | [N] int64 | the `ended` day, days since the guide's first day (2^30: stays) |
| `churn_hazard` | [N, days] float32 | P(leaving on each guide day | a subscriber at its start) |
| `churn_onset`, `churn_ramp`, `churn_peak`, `churn_move_hazard` | [N] float64 | the process (firmware_sim.churn) |
| `churn_holiday_start`, `churn_holiday_days` | [N, H] int64 | holidays (no viewing) |

Churn (`Truth.churn_risk(day, horizon)`): P(a household still subscribed after `day` ends in the next
`horizon` days), from the process's parameters — the ceiling of a churn model scored on that day.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from firmware_sim.catalogue import GENRES
from firmware_sim.choice import (
    DAYPART_GENRE_BIAS,
    DAYPARTS,
    AiringFeatures,
    ChoiceModel,
    Tastes,
    daypart_of,
    softmax,
    utility,
)
from firmware_sim.churn import Churn, ChurnParams

if TYPE_CHECKING:
    from firmware_sim.epg import Epg
    from firmware_sim.households import Households

TRUTH_VERSION = 1
Candidates = Sequence[tuple[int, int, int]] | np.ndarray  # (programme_id, channel_id, start_ms) rows
_ARCHETYPES = ("child", "teen", "adult", "senior")


@dataclass(frozen=True, slots=True)
class MemberTruth:
    archetype: str
    genre_mixture: dict[str, float]
    favourite_content_ids: list[int]
    home_channel_ids: list[int]


class Truth:
    """The simulator's choice model over one world, loadable from its `.npz`."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.meta: dict[str, Any] = json.loads(str(arrays["meta"]))
        self.model = ChoiceModel(**self.meta["model"])
        self.household_id = arrays["household_id"]
        self.member_start = arrays["member_start"]
        self.archetype = arrays["archetype"]
        self.presence = arrays["presence"]
        self.genre_share = arrays["genre_share"]
        self.channel_id = arrays["channel_id"]
        content_id = arrays["content_id"]
        fav = arrays["favourite_content_id"]
        fav_idx = np.searchsorted(content_id, fav)
        fav_idx = np.where(fav > 0, np.minimum(fav_idx, len(content_id) - 1), -1).astype(np.int32)
        home = arrays["home_channel_id"]
        home_idx = np.where(home > 0, np.searchsorted(self.channel_id, home), -1).astype(np.int16)
        # Files written before football fans were planted: nobody is a fan, no match is football.
        football = arrays.get("football", np.zeros(len(arrays["archetype"]), dtype=np.float32))
        self.tastes = Tastes(arrays["taste"], arrays["latent"], fav_idx, home_idx, football)
        self.content_id = content_id
        self.favourite_content_id = fav
        self.home_channel_id = home
        self.features = AiringFeatures(
            channel_idx=arrays["airing_channel_idx"].astype(np.int32),
            content_idx=arrays["airing_content_idx"].astype(np.int32),
            is_new=arrays["airing_is_new"], start_ms=arrays["airing_start_ms"],
            content_genre=arrays["content_genre"], content_pop_z=arrays["content_pop_z"],
            content_latent=arrays["content_latent"],
            content_football=arrays.get("content_football", np.zeros(len(content_id), dtype=bool)))
        self.airing_programme_id = arrays["airing_programme_id"]
        self.churn: Churn | None = _churn_from(arrays)
        # (channel idx, start) sort key for candidate lookups
        self._key = self.features.channel_idx.astype(np.int64) * (1 << 44) + self.features.start_ms

    @classmethod
    def load(cls, path: str | Path | IO[bytes]) -> Truth:
        with np.load(path, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})

    # --- lookups -------------------------------------------------------------------------

    def _row(self, household_id: int) -> int:
        i = int(np.searchsorted(self.household_id, np.uint64(household_id)))
        if i >= len(self.household_id) or int(self.household_id[i]) != household_id:
            raise KeyError(household_id)
        return i

    def airings(self, candidates: Candidates) -> np.ndarray:
        """Airing indices of (programme_id, channel_id, start_ms) candidates (-1: not in the guide)."""
        c = np.asarray(candidates, dtype=np.int64).reshape(-1, 3)
        ch = np.searchsorted(self.channel_id, c[:, 1].astype(np.uint32))
        ch = np.minimum(ch, len(self.channel_id) - 1)
        known = self.channel_id[ch] == c[:, 1]
        pos = np.searchsorted(self._key, ch.astype(np.int64) * (1 << 44) + c[:, 2])
        pos = np.minimum(pos, len(self._key) - 1)
        ok = known & (self.features.start_ms[pos] == c[:, 2])
        ok &= self.airing_programme_id[pos] == c[:, 0].astype(np.uint64)
        return np.where(ok, pos, -1)

    def member_utilities(self, household_id: int, at_ms: int,
                         candidates: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """(u [members, n], w [members, n]): each member's utility and mixture weight per candidate."""
        i = self._row(household_id)
        members = np.arange(int(self.member_start[i]), int(self.member_start[i + 1]))
        air = self.airings(candidates)
        when = np.where(air >= 0, np.maximum(self.features.start_ms[np.maximum(air, 0)], at_ms), at_ms)
        dp = daypart_of(when)
        weekend = ((when // 86_400_000 + 3) % 7 >= 5).astype(np.int64)  # 1970-01-01 was a Thursday
        shape = (len(members), len(air))
        u = utility(self.model, self.features, self.tastes, members, np.broadcast_to(air, shape),
                    np.broadcast_to(dp, shape))
        w = self.presence[members][:, weekend, dp] + 1e-6
        return u, w / w.sum(axis=0, keepdims=True)

    def utility(self, household_id: int, at_ms: int,
                candidates: Candidates) -> np.ndarray:
        """Expected utility per candidate (-inf for airings not in the guide)."""
        u, w = self.member_utilities(household_id, at_ms, candidates)
        finite = np.isfinite(u).all(axis=0)
        return np.where(finite, (np.where(np.isfinite(u), u, 0.0) * w).sum(axis=0), -np.inf)

    def choice_probabilities(self, household_id: int, at_ms: int,
                             candidates: Candidates) -> np.ndarray:
        """P(the household picks each candidate | it picks one of them): the ceiling ranking."""
        u, w = self.member_utilities(household_id, at_ms, candidates)
        if u.shape[1] == 0:
            return np.zeros(0)
        return np.asarray((softmax(u, axis=1) * w).sum(axis=0))

    def score(self, household_id: int, at_ms: int, airings: Candidates) -> np.ndarray:
        """The recommender's `TruthScorer` protocol: choice probabilities, -inf for airings the
        guide does not have, zeros for households the truth does not know."""
        try:
            p = self.choice_probabilities(household_id, at_ms, airings)
        except KeyError:
            return np.zeros(len(np.asarray(airings).reshape(-1, 3)))
        return np.where(self.airings(airings) >= 0, p, -np.inf)

    def churn_risk(self, day: int, horizon: int = 30) -> np.ndarray:
        """[N] P(ending in days day+1 .. day+horizon | still subscribed after `day`), `day` counted from
        the guide's first day; households in `household_id` order."""
        if self.churn is None:
            raise KeyError("this truth file predates the churn process")
        return self.churn.risk(day, horizon)

    def members(self, household_id: int) -> list[MemberTruth]:
        i = self._row(household_id)
        out = []
        for m in range(int(self.member_start[i]), int(self.member_start[i + 1])):
            out.append(MemberTruth(
                _ARCHETYPES[int(self.archetype[m])],
                {g: round(float(s), 4) for g, s in zip(GENRES, self.genre_share[m], strict=True)},
                [int(c) for c in self.favourite_content_id[m] if c],
                [int(c) for c in self.home_channel_id[m] if c]))
        return out


def load_truth_scorer(path: str | Path) -> Truth:
    """Entry point for `python -m recommender evaluate --truth PATH`."""
    return Truth.load(path)


def _churn_from(arrays: dict[str, np.ndarray]) -> Churn | None:
    if "churn_kind" not in arrays:
        return None
    n = len(arrays["household_id"])
    saved = json.loads(str(arrays["meta"])).get("churn", {})
    params = ChurnParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})  # type: ignore[arg-type]
    return Churn(params, arrays["household_id"], arrays["churn_onset"], arrays["churn_ramp"],
                 arrays["churn_peak"], arrays["churn_move_hazard"], np.full(n, np.nan), arrays["churn_leave_day"],
                 arrays["churn_kind"], arrays["churn_retention"], arrays["churn_holiday_start"],
                 arrays["churn_holiday_days"], arrays["churn_onset_rate"])


def churn_arrays(churn: Churn, days: int) -> dict[str, np.ndarray]:
    return {"churn_kind": churn.kind, "churn_retention": churn.retention, "churn_leave_day": churn.leave_day,
            "churn_hazard": churn.hazard(np.arange(days)).astype(np.float32), "churn_onset": churn.onset,
            "churn_ramp": churn.ramp, "churn_peak": churn.peak, "churn_move_hazard": churn.move_hazard,
            "churn_onset_rate": churn.onset_rate,
            "churn_holiday_start": churn.holiday_start, "churn_holiday_days": churn.holiday_days}


def truth_arrays(epg: Epg, households: Households, model: ChoiceModel | None = None,
                 churn: Churn | None = None) -> dict[str, np.ndarray]:
    """The ground-truth arrays of a world (an `Epg` and its `Households`; `churn` defaults to the
    households' default churn process, the one `Simulator` uses)."""
    model = model or ChoiceModel()
    churn = churn or Churn.generate(households)
    t = households.tastes
    share = np.exp(t.taste)
    share /= share.sum(axis=1, keepdims=True)
    f = epg.features
    fav = np.where(t.favourites >= 0, epg.content_ids[np.maximum(t.favourites, 0)], 0).astype(np.uint64)
    home = np.where(t.home >= 0, epg.channel_ids[np.maximum(t.home, 0)], 0).astype(np.uint32)
    meta = {"version": TRUTH_VERSION, "seed": households.seed, "epg_seed": epg.seed,
            "model": model.as_dict(), "genres": list(GENRES), "dayparts": list(DAYPARTS),
            "start_ms": epg.start_ms, "end_ms": epg.end_ms,
            "note": "taste is clipped at -5, so genre_share is approximate for disliked genres",
            "churn": dataclasses.asdict(churn.params)}
    return {
        "meta": np.array(json.dumps(meta)),
        "household_id": households.household_id, "member_start": households.member_start,
        "archetype": households.archetype, "presence": households.presence,
        "taste": t.taste, "genre_share": share.astype(np.float32), "latent": t.latent,
        "favourite_content_id": fav, "home_channel_id": home, "football": t.football,
        "football_fan": t.football > 0,
        "content_id": epg.content_ids, "content_genre": f.content_genre, "content_pop_z": f.content_pop_z,
        "content_latent": f.content_latent, "content_football": f.content_football,
        "channel_id": epg.channel_ids,
        "airing_channel_idx": f.channel_idx.astype(np.int16), "airing_start_ms": f.start_ms,
        "airing_programme_id": epg.airings["programme_id"], "airing_content_idx": f.content_idx,
        "airing_is_new": f.is_new, "daypart_genre_bias": DAYPART_GENRE_BIAS, **churn_arrays(churn, epg.days),
    }


def write_truth(path: str | Path | IO[bytes], epg: Epg, households: Households,
                model: ChoiceModel | None = None, churn: Churn | None = None) -> None:
    """Write the ground truth as a compressed `.npz`."""
    arrays: dict[str, Any] = truth_arrays(epg, households, model, churn)
    np.savez_compressed(path, **arrays)


def truth_of(epg: Epg, households: Households, model: ChoiceModel | None = None,
             churn: Churn | None = None) -> Truth:
    """The same object `Truth.load` gives, without a file."""
    return Truth(truth_arrays(epg, households, model, churn))
