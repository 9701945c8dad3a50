"""Score and rank the batch's candidates: the native kernel (`recommender/_scorerank.c`), or numpy.

    score, known, picked = score_rank(snap, cand, seg, bounds, dps, prof, personal, ks)

Both give every request the positions in its slice of `cand` that `best_airings` gives it (the
best airing of each content, top k: known contents of a personal request by model score, then
the rest by popularity; ties to the earlier airing, then the lower position) and the scores of
those positions (model scores equal to ~1e-7 relative: the kernel sums in double, numpy in float32).
The numpy path costs ~50 small numpy calls a batch (dispatch-bound: 0.08 ms a call at batch 32);
the kernel does the dot products and the ranking in one pass per request. Popularity (unknown
contents, cold households) stays numpy in both; the kernel asks for it only where it can change
an answer (`native_rank`: not for a personal request whose known contents already give k), so
its `score` is NaN at the positions it never needed, numpy's is complete.

`AVAILABLE` says whether the extension was built (setup.py marks it optional); without it the
numpy path answers, and the first call logs that once. The extension also holds the other batch
stages (recommender/batchnative.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import numpy as np

from recommender.engine import Snapshot, best_airings
from stbcommon.native import NotBuiltWarning, load_optional

log = logging.getLogger(__name__)

CHUNK = 2048       # candidates scored per step: the gathered rows stay in cache (2048: fastest measured)
TOP_PER_K = 8      # airings kept per answered item before the exact sort

_native, _import_error = load_optional("recommender._scorerank")  # not built: the numpy path does it all
AVAILABLE: Final = _native is not None
_not_built = NotBuiltWarning(log, "recommender._scorerank", _import_error, "the batch stages run with numpy, slower")


def warn_if_missing() -> None:
    """Say once per process that the slower numpy ranking is in use, and why."""
    if not AVAILABLE:
        _not_built()


def score_rank(snap: Snapshot, cand: np.ndarray, seg: np.ndarray, bounds: np.ndarray, dps: np.ndarray,
               prof: np.ndarray, personal: np.ndarray, ks: np.ndarray,
               native: bool = AVAILABLE) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(float64 scores, known mask, per request the positions of its answer in its slice).

    `cand`/`seg`: candidates grouped by request (`bounds`: where each request's slice starts,
    then len(cand)); `dps`: daypart of each; `prof`: (requests * dayparts, f) from `profiles`;
    `personal`: the request's household has a profile; `ks`: answers wanted."""
    if native:
        as_ = np.ascontiguousarray
        score, known, out, counts = native_rank(snap, as_(cand, np.int64), as_(bounds, np.int64), as_(dps, np.int8),
                                                as_(prof, np.float32), as_(personal, np.bool_), as_(ks, np.int64))
        ends = np.cumsum(ks).tolist()
        return score, known, [out[e - k:e - k + n] for e, k, n in zip(ends, ks.tolist(), counts.tolist(), strict=True)]
    warn_if_missing()
    known = snap.airing_known[cand] & personal[seg]
    score = np.empty(len(cand), np.float64)
    rest = np.flatnonzero(~known)
    if len(rest):
        c = cand[rest]
        sched = snap.schedule
        score[rest] = snap.popularity.scores(sched.content_id[c], sched.channel_id[c], dps[rest])
    _model_scores(snap, cand, seg, dps, prof, known, score)
    return score, known, rank(snap, cand, seg, score, known, personal, ks)


@dataclass(frozen=True)
class _RankArrays:
    """A snapshot's arrays as the kernel takes them (contiguous, of its dtypes), made once per
    snapshot instead of checked on every call."""

    snap: object
    airing_known: np.ndarray
    airing_rows: np.ndarray
    item_factors: np.ndarray
    content_id: np.ndarray
    programme_id: np.ndarray
    start_ms: np.ndarray


_last: _RankArrays | None = None  # the snapshot in use (a new one replaces it)


def _arrays(snap: Snapshot) -> _RankArrays:
    global _last
    last = _last
    if last is None or last.snap is not snap:
        sched = snap.schedule
        c = np.ascontiguousarray
        last = _last = _RankArrays(
            snap, c(snap.airing_known, np.bool_), c(snap.airing_rows, np.int64), c(snap.model.item_factors, np.float32),
            c(sched.content_id, np.uint64), c(sched.programme_id, np.uint64), c(sched.start_ms, np.int64))
    return last


