"""ContentModel: implicit ALS over household x content confidences, with daypart sub-profiles.

    model = ContentModel(AlsSettings(), DaypartSettings(), IndexSettings())
    model.fit(viewing, SignalSettings())
    scores = model.recommend(household_id, content_ids, dayparts)  # None: household unknown
    ids, sims = model.similar_items(content_id, 10)
    model.save(folder); ContentModel.load(folder)

Factors belong to contents (a series or a title: `programmes.content_id`); the engine turns
content scores into airings. A household gets one vector (ALS user factors) and, where it
watched enough in a daypart, a daypart sub-profile: the least-squares fold-in
(`recalculate_user`) of its viewing in that daypart against the fixed content factors. An
airing in daypart d is scored with (1 - blend) * household + blend * sub-profile[d].
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import threadpoolctl

from recommender.arrays import load_arrays, save_arrays
from recommender.errors import ModelError, UnknownContent
from recommender.index import ItemIndex
from recommender.settings import AlsSettings, DaypartSettings, IndexSettings, SignalSettings
from recommender.signal import Viewing


def single_threaded_blas() -> None:
    """BLAS at one thread in this process: ALS parallelises above BLAS and per-request products
    are tiny (implicit warns otherwise). The entry point also sets OPENBLAS_NUM_THREADS=1
    before numpy loads; this covers libraries loaded later and in-process callers (tests)."""
    if any(api["num_threads"] != 1 for api in threadpoolctl.threadpool_info() if api["user_api"] == "blas"):
        threadpoolctl.threadpool_limits(1, user_api="blas")


def _als(s: AlsSettings) -> Any:
    from implicit.cpu.als import AlternatingLeastSquares  # loads its BLAS first: then limit them all

    single_threaded_blas()
    return AlternatingLeastSquares(factors=s.factors, regularization=s.regularization, alpha=s.alpha,
                                   iterations=s.iterations, num_threads=s.threads, random_state=s.seed)


@dataclass(frozen=True)
class UserTable:
    """Household vectors and daypart sub-profiles, keyed by household id."""

    household_ids: np.ndarray   # uint64, sorted
    factors: np.ndarray         # float32 (households, f)
    dp_keys: np.ndarray         # int64, sorted: row * dayparts + daypart
    dp_factors: np.ndarray      # float32 (len(dp_keys), f)

    def row(self, household_id: int) -> int:
        i = int(np.searchsorted(self.household_ids, np.uint64(household_id)))
        if i < len(self.household_ids) and int(self.household_ids[i]) == household_id:
            return i
        return -1

    def profile(self, row: int, dayparts: int, blend: float) -> np.ndarray:
        """(dayparts, f): the vector that scores an airing in each daypart."""
        base = self.factors[row]
        out = np.repeat(base[None, :], dayparts, axis=0)
        lo = int(np.searchsorted(self.dp_keys, row * dayparts))
        hi = int(np.searchsorted(self.dp_keys, (row + 1) * dayparts))
        if hi > lo and blend > 0:
            parts = (self.dp_keys[lo:hi] - row * dayparts).astype(np.int64)
            out[parts] = (1 - blend) * base + blend * self.dp_factors[lo:hi]
        return out

    @property
    def size(self) -> int:
        return len(self.household_ids)


class ContentModel:
    def __init__(self, als: AlsSettings | None = None, daypart: DaypartSettings | None = None,
                 index: IndexSettings | None = None) -> None:
        self.als_settings = als or AlsSettings()
        self.daypart_settings = daypart or DaypartSettings()
        self.index_settings = index or IndexSettings()
        self.dayparts = len(self.daypart_settings.names)
        self.blend = self.daypart_settings.blend
        self.content_ids = np.zeros(0, dtype=np.uint64)
        self.item_factors = np.zeros((0, self.als_settings.factors), dtype=np.float32)
        self.users = UserTable(np.zeros(0, np.uint64), np.zeros((0, self.als_settings.factors), np.float32),
                               np.zeros(0, np.int64), np.zeros((0, self.als_settings.factors), np.float32))
        self.index: ItemIndex | None = None
        self._als: Any = None
        self.timings: dict[str, float] = {}  # seconds per fit stage (als, dayparts, index), for meta.json
        self.positives = self.negatives = 0   # cells of the fitted household x content matrix

    # --- training -------------------------------------------------------------------------

    def fit(self, viewing: Viewing, signal: SignalSettings, show_progress: bool = False) -> ContentModel:
        t = time.monotonic()
        household, per_daypart = viewing.confidences(signal)
        self.positives, self.negatives = int((household.data > 0).sum()), int((household.data < 0).sum())
        als = _als(self.als_settings)
        self.timings = {"confidences": round(time.monotonic() - t, 3)}
        t = time.monotonic()
        als.fit(household, show_progress=show_progress)
        self._als = als
        self.content_ids = viewing.content_ids
        self.item_factors = np.ascontiguousarray(als.item_factors, dtype=np.float32)
        users = np.ascontiguousarray(als.user_factors, dtype=np.float32)
        self.timings["als"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        dp_keys, dp_factors = self._daypart_profiles(viewing, per_daypart)
        self.users = UserTable(viewing.household_ids, users, dp_keys, dp_factors)
        self.timings["dayparts"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        self.index = ItemIndex.build(_normalised(self.item_factors), self.index_settings)
        self.timings["index"] = round(time.monotonic() - t, 3)
        return self

    def _daypart_rows(self, viewing: Viewing) -> np.ndarray:
        """(household, daypart) rows with enough viewing for a sub-profile."""
        watched = np.asarray(viewing.raw.sum(axis=1)).ravel()
        return np.flatnonzero(watched >= self.daypart_settings.min_watched).astype(np.int64)

    def _daypart_profiles(self, viewing: Viewing, per_daypart: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        keys = self._daypart_rows(viewing)
        if not len(keys):
            return keys, np.zeros((0, self.item_factors.shape[1]), np.float32)
        factors = self.fold_in_rows(per_daypart[keys])
        return keys, factors

    def fold_in_rows(self, confidences: sp.csr_matrix) -> np.ndarray:
        """User vectors for rows of confidences against the fixed content factors (least squares,
        as ALS computes them), one row per input row."""
        if confidences.shape[0] == 0:
            return np.zeros((0, self.item_factors.shape[1]), np.float32)
        als = self._als_for_fold_in()
        rows = np.arange(confidences.shape[0])
        return np.asarray(als.recalculate_user(rows, confidences.tocsr().astype(np.float32)),
                          dtype=np.float32)

    def fold_in(self, viewing: Viewing, signal: SignalSettings) -> UserTable:
        """A UserTable for the households of `viewing` (whose columns are this model's contents)."""
        if not np.array_equal(viewing.content_ids, self.content_ids):
            raise ValueError("fold-in viewing must use the model's content ids")
        household, per_daypart = viewing.confidences(signal)
        keep = np.flatnonzero(np.diff(household.indptr) > 0)
        factors = self.fold_in_rows(household[keep])
        dp_rows = self._daypart_rows(viewing)
        dp_rows = dp_rows[np.isin(dp_rows // self.dayparts, keep)]
        dp_factors = self.fold_in_rows(per_daypart[dp_rows])
        # renumber daypart keys to the kept households' rows
        new_row = np.full(household.shape[0], -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep))
        dp_keys = new_row[dp_rows // self.dayparts] * self.dayparts + dp_rows % self.dayparts
        return UserTable(viewing.household_ids[keep], factors, dp_keys.astype(np.int64), dp_factors)

    def _als_for_fold_in(self) -> Any:
        if self._als is None:
            als = _als(self.als_settings)
            als.item_factors = self.item_factors
            self._als = als
        return self._als

    # --- scoring --------------------------------------------------------------------------

    def item_rows(self, content_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `content_ids` in the factor matrix and a mask of the known ones."""
        ids = np.asarray(content_ids, dtype=np.uint64)
        if not len(self.content_ids):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        pos = np.minimum(np.searchsorted(self.content_ids, ids), len(self.content_ids) - 1)
        return pos.astype(np.int64), self.content_ids[pos] == ids

    def profile(self, household_id: int, overlay: UserTable | None = None) -> np.ndarray | None:
        """(dayparts, f) scoring vectors of a household; fresher `overlay` first; None if unknown."""
        for table in (overlay, self.users):
            if table is not None:
                row = table.row(household_id)
                if row >= 0:
                    return table.profile(row, self.dayparts, self.blend)
        return None

    def score(self, profile: np.ndarray, item_rows: np.ndarray, dayparts: np.ndarray) -> np.ndarray:
        """Score of each (content row, daypart) pair; contents are scored once per daypart."""
        uniq, inverse = np.unique(item_rows, return_inverse=True)
        # Dayparts without a vector of their own share the base one: one column each, since a
        # matrix product may round the same column differently at another position (OpenBLAS
        # 0.3.31 did), which would break the tie between two airings of one content.
        vectors, column = np.unique(profile, axis=0, return_inverse=True)
        table = self.item_factors[uniq] @ vectors.T          # (unique contents, distinct vectors)
        return table[inverse.ravel(), column.ravel()[np.asarray(dayparts, dtype=np.int64)]]

    def recommend(self, household_id: int, content_ids: np.ndarray, dayparts: np.ndarray,
                  overlay: UserTable | None = None) -> np.ndarray | None:
        """Scores of candidate contents (NaN for contents the model does not know), or None for a
        household the model has never seen."""
        profile = self.profile(household_id, overlay)
        if profile is None:
            return None
        rows, known = self.item_rows(content_ids)
        return self.score_rows(profile, rows, known, dayparts)

    def score_rows(self, profile: np.ndarray, rows: np.ndarray, known: np.ndarray, dayparts: np.ndarray) -> np.ndarray:
        """Scores of candidates given their content rows (`item_rows`), NaN where not `known`."""
        scores = np.full(len(rows), np.nan, dtype=np.float32)
        if known.any():
            scores[known] = self.score(profile, rows[known], np.asarray(dayparts)[known])
        return scores

    def similar_items(self, content_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(content_ids, cosine similarities) of the k contents most like `content_id`."""
        rows, known = self.item_rows(np.asarray([content_id], dtype=np.uint64))
        if not known[0] or self.index is None:
            raise UnknownContent(content_id)
        query = _normalised(self.item_factors[rows])
        sims, found = self.index.search(query, k + 1)
        sims, found = sims[0], found[0]
        keep = (found >= 0) & (found != rows[0])
        return self.content_ids[found[keep]][:k], sims[keep][:k]

    # --- persistence ----------------------------------------------------------------------

    def save(self, folder: Path) -> list[Path]:
        """Write model.*.npy, index.faiss and model.json into `folder`; returns the files."""
        u = self.users
        files = save_arrays(folder, "model", {
            "content_ids": self.content_ids, "item_factors": self.item_factors, "household_ids": u.household_ids,
            "user_factors": u.factors, "dp_keys": u.dp_keys, "dp_factors": u.dp_factors})
        files.append(folder / "model.json")
        (folder / "model.json").write_text(json.dumps({
            "als": vars_of(self.als_settings), "daypart": vars_of(self.daypart_settings),
            "index": vars_of(self.index_settings)}, indent=2))
        if self.index is not None:
            self.index.save(folder / "index.faiss")
            files.append(folder / "index.faiss")
        return files

    @classmethod
    def load(cls, folder: Path, *, blend: float | None = None) -> ContentModel:
        try:
            conf = json.loads((folder / "model.json").read_text())
            als = AlsSettings(**conf["als"])
            dp_conf: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                       for k, v in conf["daypart"].items()}
            daypart = DaypartSettings(**dp_conf)
            index = IndexSettings(**conf["index"])
            arrays = load_arrays(folder, "model")  # memory-mapped: shared by every serving process
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"cannot read model in {folder}: {exc}", path=str(folder)) from exc
        model = cls(als, daypart, index)
        if blend is not None:
            model.blend = blend
        model.content_ids = arrays["content_ids"]
        model.item_factors = arrays["item_factors"]
        model.users = UserTable(arrays["household_ids"], arrays["user_factors"], arrays["dp_keys"],
                                arrays["dp_factors"])
        index_path = folder / "index.faiss"
        model.index = (ItemIndex.load(index_path, index) if index_path.exists()
                       else ItemIndex.build(_normalised(model.item_factors), index))
        return model


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def vars_of(settings: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()}
