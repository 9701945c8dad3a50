"""Offline evaluation: time split, session-start ranking, HR@5, HR@10, NDCG@10, coverage.

    report = evaluate(settings, store, truth=None, ablation=False)
    print(report.table()); json.dumps(report.to_json())

Protocol: fit on views before the cut-off (`evaluate.cutoff_ms`, default the latest view
minus `evaluate.test_days`); for each (sampled) test session starting at t, every method
ranks the airings watchable in [t, t + window] (serving's candidate rule: best airing per
content, top 10); a hit is a content the household then watched past the zap threshold in
that window. Sessions whose watched contents were not among the candidates cannot be hit by
any method and are left out (counted as `unreachable`).

Methods: `als` (the model as configured), `als+foldin` (household vectors refreshed with the
test views before t, as serving's fold-in does), and baselines: `popular` (popular-now, what
serving answers for unknown households), `channel_daypart` (channel audience in the airing's
daypart), `last_watched` (the household's last series, then its last channel, then popular),
and `truth` (a TruthScorer, the ceiling) when given. `ablation=True` adds the variants that
decided the design: daypart blend 0..1, zap negatives on/off, linear vs log confidence, and
popularity windows of 1 and 28 days.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from recommender.dayparts import Dayparts
from recommender.engine import best_airings
from recommender.errors import NoTrainingData
from recommender.evalsets import EvalViews, Sessions, last_watched_sql, session_viewing, sessions
from recommender.model import ContentModel, UserTable
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.settings import DAY_MS, RecommenderSettings
from recommender.signal import data_end_ms
from recommender.truth import TruthScorer
from warehouse.base import Warehouse

log = logging.getLogger("recommender.evaluate")
K = 10


@dataclass(frozen=True)
class Ctx:
    """One session's candidates (all arrays aligned with `cand`)."""

    index: int
    household_id: int
    at_ms: int
    cand: np.ndarray
    content: np.ndarray
    channel: np.ndarray
    programme: np.ndarray
    start: np.ndarray
    daypart: np.ndarray


Scorer = Callable[[Ctx], tuple[np.ndarray, np.ndarray | None]]


def als_scorer(model: ContentModel, pop: Popularity, blend: float, overlay: UserTable | None = None) -> Scorer:
    """The model's score (household vector, or a session fold-in when `overlay` is keyed by
    session number); popular-now for households it does not know, as serving does."""

    def score(c: Ctx) -> tuple[np.ndarray, np.ndarray | None]:
        table, row = (overlay, overlay.row(c.index)) if overlay is not None else (model.users, -1)
        if row < 0:
            table, row = model.users, model.users.row(c.household_id)
        fallback = pop.scores(c.content, c.channel, c.daypart)
        if row < 0:
            return fallback, None
        profile = table.profile(row, model.dayparts, blend)
        rows, known = model.item_rows(c.content)
        s = fallback.copy()
        if known.any():
            s[known] = model.score(profile, rows[known], c.daypart[known])
        return s, known
    return score


def popular_scorer(pop: Popularity) -> Scorer:
    return lambda c: (pop.scores(c.content, c.channel, c.daypart), None)


def channel_daypart_scorer(pop: Popularity) -> Scorer:
    return lambda c: (pop.channel_scores(c.channel, c.daypart), None)


def last_watched_scorer(pop: Popularity, before_cut: dict[int, tuple[int, int]], v: EvalViews,
                        ses: Sessions, zap_threshold_s: int) -> Scorer:
    """The household's last series first, then its last channel, then popular-now."""

    def score(c: Ctx) -> tuple[np.ndarray, np.ndarray | None]:
        lo, b = int(ses.household_lo[c.index]), int(ses.first_view[c.index])
        watched = np.flatnonzero(v.duration_s[lo:b] >= zap_threshold_s)
        if len(watched):
            j = lo + int(watched[-1])
            last = (int(v.content_id[j]), int(v.channel_id[j]))
        else:
            last = before_cut.get(c.household_id, (-1, -1))
        base = pop.scores(c.content, c.channel, c.daypart) / 2.0     # < 1
        return base + 2.0 * (c.content == last[0]) + 1.0 * (c.channel == last[1]), None
    return score


def truth_scorer(truth: TruthScorer) -> Scorer:
    def score(c: Ctx) -> tuple[np.ndarray, np.ndarray | None]:
        rows = np.stack([c.programme.astype(np.int64), c.channel.astype(np.int64), c.start], axis=1)
        s = np.asarray(truth.score(c.household_id, c.at_ms, rows), dtype=np.float64)
        return np.where(np.isfinite(s), s, -1e18), None
    return score


