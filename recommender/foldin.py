"""Folding fresh viewing into a trained model without retraining (ALS `recalculate_user`).

A model is trained on viewing up to its data end. Serving periodically reads the views
since then (one aggregation query), adds them to the household's training sums (decayed to
the same reference time), and recomputes the household vector and daypart sub-profiles by
least squares against the fixed content factors. Households the model has never seen get a
vector as soon as they watch something: they leave the popular fallback without a retrain.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.dayparts import Dayparts
from recommender.model import ContentModel, UserTable
from recommender.settings import DAY_MS, SignalSettings
from recommender.signal import Viewing, fetch_viewing
from warehouse.base import Warehouse


def history_rows(history: Viewing, household_ids: np.ndarray, scale: np.ndarray) -> tuple[sp.csr_matrix,
                                                                                        sp.csr_matrix]:
    """(raw, zaps) rows of `history` for each household id (zero rows for unknown ones),
    raw rows scaled per household (decay to a later reference time)."""
    d = history.dayparts
    ids = np.asarray(household_ids, dtype=np.uint64)
    n_known = history.households
    pos = np.minimum(np.searchsorted(history.household_ids, ids), max(n_known - 1, 0))
    known = (n_known > 0) & (history.household_ids[pos] == ids) if n_known else np.zeros(len(ids), bool)
    zero_row = n_known  # an all-zero row appended below
    row = np.where(known, pos, zero_row)
    raw_ext = sp.vstack([history.raw, sp.csr_matrix((d, history.raw.shape[1]), dtype=np.float32)]).tocsr()
    zap_ext = sp.vstack([history.zaps, sp.csr_matrix((1, history.zaps.shape[1]), dtype=np.float32)]).tocsr()
    raw_rows = (row[:, None] * d + np.arange(d)[None, :]).ravel()
    raw = raw_ext[raw_rows]
    raw = sp.diags(np.repeat(np.asarray(scale, dtype=np.float32), d)) @ raw
    return raw.tocsr(), zap_ext[row].tocsr()


def decay_factor(from_ms: int | np.ndarray, to_ms: int | np.ndarray, half_life_days: float) -> np.ndarray:
    if half_life_days <= 0:
        return np.ones(np.shape(to_ms))
    return np.power(2.0, -(np.asarray(to_ms, dtype=np.float64) - from_ms) / (half_life_days * DAY_MS))


def fold_in_fresh(model: ContentModel, history: Viewing, store: Warehouse, now_ms: int,
                  signal: SignalSettings, dayparts: Dayparts) -> UserTable | None:
    """Overlay vectors for every household that watched something since the model's data end."""
    since = history.ref_ms
    if now_ms <= since:
        return None
    fresh = fetch_viewing(store, since, now_ms, signal, dayparts, content_ids=model.content_ids)
    if fresh.households == 0:
        return None
    scale = np.full(fresh.households, float(decay_factor(since, now_ms, signal.half_life_days)))
    old_raw, old_zaps = history_rows(history, fresh.household_ids, scale)
    combined = Viewing(fresh.household_ids, model.content_ids, fresh.dayparts,
                       (old_raw + fresh.raw).tocsr(), (old_zaps + fresh.zaps).tocsr(), now_ms)
    return model.fold_in(combined, signal)
