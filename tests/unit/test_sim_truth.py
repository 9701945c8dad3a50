"""Ground truth: the file round-trips, it is the simulator's model, and it ranks real choices well."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import numpy as np

from firmware_sim.behaviour import Simulator
from firmware_sim.choice import ChoiceModel, daypart_of, utility
from firmware_sim.epg import Epg
from firmware_sim.households import Households, entitlements
from firmware_sim.truth import Truth, truth_of, write_truth


@cache
def world() -> tuple[Epg, Households]:
    e = Epg.generate(dt.date(2025, 3, 3), 4, seed=3, size="small")
    return e, Households.generate(e, 300, seed=5)


def candidates_at(e: Epg, ts: int) -> np.ndarray:
    now = e.airings_between(ts, ts + 1)
    return np.stack([now["programme_id"].astype(np.int64), now["channel_id"].astype(np.int64),
                     now["start_ms"]], axis=1)


def test_file_round_trip_without_pickles(tmp_path: Path) -> None:
    e, h = world()
    path = tmp_path / "truth.npz"
    write_truth(path, e, h)
    with np.load(path, allow_pickle=False) as z:
        assert {"household_id", "taste", "favourite_content_id", "presence", "meta"} <= set(z.files)
    t = Truth.load(path)
    mem = t.members(int(h.household_id[0]))
    assert len(mem) == h.n_members[0]
    assert abs(sum(mem[0].genre_mixture.values()) - 1) < 0.01
    fav = h.tastes.favourites[h.member_start[0]]
    assert mem[0].favourite_content_ids == [int(e.content_ids[k]) for k in fav if k >= 0]
    ts = e.start_ms + 20 * 3_600_000
    cand = candidates_at(e, ts)
    same = truth_of(e, h)
    assert np.allclose(t.choice_probabilities(3, ts, cand), same.choice_probabilities(3, ts, cand))


def test_truth_is_the_simulators_utility() -> None:
    e, h = world()
    t = truth_of(e, h)
    ts = e.start_ms + 26 * 3_600_000 + 600_000
    cand = candidates_at(e, ts)
    air = t.airings(cand)
    assert np.array_equal(air, np.array([e.airing_at(int(c), int(s)) for _, c, s in cand]))
    for i in (0, 5, 17):
        u, w = t.member_utilities(int(h.household_id[i]), ts, cand)
        members = np.arange(h.member_start[i], h.member_start[i + 1])
        shape = (len(members), len(air))
        sim_u = utility(ChoiceModel(), e.features, h.tastes, members, np.broadcast_to(air, shape),
                        daypart_of(np.full(len(members), ts)))
        assert np.allclose(u, sim_u)
        assert np.allclose(w.sum(axis=0), 1)
        p = t.choice_probabilities(int(h.household_id[i]), ts, cand)
        assert abs(p.sum() - 1) < 1e-5
    bogus = np.array([[1, 101, ts], *cand[:2]])
    assert t.utility(1, ts, bogus)[0] == -np.inf and t.choice_probabilities(1, ts, bogus)[0] == 0
    score = t.score(1, ts, bogus)  # the recommender's TruthScorer protocol
    assert score[0] == -np.inf and np.allclose(score[1:], t.choice_probabilities(1, ts, bogus)[1:])
    assert np.array_equal(t.score(10**9, ts, bogus), np.zeros(3))


def test_truth_ranks_actual_choices_better_than_popularity() -> None:
    e, h = world()
    t = truth_of(e, h)
    ent = entitlements(e)
    pop = e.content_pop_z[e.features.content_idx]
    ranks: dict[str, list[float]] = {"truth": [], "popularity": []}
    for d in Simulator(e, h).simulate_day(3, range(150)):
        row = h.index_of(d.household_id)
        for x in d.events:
            if x[0] != 1 or x[4] < 900:
                continue
            now = e.airings_between(x[1], x[1] + 1)
            now = now[ent[h.package[row], h.region[row]][now["channel_idx"]]]
            cand = np.stack([now["programme_id"].astype(np.int64), now["channel_id"].astype(np.int64),
                             now["start_ms"]], axis=1)
            chosen = int(np.flatnonzero(now["programme_id"] == x[3])[0])
            rows = np.array([e.airing_at(int(c), int(st)) for _, c, st in cand])
            for name, s in (("truth", t.choice_probabilities(d.household_id, x[1], cand)),
                            ("popularity", pop[rows])):
                ranks[name].append(1.0 / (1 + (s > s[chosen]).sum()))
    assert len(ranks["truth"]) > 200
    assert np.mean(ranks["truth"]) > 1.5 * np.mean(ranks["popularity"])
