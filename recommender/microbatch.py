"""Micro-batching: concurrent Recommend calls answered by one `recommend_batch`.

    batcher = Batcher(state, engine, max_batch=64, max_wait_s=0.005)
    answer = await batcher.recommend(Query(...))

grpc.aio hands calls to their handlers one at a time, each after its own share of the
stack's work on the same event loop (measured: at concurrency 32, flushing on the next loop
turn gave batches of 1.07 calls on average, a fixed 1 ms window 2.3). So a batch is gathered
while the loop is busy: the first call arms a check that runs once per loop turn and keeps
the batch open while calls keep arriving or the turn did other work (it used more than
IDLE_TURN_S of the thread's CPU: the stack is handling other calls; CPU time, so a turn
stretched by preemption on a busy host does not count), and, when the previous batch had
more than one call (calls are concurrent), until QUIET_FRACTION of `max_wait_s` passes
without a new one. It is flushed at the first turn failing these, at `max_batch` calls, or
`max_wait_s` after its first call. A lone call at low load is flushed a turn or two later
(microseconds: its batch of one never switches the quiet wait on); under saturation the wait
costs no throughput (the loop works on other calls meanwhile) and, clients being closed
loops, no latency either (latency = concurrency / throughput).

A batch of one is scored by `recommend_one` (the same answer as in a batch). The batch reads
the snapshot once, so all its calls are answered by one model version. A
call's InvalidArgument is its own; an unexpected error fails every call of the batch (each
one falls back to popular-now in the servicer).
"""

from __future__ import annotations

import asyncio
import logging
import time

from recommender import metrics
from recommender.batch import Query, recommend_batch, recommend_one
from recommender.engine import Answer, Engine, Snapshot
from recommender.errors import InvalidArgument
from recommender.servicer import SnapshotSource

log = logging.getLogger("recommender.microbatch")
QUIET_FRACTION = 0.2  # when calls are concurrent, a batch also waits this share of max_wait for the next
IDLE_TURN_S = 25e-6  # CPU of a loop turn running only this check: 2-5 us; one handling gRPC work, far more


class Batcher:
    def __init__(self, state: SnapshotSource, engine: Engine, max_batch: int = 64,
                 max_wait_s: float = 0.005) -> None:
        self._state = state
        self._engine = engine
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Query, asyncio.Future[Answer]]] = []
        self._timer: asyncio.Handle | None = None
        self._deadline = self._last_arrival = self._last_cpu = 0.0
        self._last_n = 0
        self._dense = False  # the previous batch had company: calls are concurrent now

    async def recommend(self, query: Query) -> Answer:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((query, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            now = time.perf_counter()
            self._deadline, self._last_arrival = now + self.max_wait_s, now
            self._last_cpu, self._last_n = time.thread_time(), 0
            self._timer = loop.call_soon(self._tick)
        return await fut

    def _tick(self) -> None:
        """Once per loop turn while a batch is open: flush it, or look again next turn."""
        now, cpu = time.perf_counter(), time.thread_time()
        n = len(self._pending)
        arriving = n > self._last_n
        if arriving:
            self._last_arrival = now
        busy = cpu - self._last_cpu > IDLE_TURN_S  # CPU, not wall time: preemption is not work
        recent = self._dense and now - self._last_arrival < self.max_wait_s * QUIET_FRACTION
        self._last_n, self._last_cpu = n, cpu
        if now >= self._deadline or not (arriving or busy or recent):
            self._timer = None
            self._flush()
        else:
            self._timer = asyncio.get_running_loop().call_soon(self._tick)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        live = [(q, f) for q, f in batch if not f.done()]  # a cancelled call (client gone) is not scored
        if not live:
            return
        snap: Snapshot = self._state.snapshot
        metrics.BATCH_SIZE.observe(len(live))
        self._dense = len(live) > 1
        try:
            answers = (recommend_batch(self._engine, snap, [q for q, _ in live]) if len(live) > 1
                       else [_alone(self._engine, snap, live[0][0])])
        except Exception as exc:
            log.exception("batch scoring failed", extra={"calls": len(live), "model_version": snap.version})
            for _, fut in live:
                fut.set_exception(exc)
            return
        for (_, fut), answer in zip(live, answers, strict=True):
            if isinstance(answer, Exception):
                fut.set_exception(answer)
            else:
                fut.set_result(answer)


def _alone(engine: Engine, snap: Snapshot, q: Query) -> Answer | Exception:
    try:
        return recommend_one(engine, snap, q)
    except InvalidArgument as exc:
        return exc