@dataclass
class Tally:
    sessions: int = 0
    hr5: float = 0.0
    hr10: float = 0.0
    ndcg10: float = 0.0

    def add(self, top: np.ndarray, relevant: np.ndarray, reachable: int) -> None:
        hit = np.isin(top, relevant)
        self.sessions += 1
        self.hr5 += float(hit[:5].any())
        self.hr10 += float(hit[:K].any())
        gains = 1.0 / np.log2(np.arange(2, K + 2))
        ideal = gains[:min(reachable, K)].sum()
        self.ndcg10 += float(gains[:len(hit)][hit[:K]].sum() / ideal) if ideal else 0.0

    def figures(self) -> dict[str, float]:
        n = max(self.sessions, 1)
        return {"sessions": self.sessions, "hr@5": round(self.hr5 / n, 4), "hr@10": round(self.hr10 / n, 4),
                "ndcg@10": round(self.ndcg10 / n, 4)}


@dataclass
class MethodResult:
    name: str
    overall: Tally = field(default_factory=Tally)
    by_daypart: dict[str, Tally] = field(default_factory=dict)
    by_household: dict[str, Tally] = field(default_factory=lambda: {"known": Tally(), "new": Tally()})
    recommended: set[int] = field(default_factory=set)

    def to_json(self, catalogue: int) -> dict[str, Any]:
        return {"name": self.name, **self.overall.figures(),
                "coverage": round(len(self.recommended) / max(catalogue, 1), 4),
                "by_daypart": {k: t.figures() for k, t in self.by_daypart.items()},
                "by_household": {k: t.figures() for k, t in self.by_household.items()}}


@dataclass
class EvalReport:
    cutoff_ms: int
    test_end_ms: int
    window_minutes: int
    sessions_total: int
    sessions_sampled: int
    unreachable: int
    cold_sessions: int
    catalogue: int
    results: list[MethodResult]

    def to_json(self) -> dict[str, Any]:
        return {"cutoff_ms": self.cutoff_ms, "test_end_ms": self.test_end_ms,
                "window_minutes": self.window_minutes, "sessions_total": self.sessions_total,
                "sessions_sampled": self.sessions_sampled, "unreachable": self.unreachable,
                "cold_sessions": self.cold_sessions, "candidate_contents": self.catalogue,
                "methods": [r.to_json(self.catalogue) for r in self.results]}

    def summary(self) -> dict[str, Any]:
        doc = self.to_json()
        for m in doc["methods"]:
            m.pop("by_daypart")
            m["hr@10_new_households"] = m.pop("by_household")["new"]["hr@10"]
        return doc

    def table(self) -> str:
        doc = self.to_json()
        lines = [f"cut-off {doc['cutoff_ms']}  test to {doc['test_end_ms']}  window {self.window_minutes} min  "
                 f"sessions {self.sessions_sampled} of {self.sessions_total} (unreachable {self.unreachable}, "
                 f"cold {self.cold_sessions})",
                 f"{'method':<28}{'HR@5':>8}{'HR@10':>8}{'NDCG@10':>9}{'cover':>8}{'n':>8}"]
        for m in doc["methods"]:
            lines.append(f"{m['name']:<28}{m['hr@5']:>8.3f}{m['hr@10']:>8.3f}{m['ndcg@10']:>9.3f}"
                         f"{m['coverage']:>8.3f}{m['sessions']:>8}")
        for part in ("by_daypart", "by_household"):
            names = list(doc["methods"][0][part]) if doc["methods"] else []
            lines.append(f"HR@10 {part.replace('_', ' ')} (sessions): " + "  ".join(names))
            for m in doc["methods"]:
                cells = "  ".join(f"{m[part][d]['hr@10']:.3f} ({m[part][d]['sessions']})" for d in names)
                lines.append(f"  {m['name']:<26}{cells}")
        return "\n".join(lines)


def evaluate(settings: RecommenderSettings, store: Warehouse, *, until_ms: int = 0,
             truth: TruthScorer | None = None, ablation: bool = False, show_progress: bool = False) -> EvalReport:
    from recommender.train import fit  # train imports this module lazily; avoid a cycle

    s, e = settings, settings.evaluate
    dayparts = Dayparts.from_settings(s.daypart)
    end = until_ms or data_end_ms(store) + 1
    cut = e.cutoff_ms or end - int(e.test_days * DAY_MS)
    test_end = min(cut + int(e.test_days * DAY_MS), end)
    if test_end <= cut:
        raise NoTrainingData(f"no test period after the cut-off {cut}", window=(cut, test_end))
    window_ms = e.window_minutes * 60_000
    base = fit(s, store, until_ms=cut, with_schedule=False, holdout=e.holdout_households)
    model, pop, history = base.model, base.popularity, base.artifact.history
    schedule = Schedule.fetch(store, cut - DAY_MS, test_end + window_ms)
    views = EvalViews.fetch(store, cut, test_end, dayparts)
    ses = sessions(views, e)
    if not len(ses):
        raise NoTrainingData(f"no test sessions in [{cut}, {test_end})", window=(cut, test_end))
    overlay = model.fold_in(session_viewing(history, views, ses, s.signal), s.signal)
    lw = store.query_columns(last_watched_sql(cut - int(s.signal.history_days * DAY_MS), cut,
                                              s.signal.zap_threshold_s, store.database))
    before_cut = {int(h): (int(c), int(ch)) for h, c, ch in zip(
        np.asarray(lw["household_id"]).tolist(), np.asarray(lw["content_id"]).tolist(),
        np.asarray(lw["channel_id"]).tolist(), strict=True)}
    blend = s.daypart.blend
    methods: dict[str, Scorer] = {
        "als": als_scorer(model, pop, blend),
        "als+foldin": als_scorer(model, pop, blend, overlay),
        "popular": popular_scorer(pop),
        "channel_daypart": channel_daypart_scorer(pop),
        "last_watched": last_watched_scorer(pop, before_cut, views, ses, s.signal.zap_threshold_s),
    }
    if truth is not None:
        methods["truth"] = truth_scorer(truth)
    if ablation:
        methods.update(_ablations(s, store, cut, model, pop))
    return _run(methods, ses, views, schedule, dayparts, s, cut, test_end, model, show_progress)


