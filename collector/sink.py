"""Where committed batches go: a warehouse (ClickHouse server or chdb), or nowhere (`null://`).

Store calls block, so each sink owns one thread: the event loop never waits on the
database, and the store never sees two calls at once (chdb sessions need that).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from collector import metrics
from collector.decoder import DecodedBatch, dead_letter_columns
from stbcommon.backoff import Backoff
from stbcommon.settings import redact_url
from warehouse.base import Warehouse
from warehouse.errors import WarehouseDataRejected, WarehouseError

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def start(self) -> None:
        """Connect and migrate the schema; retries while the store is unreachable."""

    async def write(self, batch: DecodedBatch) -> None:
        """Commit the batch. Raises WarehouseDataRejected when the store refuses these rows
        (other rows may pass); any other failure, an outage or a store-wide rejection (a
        dropped table, a revoked permission), is retried until it succeeds or is cancelled:
        no message may be blamed, so none is acknowledged meanwhile."""

    async def aclose(self) -> None: ...


class NullSink:
    """Receives, validates and acknowledges, writes nothing: the benchmarks' reference."""

    async def start(self) -> None:
        return None

    async def write(self, batch: DecodedBatch) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class _Writer:
    """One store connection and the one thread that uses it (a connection is not shared)."""

    warehouse: Warehouse
    thread: ThreadPoolExecutor


class WarehouseSink:
    """`writers` connections write batches in parallel (a ClickHouse server takes parallel
    inserts, and a write is mostly waiting on the server); the embedded chdb store has one
    session per process, so it gets one. The pipeline acknowledges in receive order anyway."""

    def __init__(self, url: str, *, retry_min_s: float, retry_max_s: float, writers: int = 1,
                 opener: Callable[[str], Warehouse] | None = None) -> None:
        if opener is None:
            from warehouse import open_warehouse

            opener = open_warehouse
        self._url = url
        self._opener: Callable[[str], Warehouse] = opener
        self._retry = (retry_min_s, retry_max_s)
        self._wanted = writers
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="store")  # connect, migrate, the first writer
        self._warehouse: Warehouse | None = None
        self._all: list[_Writer] = []
        self._idle: asyncio.Queue[_Writer] = asyncio.Queue()

    @property
    def writers(self) -> int:
        return max(1, len(self._all))

    async def start(self) -> None:
        def connect() -> None:
            if self._warehouse is None:
                self._warehouse = self._opener(self._url)
            self._warehouse.migrate()

        await self._with_retry(connect, "connect", lambda exc: exc.retryable, self._thread)
        assert self._warehouse is not None
        self._add_writer(self._warehouse, self._thread)
        for i in range(1, self._wanted):
            extra = self._warehouse.another_connection()
            if extra is None:  # chdb: one session per process
                break
            self._add_writer(extra, ThreadPoolExecutor(1, thread_name_prefix=f"store-{i}"))
        log.info("store ready", extra={"store": redact_url(self._url), "writers": self.writers})

    def _add_writer(self, warehouse: Warehouse, thread: ThreadPoolExecutor) -> None:
        writer = _Writer(warehouse, thread)
        self._all.append(writer)
        self._idle.put_nowait(writer)

    async def write(self, batch: DecodedBatch) -> None:
        writer = await self._idle.get()
        try:
            def commit() -> None:
                if batch.rows:
                    writer.warehouse.insert_columns("events", batch.events)
                if batch.dead_letters:
                    writer.warehouse.insert_columns("dead_letters", dead_letter_columns(batch.dead_letters))

            await self._with_retry(commit, "write", lambda exc: not isinstance(exc, WarehouseDataRejected),
                                   writer.thread)
        finally:
            self._idle.put_nowait(writer)

    async def _with_retry(self, call: Callable[[], None], what: str,
                          worth_retrying: Callable[[WarehouseError], bool], thread: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._retry)
        while True:
            try:
                await loop.run_in_executor(thread, call)
                return
            except WarehouseError as exc:
                metrics.STORE_ERRORS.labels(retryable=str(exc.retryable).lower()).inc()
                if not worth_retrying(exc):
                    raise
                delay = backoff.next_delay()
                # A refusal that is not an outage needs an operator (a dropped table, a revoked
                # grant): say so loudly; the broker keeps every unacknowledged message meanwhile.
                log_at = log.warning if exc.retryable else log.error
                log_at(f"store {what} failed, retrying", extra={
                    "error": str(exc)[:300], "retry_in_s": round(delay, 2), "attempt": backoff.attempt,
                    "store_wide_rejection": not exc.retryable})
                await asyncio.sleep(delay)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        writers, self._all = self._all, []
        if not writers and self._warehouse is not None:  # start() did not finish
            writers = [_Writer(self._warehouse, self._thread)]
        self._warehouse = None
        for writer in writers:
            await loop.run_in_executor(writer.thread, writer.warehouse.close)
        # Joined off the loop: the store thread may still be inside a connect attempt
        # (up to the connect timeout) when SIGTERM came during start-up.
        threads = {id(w.thread): w.thread for w in writers}
        threads[id(self._thread)] = self._thread
        for thread in threads.values():
            await loop.run_in_executor(None, functools.partial(thread.shutdown, wait=True))


def open_sink(url: str, *, retry_min_s: float, retry_max_s: float, writers: int = 1) -> Sink:
    if url.startswith("null:"):
        return NullSink()
    return WarehouseSink(url, retry_min_s=retry_min_s, retry_max_s=retry_max_s, writers=writers)
