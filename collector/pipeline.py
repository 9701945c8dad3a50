"""MqttSource → decode/validate → batch → Sink → acknowledge.

Two tasks linked by a one-slot queue: the batcher fills a batch while the committer
writes the previous one. When the store is slow the queue stays full, the batcher stops
taking messages, the source's buffer fills and it stops reading the socket; the broker
then holds everything (it never gets our PUBACKs). Acks go out only after the batch that
carried the messages is committed, in receive order.

Failure: a store that is down or refuses every write is retried inside the sink (nothing is
acknowledged meanwhile); only a rejection that blames the rows (WarehouseDataRejected) is
split down to the guilty messages, which become dead letters. Anything else that ends either
task ends `run()` with the error: the worker exits and its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from collector import metrics
from collector.decoder import Arrival, DeadLetter, DecodedBatch, Decoder, dead_letter, empty_event_columns
from collector.settings import BatchSettings
from collector.sink import Sink
from proto.telemetry import InvalidMessage, Reason
from warehouse.errors import WarehouseDataRejected

log = logging.getLogger(__name__)


class MessageLike(Protocol):
    topic: str
    payload: bytes
    mid: int
    dup: bool
    received_ms: int
    session: int


M = TypeVar("M")


class Source(Protocol[M]):
    """Hands out messages and takes back exactly those it handed out (its own message type)."""

    async def get_batch(self, max_messages: int, timeout: float) -> list[M]: ...
    def ack(self, messages: Sequence[M]) -> None: ...


@dataclass
class _OpenBatch:
    opened: float = field(default_factory=time.monotonic)
    accepted: list[Arrival] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    messages: list[MessageLike] = field(default_factory=list)
    rows: int = 0
    payload_bytes: int = 0


@dataclass(frozen=True)
class _SealedBatch:
    decoded: DecodedBatch
    messages: list[MessageLike]  # every message of the batch, valid or not, in receive order


class Pipeline:
    def __init__(self, source: Source[Any], sink: Sink, decoder: Decoder, policy: BatchSettings) -> None:
        self._source = source
        self._sink = sink
        self._decoder = decoder
        self._policy = policy
        # One sealed batch waits while the writers are busy: the batcher stops taking messages
        # beyond that, the source's buffer fills, and the broker holds the rest.
        self._queue: asyncio.Queue[_SealedBatch | None] = asyncio.Queue(maxsize=1)
        self._draining = asyncio.Event()
        self.committed_messages = 0
        self.committed_rows = 0

    def drain(self) -> None:
        """Shutdown: take what is already received, commit it, ack it, then `run` returns."""
        self._draining.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._batch_loop(), name="batcher")
            tasks.create_task(self._commit_loop(), name="committer")

    async def _batch_loop(self) -> None:
        # No `finally`: if the committer failed, the task group cancels this task, and a
        # put() on the full queue would wait for ever for a committer that is gone.
        batch = _OpenBatch()
        while True:
            wait = max(0.0, self._policy.max_age_s - (time.monotonic() - batch.opened)) \
                if batch.messages else self._policy.max_age_s
            room = self._policy.max_messages - len(batch.messages)
            received = await self._source.get_batch(room, 0.0 if self._draining.is_set() else wait)
            if received:
                metrics.MESSAGES_IN.inc(len(received))  # per call, not per message: measured 9 % of the CPU
                redelivered = sum([1 for msg in received if msg.dup])
                if redelivered:
                    metrics.REDELIVERIES.inc(redelivered)
            results, counts = self._decoder.accept_many(received)
            taken = 0
            while taken < len(received):
                taken = self._fill(batch, received, results, counts, taken)
                if self._full(batch):
                    await self._queue.put(self._seal(batch))
                    batch = _OpenBatch()
            aged = batch.messages and time.monotonic() - batch.opened >= self._policy.max_age_s
            ending = self._draining.is_set() and not received
            if aged or ending:
                if batch.messages:
                    await self._queue.put(self._seal(batch))
                batch = _OpenBatch()
                if ending:
                    await self._queue.put(None)  # the committer finishes what is queued, then ends
                    return

    def _full(self, batch: _OpenBatch) -> bool:
        return (batch.rows >= self._policy.max_rows or len(batch.messages) >= self._policy.max_messages
                or batch.payload_bytes >= self._policy.max_bytes)

    def _fill(self, batch: _OpenBatch, received: list[MessageLike], results: list[Arrival | DeadLetter],
              counts: list[int], start: int) -> int:
        """Add `received[start:]` (their arrival checks: `results`, event `counts`) to the batch
        until it is full; returns where it stopped. One loop with everything in locals: with one-event
        messages this is the per-message cost of the whole pipeline."""
        if not batch.messages:
            batch.opened = time.monotonic()  # a batch ages from its first message
        accepted, dead, messages = batch.accepted, batch.dead, batch.messages
        rows, nbytes = batch.rows, batch.payload_bytes
        policy = self._policy
        max_rows, max_messages, max_bytes = policy.max_rows, policy.max_messages, policy.max_bytes
        i, end = start, len(received)
        while i < end:
            msg, result = received[i], results[i]
            messages.append(msg)
            nbytes += len(msg.payload)
            if isinstance(result, DeadLetter):
                dead.append(result)
            else:
                accepted.append(result)
                rows += counts[i]
            i += 1
            if rows >= max_rows or len(messages) >= max_messages or nbytes >= max_bytes:
                break
        batch.rows, batch.payload_bytes = rows, nbytes
        return i

    def _seal(self, batch: _OpenBatch) -> _SealedBatch:
        decoded = self._decoder.decode(batch.accepted)
        decoded.dead_letters[:0] = batch.dead
        return _SealedBatch(decoded, batch.messages)

    async def _commit_loop(self) -> None:
        """Up to `sink.writers` batches are written at once (ClickHouse takes parallel inserts on
        separate connections, and a write is mostly waiting on the server); acks still go out
        strictly in receive order: a batch is acknowledged once it and every batch before it
        are committed."""
        writers = max(1, getattr(self._sink, "writers", 1))
        writing: deque[tuple[_SealedBatch, asyncio.Task[None], float]] = deque()

        async def ack_oldest() -> None:
            sealed, task, started = writing[0]
            await task  # a failure ends the pipeline (the finally cancels the other writes)
            writing.popleft()
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)
            metrics.BATCH_ROWS.observe(sealed.decoded.rows)
            self._source.ack(sealed.messages)
            self.committed_messages += len(sealed.messages)

        ending = False
        try:
            while not ending or writing:
                if writing and (ending or len(writing) >= writers or writing[0][1].done()):
                    await ack_oldest()
                    continue
                if writing:  # the next batch, or the oldest write finishing, whichever is first
                    getter = asyncio.ensure_future(self._queue.get())
                    await asyncio.wait({getter, writing[0][1]}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()  # nothing taken from the queue
                        continue
                    sealed = getter.result()
                else:
                    sealed = await self._queue.get()
                if sealed is None:
                    ending = True
                else:
                    writing.append((sealed, asyncio.create_task(self._commit(sealed.decoded), name="commit"),
                                    time.monotonic()))
        finally:
            for _, task, _ in writing:
                task.cancel()
            await asyncio.gather(*(task for _, task, _ in writing), return_exceptions=True)

    async def _commit(self, decoded: DecodedBatch) -> None:
        """Write one batch; if the store rejects its rows, find the rejected messages by
        halving and dead-letter only those, so one poison message cannot stall a stream."""
        try:
            await self._sink.write(decoded)
        except WarehouseDataRejected as exc:
            sources = decoded.sources
            if not sources:
                raise  # the dead letters themselves were refused: nothing left to split off
            if len(sources) == 1:
                msg = sources[0]
                log.error("store rejected a message", extra={"topic": msg.topic, "error": str(exc)[:300]})
                # The whole payload: it passed our validation, so it may be replayed once
                # the store (or the validator) is fixed.
                letter = dead_letter(msg.topic, msg.payload, msg.received_ms,
                                     InvalidMessage(Reason.STORE_REJECTED, str(exc)[:500]),
                                     len(msg.payload))
                await self._commit(DecodedBatch(empty_event_columns(), [*decoded.dead_letters, letter]))
                return
            half = len(sources) // 2
            await self._commit(self._decoder.decode(sources[:half]))
            rest = self._decoder.decode(sources[half:])
            rest.dead_letters.extend(decoded.dead_letters)
            await self._commit(rest)
            return
        self._count(decoded)

    def _count(self, decoded: DecodedBatch) -> None:
        self.committed_rows += decoded.rows
        metrics.ROWS_WRITTEN.labels(table="events").inc(decoded.rows)
        metrics.EVENTS_IN.inc(decoded.rows)
        if decoded.dead_letters:
            metrics.ROWS_WRITTEN.labels(table="dead_letters").inc(len(decoded.dead_letters))
            for letter in decoded.dead_letters:
                metrics.DEAD_LETTERS.labels(reason=letter.reason).inc()