def _ablations(s: RecommenderSettings, store: Warehouse, cut: int, model: ContentModel,
               pop: Popularity) -> dict[str, Scorer]:
    from recommender.train import fit

    out: dict[str, Scorer] = {}
    for blend in (0.0, 0.25, 0.5, 0.75, 1.0):
        out[f"als blend={blend:g}"] = als_scorer(model, pop, blend)
    flipped = dataclasses.replace(s.signal, zap_negatives=not s.signal.zap_negatives)
    holdout = s.evaluate.holdout_households
    alt = fit(dataclasses.replace(s, signal=flipped), store, until_ms=cut, with_schedule=False, holdout=holdout)
    label = f" w={flipped.zap_negative_weight:g}" if flipped.zap_negatives else ""
    out[f"als zap_negatives={flipped.zap_negatives}{label}"] = als_scorer(alt.model, pop, s.daypart.blend)
    if not s.signal.zap_negatives:
        for w in (1.0, 2.0):
            sig = dataclasses.replace(flipped, zap_negative_weight=w)
            alt = fit(dataclasses.replace(s, signal=sig), store, until_ms=cut, with_schedule=False, holdout=holdout)
            out[f"als zap_negatives w={w:g}"] = als_scorer(alt.model, pop, s.daypart.blend)
    lin = dataclasses.replace(s.signal, log_scale=not s.signal.log_scale)
    alt = fit(dataclasses.replace(s, signal=lin), store, until_ms=cut, with_schedule=False, holdout=holdout)
    out[f"als log_scale={lin.log_scale}"] = als_scorer(alt.model, pop, s.daypart.blend)
    dayparts = Dayparts.from_settings(s.daypart)
    for days in (1.0, 28.0):
        p = Popularity.fetch(store, cut, dataclasses.replace(s.popularity, days=days),
                             s.signal.zap_threshold_s, dayparts)
        out[f"popular days={days:g}"] = popular_scorer(p)
    return out


def _run(methods: dict[str, Scorer], ses: Sessions, views: EvalViews, schedule: Schedule, dayparts: Dayparts,
         s: RecommenderSettings, cut: int, test_end: int, model: ContentModel, show_progress: bool) -> EvalReport:
    e = s.evaluate
    window_ms = e.window_minutes * 60_000
    results = {name: MethodResult(name, by_daypart={d: Tally() for d in dayparts.names}) for name in methods}
    catalogue: set[int] = set()
    unreachable = cold = 0
    for i in tqdm(range(len(ses)), desc="evaluate", unit="session", disable=not show_progress):
        t = int(ses.start_ms[i])
        cand = schedule.window(t, t + window_ms, None, s.serve.min_remaining_s * 1000)
        content = schedule.content_id[cand]
        relevant = ses.relevant(views, i, window_ms, s.signal.zap_threshold_s)
        reachable = int(np.isin(relevant, content).sum())
        if not reachable:
            unreachable += 1
            continue
        hh = int(ses.household_id[i])
        segment = "new" if model.users.row(hh) < 0 else "known"
        cold += segment == "new"
        ctx = Ctx(i, hh, t, cand, content, schedule.channel_id[cand], schedule.programme_id[cand],
                  schedule.start_ms[cand], dayparts.of_ms(np.maximum(schedule.start_ms[cand], t)))
        catalogue.update(np.unique(content).tolist())
        dp_name = dayparts.names[int(dayparts.of_ms(t))]
        for name, scorer in methods.items():
            scores, known = scorer(ctx)
            top = content[best_airings(schedule, cand, scores, known, K)]
            r = results[name]
            r.overall.add(top, relevant, reachable)
            r.by_daypart[dp_name].add(top, relevant, reachable)
            r.by_household[segment].add(top, relevant, reachable)
            r.recommended.update(top.tolist())
    return EvalReport(cut, test_end, e.window_minutes, ses.total, len(ses), unreachable, cold, len(catalogue),
                      list(results.values()))
