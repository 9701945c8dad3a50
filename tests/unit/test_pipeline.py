"""Pipeline logic with in-memory fakes of the source and the sink."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from collector.decoder import DecodedBatch, Decoder
from collector.pipeline import Pipeline
from collector.settings import BatchSettings
from collector.sink import WarehouseSink
from proto.telemetry import encode_batch, make_event
from warehouse.errors import WarehouseDataRejected, WarehouseRejected, WarehouseUnavailable

NOW = int(time.time() * 1000)


@dataclass(slots=True)
class FakeMessage:
    topic: str
    payload: bytes
    mid: int
    dup: bool = False
    received_ms: int = NOW
    session: int = 1


class FakeSource:
    def __init__(self, messages: list[FakeMessage]) -> None:
        self.pending = list(messages)
        self.acked: list[int] = []

    async def get_batch(self, max_messages: int, timeout: float) -> list[FakeMessage]:
        if not self.pending:
            await asyncio.sleep(min(timeout, 0.01))
            return []
        taken, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        return taken

    def ack(self, messages: Sequence[FakeMessage]) -> None:
        self.acked.extend(m.mid for m in messages)


class FakeSink:
    def __init__(self, reject_device: str | None = None) -> None:
        self.batches: list[DecodedBatch] = []
        self.reject_device = reject_device
        self.acked_before_commit = False

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def write(self, batch: DecodedBatch) -> None:
        await asyncio.sleep(0)
        if self.reject_device and self.reject_device in set(batch.events["device_id"]):
            raise WarehouseDataRejected("Code: 53. Type mismatch")
        self.batches.append(batch)

    def rows(self) -> int:
        return sum(b.rows for b in self.batches)

    def dead(self) -> list[str]:
        return [d.reason for b in self.batches for d in b.dead_letters]


def message(mid: int, device: str = "d1", n: int = 3, valid: bool = True) -> FakeMessage:
    payload = encode_batch(device_id=device, household_id=1, firmware="1", seq0=mid * 10, sent_ms=NOW,
                           events=[make_event("power", NOW, 1)] * n) if valid else b"\xc1garbage"
    return FakeMessage(f"stb/v1/r/{device}/events", payload, mid)


async def run_until_acked(pipeline: Pipeline, source: FakeSource, count: int) -> None:
    task = asyncio.create_task(pipeline.run())
    for _ in range(500):
        if len(source.acked) >= count:
            break
        await asyncio.sleep(0.01)
    pipeline.drain()
    await asyncio.wait_for(task, 5)


async def test_acks_follow_commit_in_receive_order() -> None:
    source = FakeSource([message(i, valid=i % 7 != 3) for i in range(1, 101)])
    sink = FakeSink()

    original_ack = source.ack

    def checked_ack(messages: Sequence[FakeMessage]) -> None:
        committed = sum(len(b.sources) + len(b.dead_letters) for b in sink.batches)
        assert len(source.acked) + len(messages) <= committed  # never ack ahead of the store
        original_ack(messages)

    source.ack = checked_ack  # type: ignore[method-assign]
    pipeline = Pipeline(source, sink, Decoder(), BatchSettings(max_rows=30, max_messages=8, max_age_s=0.05))
    await run_until_acked(pipeline, source, 100)
    assert source.acked == list(range(1, 101))
    bad = sum(1 for i in range(1, 101) if i % 7 == 3)
    assert sink.rows() == (100 - bad) * 3
    assert sink.dead() == ["not_msgpack"] * bad
    assert max(b.rows for b in sink.batches) <= 30


async def test_age_flushes_a_small_batch() -> None:
    source = FakeSource([message(1)])
    sink = FakeSink()
    pipeline = Pipeline(source, sink, Decoder(), BatchSettings(max_rows=10_000, max_age_s=0.05))
    started = time.monotonic()
    await run_until_acked(pipeline, source, 1)
    assert source.acked == [1] and time.monotonic() - started < 2


async def test_permanent_rejection_isolates_the_poison_message() -> None:
    source = FakeSource([message(i, device="poison" if i == 5 else "ok") for i in range(1, 11)])
    sink = FakeSink(reject_device="poison")
    pipeline = Pipeline(source, sink, Decoder(), BatchSettings(max_rows=1000, max_age_s=0.05))
    await run_until_acked(pipeline, source, 10)
    assert source.acked == list(range(1, 11))
    assert sink.rows() == 9 * 3
    assert sink.dead() == ["store_rejected"]


async def test_drain_commits_everything_buffered() -> None:
    source = FakeSource([message(i) for i in range(1, 51)])
    sink = FakeSink()
    pipeline = Pipeline(source, sink, Decoder(), BatchSettings(max_rows=10_000, max_age_s=30))
    pipeline.drain()  # before anything was batched: still takes and commits what is there
    await asyncio.wait_for(pipeline.run(), 5)
    assert source.acked == list(range(1, 51)) and sink.rows() == 150


@pytest.mark.parametrize("fail_times", [1, 3])
async def test_retryable_errors_are_retried_by_the_sink(fail_times: int) -> None:
    class FlakyWarehouse:
        url, database = "fake://", "stb"

        def __init__(self) -> None:
            self.failures, self.inserted = fail_times, 0

        def migrate(self) -> None: ...

        def close(self) -> None: ...

        def insert_columns(self, table: str, columns: dict) -> None:
            if self.failures:
                self.failures -= 1
                raise WarehouseUnavailable("Connection refused")
            self.inserted += len(next(iter(columns.values())))

    fake = FlakyWarehouse()
    sink = WarehouseSink("fake://", retry_min_s=0.001, retry_max_s=0.01, opener=lambda _url: fake)  # type: ignore[arg-type,return-value]
    await sink.start()
    decoder = Decoder()
    batch = decoder.decode([decoder.accept(message(1).topic, message(1).payload, NOW)])
    await sink.write(batch)
    await sink.aclose()
    assert fake.inserted == 3 and fake.failures == 0


class RefusingWarehouse:
    """A store that refuses every insert for a reason that is not the rows' fault, then recovers."""

    url, database = "fake://", "stb"

    def __init__(self, refusals: int, error: Exception) -> None:
        self.refusals, self.error = refusals, error
        self.tables: dict[str, int] = {"events": 0, "dead_letters": 0}

    def migrate(self) -> None: ...

    def close(self) -> None: ...

    def insert_columns(self, table: str, columns: dict) -> None:
        if self.refusals:
            self.refusals -= 1
            raise self.error
        self.tables[table] += len(next(iter(columns.values())))


