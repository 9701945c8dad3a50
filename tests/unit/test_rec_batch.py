"""Micro-batching: a batch answers exactly what each call alone would, whatever it is batched with."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import serve_model
from recommender import artifact
from recommender.batch import Query, recommend_batch
from recommender.dayparts import Dayparts
from recommender.engine import COLD_START, Answer, Engine, Snapshot
from recommender.errors import InvalidArgument
from recommender.microbatch import Batcher
from recommender.model import UserTable
from recommender.settings import DAY_MS, DaypartSettings, ServeSettings
from tests.unit.test_rec_engine import prime_time, snapshot_of
from tests.unit.test_rec_planted import planted_world

ENGINE = Engine(ServeSettings(), Dayparts.from_settings(DaypartSettings()))
GUIDE = serve_model.Guide(start_ms=1_800_000_000_000 // DAY_MS * DAY_MS, days=3, channels=40)
NOW = GUIDE.start_ms
HOUSEHOLDS = 3000


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """A served-shape model (Zipf line-ups, new contents, watched programmes) plus a fold-in
    overlay holding a known household (takes precedence) and a new one."""
    folder: Path = tmp_path_factory.mktemp("batch") / "models"
    serve_model.publish(folder, serve_model.users(np.random.default_rng(2), HOUSEHOLDS), 400, GUIDE, seed=4)
    snap = Snapshot.from_artifact(artifact.load(folder))
    rng = np.random.default_rng(8)
    overlay = UserTable(np.asarray([5, HOUSEHOLDS + 77], np.uint64), rng.standard_normal((2, 64)).astype(np.float32),
                        np.asarray([0 * 6 + 4, 1 * 6 + 1], np.int64), rng.standard_normal((2, 64)).astype(np.float32))
    return snap.with_overlay(overlay)


def queries(n: int, seed: int) -> list[Query]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        hh = int(rng.integers(1, HOUSEHOLDS + 200))  # ~6 % cold households
        at = GUIDE.start_ms + int(rng.integers(0, 2 * DAY_MS))
        channels = np.sort(rng.choice(GUIDE.channels, int(rng.integers(1, 12)), replace=False) + 1).tolist() \
            if rng.random() < 0.3 else []
        out.append(Query(hh, int(rng.choice([0, 1, 3, 10, 100])), at, int(rng.choice([0, 15, 60, 180, 1440])),
                         channels, bool(rng.random() < 0.3)))
    out.append(Query(5, 10, GUIDE.start_ms + DAY_MS))               # overlay before the model
    out.append(Query(HOUSEHOLDS + 77, 10, GUIDE.start_ms + DAY_MS))  # known only to the overlay
    return out


def alone(snap: Snapshot, q: Query, now: int) -> Answer:
    return ENGINE.recommend(snap, q.household_id, q.k, q.at_ms, q.window_minutes, q.channel_ids,
                            q.exclude_watched, now_ms=now)


def same(a: Answer, b: Answer, exact: bool) -> bool:
    ka = [(i.programme_id, i.content_id, i.channel_id, i.start_ms, i.stop_ms, i.reason) for i in a.items]
    kb = [(i.programme_id, i.content_id, i.channel_id, i.start_ms, i.stop_ms, i.reason) for i in b.items]
    sa, sb = [i.score for i in a.items], [i.score for i in b.items]
    return ka == kb and a.model_version == b.model_version and \
        (sa == sb if exact else bool(np.allclose(sa, sb, rtol=1e-5, atol=1e-6)))


def test_batches_answer_as_the_engine_does_one_call_at_a_time(synthetic: Snapshot) -> None:
    qs = queries(600, seed=1)
    answers = [a for i in range(0, len(qs), 64) for a in recommend_batch(ENGINE, synthetic, qs[i:i + 64], NOW)]
    kinds = {"watched_before": 0, "cold": 0, "popular_fill": 0}
    for q, got in zip(qs, answers, strict=True):
        assert isinstance(got, Answer)
        assert same(got, alone(synthetic, q, NOW), exact=False), q  # scores: a row dot vs a matrix product
        assert len(got.request_id) == 32 and int(got.request_id, 16) >= 0
        reasons = [i.reason for i in got.items]
        kinds["watched_before"] += "personal:watched_before" in reasons
        kinds["cold"] += COLD_START in reasons
        kinds["popular_fill"] += "popular" in reasons
    assert all(v > 0 for v in kinds.values()), kinds  # every branch was exercised
    assert len({a.request_id for a in answers if isinstance(a, Answer)}) == len(answers)


def test_an_answer_does_not_depend_on_the_rest_of_its_batch(synthetic: Snapshot) -> None:
    qs = queries(300, seed=2)
    single = [recommend_batch(ENGINE, synthetic, [q], NOW)[0] for q in qs]
    rng = np.random.default_rng(3)
    order = rng.permutation(len(qs))
    shuffled = [qs[i] for i in order]
    sizes = rng.integers(1, 90, 20)
    got: list[Answer | Exception] = []
    for size in sizes.tolist() * 3:
        if len(got) >= len(shuffled):
            break
        got += recommend_batch(ENGINE, synthetic, shuffled[len(got):len(got) + size], NOW)
    for pos, i in enumerate(order.tolist()):
        a, b = got[pos], single[i]
        assert isinstance(a, Answer) and isinstance(b, Answer)
        assert same(a, b, exact=True)   # bit for bit: the same scores, not just the same ranking


def test_planted_world_batch_matches_the_engine() -> None:
    world = planted_world(households=48, days=10, seed=11)
    snap = snapshot_of(world)
    at = prime_time(world)
    qs = [Query(int(hh), 5, at + 37 * 60_000 * j, 240, [102, 104] if j == 2 else (), j == 1)
          for j in range(3) for hh in world.households[:16].tolist()]
    for q, got in zip(qs, recommend_batch(ENGINE, snap, qs, NOW), strict=True):
        assert isinstance(got, Answer) and same(got, alone(snap, q, NOW), exact=False)


def test_an_invalid_call_fails_alone(synthetic: Snapshot) -> None:
    good = Query(7, 5, GUIDE.start_ms + DAY_MS, 60)
    out = recommend_batch(ENGINE, synthetic, [good, Query(0), Query(7, k=5000), Query(7, at_ms=1_700_000_000), good],
                          NOW)
    assert isinstance(out[0], Answer) and isinstance(out[4], Answer) and len(out[0].items) == 5
    assert [e.field for e in out[1:4] if isinstance(e, InvalidArgument)] == ["household_id", "k", "at_unix_ms"]


def alone_spy(sizes: list[int], snap: Snapshot, q: Query) -> Answer:
    sizes.append(1)
    return alone(snap, q, NOW)


class _State:
    def __init__(self, snap: Snapshot) -> None:
        self.snapshot = snap


async def test_concurrent_calls_are_scored_together(synthetic: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender.microbatch as mb

    sizes: list[int] = []
    real = mb.recommend_batch

    def spy(engine: Engine, snap: Snapshot, qs: list[Query], now_ms: int | None = None) -> list[Answer | Exception]:
        sizes.append(len(qs))
        return real(engine, snap, qs, NOW)

    monkeypatch.setattr(mb, "recommend_batch", spy)
    monkeypatch.setattr(mb, "_alone", lambda engine, snap, q: alone_spy(sizes, snap, q))
    batcher = Batcher(_State(synthetic), ENGINE, max_batch=16)
    qs = queries(38, seed=5)  # 40 calls
    answers = await asyncio.gather(*(batcher.recommend(q) for q in qs), return_exceptions=True)
    assert sizes == [16, 16, 8]                      # gathered, bounded by max_batch
    for q, a in zip(qs, answers, strict=True):
        assert isinstance(a, Answer) and same(a, alone(synthetic, q, NOW), exact=False)
    one = await Batcher(_State(synthetic), ENGINE).recommend(qs[0])  # alone: Engine.recommend, no wait
    assert sizes[-1] == 1 and same(one, answers[0], exact=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await batcher.recommend(Query(0))


async def test_calls_are_gathered_while_the_loop_is_busy_and_a_lone_call_does_not_wait(
        synthetic: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender.microbatch as mb

    sizes: list[int] = []
    real = mb.recommend_batch

    def spy(engine: Engine, snap: Snapshot, qs: list[Query], now_ms: int | None = None) -> list[Answer | Exception]:
        sizes.append(len(qs))
        return real(engine, snap, qs, NOW)

    monkeypatch.setattr(mb, "recommend_batch", spy)
    monkeypatch.setattr(mb, "_alone", lambda engine, snap, q: alone_spy(sizes, snap, q))
    batcher = Batcher(_State(synthetic), ENGINE, max_batch=64, max_wait_s=30.0)
    qs = queries(3, seed=6)[:3]
    loop = asyncio.get_running_loop()

    def stack_work() -> None:  # what the gRPC stack does between handing calls over
        until = time.perf_counter() + 0.0003
        while time.perf_counter() < until:
            pass

    async def later(q: Query, turns: int) -> Answer:
        for _ in range(turns):  # arrives a few busy loop turns after the first call
            stack_work()
            await asyncio.sleep(0)
        return await batcher.recommend(q)

    got = await asyncio.gather(*(later(q, 3 * i) for i, q in enumerate(qs)))
    assert sizes == [3] and all(isinstance(a, Answer) for a in got)
    started = loop.time()
    fresh = Batcher(_State(synthetic), ENGINE, max_batch=64, max_wait_s=30.0)  # no concurrency seen yet
    lone = await fresh.recommend(qs[0])  # nothing else on the loop: flushed at once, not after 30 s
    assert sizes == [3, 1] and isinstance(lone, Answer) and loop.time() - started < 5