def native_rank(snap: Snapshot, cand: np.ndarray, bounds: np.ndarray, dps: np.ndarray, prof: np.ndarray,
                personal: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scores, known mask, out, counts): request r's answer is out[sum(ks[:r])...], counts[r] of it.
    The arrays as `score_rank` takes them, contiguous: cand/bounds/ks int64, dps int8, prof float32,
    personal bool (the kernel refuses other item sizes).

    Stage 1 ranks the known contents of personal requests; popularity is computed only for
    the requests it leaves short of k (and cold ones), which stage 2 completes."""
    a = _arrays(snap)
    n, f = len(cand), a.item_factors.shape[1]
    known, need = np.empty(n, np.bool_), np.empty(len(ks), np.bool_)
    score = np.empty(n)  # stage 1 writes every score: the model's, or NaN until popularity is needed
    out, counts = np.empty(int(ks.sum()), np.int64), np.empty(len(ks), np.int64)
    args = (cand, bounds, dps, a.airing_known, known, need, score, personal, ks, a.airing_rows, a.item_factors, prof,
            a.content_id, a.programme_id, a.start_ms, out, counts, f, snap.model.dayparts)
    if _native.score_rank(*args, 1):  # requests left short of k by their known contents
        rest = np.flatnonzero(np.repeat(need, np.diff(bounds)) & ~known)
        if len(rest):
            c = cand[rest]
            sched = snap.schedule
            score[rest] = snap.popularity.scores(sched.content_id[c], sched.channel_id[c], dps[rest])
            _native.score_rank(*args, 2)
    return score, known, out, counts


def _model_scores(snap: Snapshot, cand: np.ndarray, seg: np.ndarray, dps: np.ndarray, prof: np.ndarray,
                  known: np.ndarray, out: np.ndarray) -> None:
    """Row dot products of content factors and the request's daypart profile, where `known`."""
    model = snap.model
    who = np.flatnonzero(known)
    rows, prow = snap.airing_rows[cand[who]], seg[who] * model.dayparts + dps[who]
    for a in range(0, len(who), CHUNK):
        b = a + CHUNK
        out[who[a:b]] = np.einsum("ij,ij->i", np.take(model.item_factors, rows[a:b], axis=0),
                                  np.take(prof, prow[a:b], axis=0))


def rank(snap: Snapshot, cand: np.ndarray, seg: np.ndarray, score: np.ndarray, known: np.ndarray,
         personal: np.ndarray, ks: np.ndarray) -> list[np.ndarray]:
    """Per request, positions in `cand` of its answer (`best_airings` of its slice), numpy."""
    sched = snap.schedule
    n_req = len(ks)
    bounds = np.searchsorted(seg, np.arange(n_req + 1))
    lens = np.diff(bounds)
    # the first group: known contents of personal requests, everything of cold ones
    first = np.where(personal[seg], known, True)
    neg = -score
    m = TOP_PER_K * ks
    keyed = np.where(first, neg, np.inf)
    thr = np.full(n_req, np.inf)
    # each long request's m-th best first-group score: a partition of its own slice (measured at
    # batch 32: 5 us a request, a quarter of one padded-matrix partition over the whole batch)
    for i in np.flatnonzero(lens > m).tolist():
        mm = int(m[i]) - 1
        thr[i] = np.partition(keyed[bounds[i]:bounds[i + 1]], mm)[mm]
    kept = np.flatnonzero(first & (neg <= thr[seg]))
    content = sched.content_id[cand]
    key = np.where(content != 0, content, sched.programme_id[cand])
    order = kept[np.lexsort((sched.start_ms[cand[kept]], neg[kept], seg[kept]))]
    # first airing of each (request, content) along that order, then the first k of each request
    s_seg, s_key = seg[order], key[order]
    by_key = np.lexsort((s_key, s_seg))  # stable: earlier in `order` first within equal keys
    firsts = np.ones(len(order), bool)
    firsts[1:] = (s_seg[by_key][1:] != s_seg[by_key][:-1]) | (s_key[by_key][1:] != s_key[by_key][:-1])
    keep = np.zeros(len(order), bool)
    keep[by_key[firsts]] = True
    best = order[keep]
    b_seg = seg[best]
    b_bounds = np.searchsorted(b_seg, np.arange(n_req + 1))
    out: list[np.ndarray] = []
    for i in range(n_req):
        a, b = b_bounds[i], b_bounds[i + 1]
        k = int(ks[i])
        if b - a >= k:
            out.append(best[a:a + k] - bounds[i])
        else:  # fewer than k contents among the kept airings: the whole window, exactly
            s = slice(bounds[i], bounds[i + 1])
            out.append(best_airings(sched, cand[s], score[s], known[s] if personal[i] else None, k))
    return out