@pytest.mark.parametrize("error", [
    WarehouseRejected("ClickHouse error 60: Table stb.events doesn't exist", code=60),
    WarehouseRejected("ClickHouse error 497: Not enough privileges", code=497),
])
async def test_a_store_wide_rejection_holds_the_acks_and_retries_instead_of_dead_lettering(
        error: WarehouseRejected) -> None:
    store = RefusingWarehouse(refusals=25, error=error)  # more refusals than a halving search needs
    sink = WarehouseSink("fake://", retry_min_s=0.001, retry_max_s=0.002, opener=lambda _url: store)  # type: ignore[arg-type,return-value]
    await sink.start()
    source = FakeSource([message(i) for i in range(1, 41)])
    acked_while_refused: list[int] = []
    original_ack = source.ack

    def checked_ack(messages: Sequence[FakeMessage]) -> None:
        if store.refusals:
            acked_while_refused.extend(m.mid for m in messages)
        original_ack(messages)

    source.ack = checked_ack  # type: ignore[method-assign]
    pipeline = Pipeline(source, sink, Decoder(), BatchSettings(max_rows=1000, max_age_s=0.01))
    await run_until_acked(pipeline, source, 40)
    await sink.aclose()
    assert acked_while_refused == []
    assert source.acked == list(range(1, 41))
    assert store.tables == {"events": 40 * 3, "dead_letters": 0}


async def test_a_failed_committer_ends_the_pipeline_instead_of_hanging() -> None:
    queue_full = asyncio.Event()
    writing = False

    class WatchedQueue(asyncio.Queue):  # type: ignore[type-arg]
        def put_nowait(self, item: object) -> None:
            super().put_nowait(item)
            if self.full() and writing:  # the next batch waits while the first is written
                queue_full.set()

    class BrokenSink(FakeSink):
        async def write(self, batch: DecodedBatch) -> None:
            nonlocal writing
            writing = True
            if pipeline._queue.full():  # the next batch was sealed before this write began
                queue_full.set()
            await queue_full.wait()
            raise RuntimeError("the sink broke")

    source = FakeSource([message(i) for i in range(1, 200)])
    pipeline = Pipeline(source, BrokenSink(), Decoder(), BatchSettings(max_messages=1, max_age_s=0.01))
    pipeline._queue = WatchedQueue(maxsize=1)
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(pipeline.run(), 5)
    assert caught.group_contains(RuntimeError, match="the sink broke")


async def test_a_batch_is_bounded_by_payload_bytes() -> None:
    big = [message(i, n=200) for i in range(1, 31)]  # ~1.6 KB each
    size = len(big[0].payload)
    source = FakeSource(big)
    sink = FakeSink()
    pipeline = Pipeline(source, sink, Decoder(),
                        BatchSettings(max_rows=10**6, max_messages=10**4, max_bytes=5 * size, max_age_s=30))
    await run_until_acked(pipeline, source, 30)
    assert source.acked == list(range(1, 31))
    assert [len(b.sources) for b in sink.batches] == [5] * 6


async def test_concurrent_writes_are_acknowledged_in_receive_order() -> None:
    """Two writers: a later batch that commits first waits for the earlier one's ack."""
    class SlowFirstSink(FakeSink):
        writers = 2

        def __init__(self) -> None:
            super().__init__()
            self.order: list[int] = []
            self.first_may_finish = asyncio.Event()

        async def write(self, batch: DecodedBatch) -> None:
            first_mid = int(batch.events["seq"][0]) // 10
            if first_mid == 1:
                await self.first_may_finish.wait()
            else:
                self.first_may_finish.set()  # the second batch commits while the first still runs
            self.order.append(first_mid)
            self.batches.append(batch)

    source = FakeSource([message(i) for i in range(1, 41)])
    sink = SlowFirstSink()
    acks_while_first_open: list[int] = []
    original_ack = source.ack

    def checked_ack(messages: Sequence[FakeMessage]) -> None:
        if 1 not in sink.order:  # the first batch is not committed yet
            acks_while_first_open.extend(m.mid for m in messages)
        original_ack(messages)

    source.ack = checked_ack  # type: ignore[method-assign]
    pipeline = Pipeline(source, sink, Decoder(), BatchSettings(max_messages=5, max_age_s=0.01))
    await run_until_acked(pipeline, source, 40)
    assert sink.order[:2] == [6, 1]  # committed out of order...
    assert acks_while_first_open == [] and source.acked == list(range(1, 41))  # ...acked in order
    assert sink.rows() == 40 * 3
