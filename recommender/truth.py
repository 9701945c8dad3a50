"""The ground-truth hook of the evaluation: a ceiling for what any recommender could reach.

    class TruthScorer(Protocol):
        def score(self, household_id: int, at_ms: int, airings: np.ndarray) -> np.ndarray

`airings` is an int64 array of shape (n, 3): rows (programme_id, channel_id, start_ms) of the
candidate airings of one evaluation session that starts at `at_ms`. The result is n scores,
higher is better (-inf: the scorer does not know the airing). The evaluator ranks the
candidates by them exactly as it ranks every other method (best airing per content, top k).

`python -m recommender evaluate --truth PATH` loads a scorer with
`firmware_sim.truth.load_truth_scorer(PATH)` (imported only then, so the recommender does
not depend on the simulator). Where that function is missing, `firmware_sim.truth.Truth`
is used through `TruthAdapter` (its `choice_probabilities`, the simulator's own ceiling).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TruthScorer(Protocol):
    def score(self, household_id: int, at_ms: int, airings: np.ndarray) -> np.ndarray:
        """Scores of (programme_id, channel_id, start_ms) rows for a household at a time."""
        ...


class TruthAdapter:
    """A `firmware_sim.truth.Truth` as a TruthScorer; unknown households score 0 everywhere."""

    def __init__(self, truth: Any) -> None:
        self._truth = truth

    def score(self, household_id: int, at_ms: int, airings: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._truth.choice_probabilities(household_id, at_ms, airings), dtype=np.float64)
        except KeyError:
            return np.zeros(len(airings))


def load_truth(path: str) -> TruthScorer:
    module = importlib.import_module("firmware_sim.truth")
    loader = getattr(module, "load_truth_scorer", None)
    scorer = loader(path) if loader is not None else TruthAdapter(module.Truth.load(path))
    if not isinstance(scorer, TruthScorer):
        raise TypeError(f"{path}: the loaded object has no score(household_id, at_ms, airings)")
    return scorer
