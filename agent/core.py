"""The agent: accept events, spool them, publish them as wire-format v1 batches.

    async with Agent(settings) as agent:
        agent.record(make_event("power", now_ms, 1))     # non-blocking; False if not accepted
        agent.view(101, 90210, 1500)                      # helpers build the wire arrays
        await agent.drain(timeout=30)                     # optional: wait until delivered

Asyncio-native so that one process can run thousands of agents on one loop (the fleet
simulator does): an agent is a spool, a few counters, one timer and one connection task
with its helpers; no thread, no buffer beyond a batch being read for publishing.

`record()` may be called from any thread. On the agent's loop it validates the event and
appends it to the spool at once (one write(); a killed process loses nothing accepted).
From another thread it validates and hands the event to the loop through a bounded queue,
never waiting for the loop or the disk.

Life of an event: appended to the spool → sealed into a batch (count, bytes or age; under
the "batch" fsync policy the spool is fsynced now, in a worker thread so a slow disk never
stalls the loop) → published with its batch once synced → removed from the spool when
the broker's PUBACK for that batch and all before it has arrived.

Accepted means kept: `record()` returns True only for an event that is in the spool, or
in the cross-thread queue that `aclose()` empties into the spool while it shuts the queue
(under one lock, so no event can slip in after the last take). Disk errors are counted
(`stats.io_errors`), logged rate-limited and never raised: an event that could not be
written is refused (False), a failed fsync is retried and holds back only publishing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.batcher import Batcher
from agent.downlink import Inbox
from agent.errors import RecordTooLarge, SpoolError
from agent.events import EventHelpers
from agent.publisher import Publisher
from agent.ratelimit import RateLimitedLog
from agent.records import SyncJob
from agent.settings import AgentSettings
from agent.spool import Position, Spool
from agent.stats import AgentStats
from proto.telemetry import InvalidMessage, check_event

log = logging.getLogger(__name__)
HANDOFF_LIMIT = 10_000  # events queued from other threads while the loop is busy; beyond: refused
SYNC_RETRY_S = 1.0      # a failed fsync is tried again after this long (and at every seal)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Agent(EventHelpers):
    """One STB's agent. Use as `async with Agent(settings) as agent:` on a running loop.

    `clock` returns unix ms: it stamps `sent` at publish time and the helpers' default
    `ts_ms`. The spool is opened (and recovered) in the constructor, so events may be
    recorded before the loop starts; they are published once the agent is entered."""

    def __init__(self, settings: AgentSettings, *, clock: Callable[[], int] | None = None) -> None:
        self.settings = settings
        self.stats = AgentStats()
        self._clock = clock or wall_clock_ms
        self._io_log = RateLimitedLog(log, 60.0)
        s = settings.spool
        self._spool = Spool(s.dir, max_bytes=s.max_bytes, fsync=s.fsync, on_io_error=self._io_error)
        self._batcher = Batcher(settings.batch)
        # Messages for the box: kept beside the spool (same durable folder, another file).
        self.inbox = (Inbox(s.dir, clock_ms=self._clock, keep=settings.messages.keep)
                      if settings.messages.enabled else None)
        self._publisher = Publisher(settings, self._spool, self.stats, clock_ms=self._clock,
                                    on_delivered=self._delivered,
                                    on_downlink=self.inbox.receive if self.inbox is not None else None)
        self._publisher.release(self._spool.synced)  # a backlog from the last run goes out at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._commit_handle: asyncio.Handle | None = None     # a commit scheduled right after record()
        self._retry_handle: asyncio.TimerHandle | None = None  # a commit after a failed fsync
        self._syncing: asyncio.Future[None] | None = None    # the fsync running in a worker thread
        self._sync_again = False                             # sealed while it ran: sync once more
        self._drained: list[asyncio.Future[None]] = []
        self._handoff: deque[list[Any]] = deque()
        self._handoff_lock = threading.Lock()
        self._reject_log = RateLimitedLog(log)
        self._drop_log = RateLimitedLog(log, 60.0)
        self._dropped_seen = self._spool.dropped_events
        self._closed = False
        if self._spool.recovered_torn_bytes:
            log.warning("spool recovered: torn tail cut off", extra={
                "device_id": settings.device.id, "bytes": self._spool.recovered_torn_bytes})

    # -- firmware-facing API ----------------------------------------------------------------

    def record(self, event: list[Any]) -> bool:
        """Accept one event `[kind, ts_ms, field...]`; never blocks on the network, never raises.

        True: accepted (spooled, or queued to the agent's loop from another thread).
        False: rejected (breaks the wire contract; counted in stats.rejected and logged,
        rate-limited) or refused (agent closed or cross-thread queue full; stats.refused)."""
        try:
            check_event(event)
        except InvalidMessage as exc:
            return self._reject(exc.reason.value, exc.detail)
        if self._loop_thread is None or threading.get_ident() == self._loop_thread:
            return self._accept(event)
        return self._hand_off(event)

    def now_ms(self) -> int:
        return self._clock()

    def on_message(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback(message)` on the agent's loop for each message for the box (the map as
        published), once per message id, never after it expires; messages that came while no
        callback or UI client listened are handed over first. Do not block in it."""
        if self.inbox is None:
            raise RuntimeError("messages are disabled ([messages] enabled = false)")
        self.inbox.add_listener(lambda message: callback(message.doc))

    @property
    def spool(self) -> Spool:
        return self._spool

    @property
    def spool_empty(self) -> bool:
        """Nothing spooled is waiting for a PUBACK (events queued from other threads aside)."""
        return self._spool.empty

    @property
    def sealed(self) -> Position:
        """Spooled records before this position are sealed (and synced): the publisher may send them."""
        return self._publisher.released

    @property
    def connected(self) -> bool:
        return self._publisher.connected

    async def commit(self) -> bool:
        """Seal the open batch and wait until everything accepted so far is synced (publishable).
        False if the fsync failed (counted; retried later, the events stay spooled)."""
        self._take_handoff()
        self._seal(commit=False)
        return await self._sync_now()

    async def drain(self, timeout: float | None = None) -> bool:
        """Seal and publish everything now; wait until the spool is empty. False on timeout."""
        self._take_handoff()
        self._seal()
        if self._spool.empty:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._drained.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        finally:
            if waiter in self._drained:
                self._drained.remove(waiter)
        return True

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed = False
        self._publisher.start()
        if self._batcher.events:
            self._seal()  # recorded before the loop ran
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, grace_s: float | None = None) -> None:
        """Stop accepting, seal and sync the spool, publish what `grace_s` allows (default
        settings.shutdown_grace_s; only if connected), then disconnect. What is left stays
        spooled for the next start."""
        if self._closed:
            return
        self._take_handoff()
        self._shut_handoff()
        self._seal(commit=False)
        await self._sync_now()
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        if grace > 0 and not self._spool.empty:
            await self.drain(grace)
        await self._publisher.aclose()
        for handle in (self._timer, self._commit_handle, self._retry_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._commit_handle = self._retry_handle = None
        if self._syncing is not None:  # started by drain(): let it finish before the spool closes
            await asyncio.wait([self._syncing])
        self._spool.close()
        self._loop_thread = None

    # -- internals: accepting ---------------------------------------------------------------

    def _reject(self, reason: str, detail: str) -> bool:
        self.stats.rejected += 1
        self._reject_log.warning("event rejected", device_id=self.settings.device.id, reason=reason,
                                 detail=detail[:200], rejected_total=self.stats.rejected)
        return False

    def _accept(self, event: list[Any], *, handed_off: bool = False) -> bool:
        if self._closed and not handed_off:
            self.stats.refused += 1
            return False
        try:
            _seq, size = self._spool.append(event)
        except RecordTooLarge as exc:
            return self._reject("oversize", str(exc))
        except (TypeError, ValueError, OverflowError) as exc:  # extra trailing fields msgpack cannot encode
            return self._reject("unencodable", f"{type(exc).__name__}: {exc}")
        except SpoolError:  # disk full or gone: not accepted, and said so (counted and logged in _io_error)
            self.stats.refused += 1
            return False
        self.stats.accepted += 1
        if self._spool.dropped_events != self._dropped_seen:
            self._dropped_seen = self._spool.dropped_events
            self._drop_log.warning("spool full: oldest events dropped", device_id=self.settings.device.id,
                                   dropped_total=self._dropped_seen, max_bytes=self._spool.max_bytes)
        loop = self._loop
        if self._batcher.add(size, loop.time() if loop else 0.0):
            self._seal()
        elif self._batcher.events == 1 and loop is not None and self._loop_thread is not None:
            deadline = self._batcher.deadline
            assert deadline is not None
            self._timer = loop.call_at(deadline, self._seal)
        return True

    def _hand_off(self, event: list[Any]) -> bool:
        with self._handoff_lock:
            if self._closed or self._loop is None or len(self._handoff) >= HANDOFF_LIMIT:
                self.stats.refused += 1
                return False
            self._handoff.append(event)
            if len(self._handoff) == 1:
                try:
                    self._loop.call_soon_threadsafe(self._take_handoff)
                except RuntimeError:  # the loop is closed: the agent is gone
                    self._handoff.pop()
                    self.stats.refused += 1
                    return False
        return True

    def _take_handoff(self) -> None:
        with self._handoff_lock:
            events = list(self._handoff)
            self._handoff.clear()
        for event in events:
            self._accept(event)

    def _shut_handoff(self) -> None:
        """Stop accepting and spool what other threads handed off, atomically: a record() that
        got past the closed check under the lock has queued its event before this takes it."""
        with self._handoff_lock:
            self._closed = True
            events = list(self._handoff)
            self._handoff.clear()
        for event in events:
            self._accept(event, handed_off=True)

    def _io_error(self, what: str, exc: OSError) -> None:
        self.stats.io_errors += 1
        self._io_log.warning("spool I/O error", device_id=self.settings.device.id, operation=what,
                             error=f"{type(exc).__name__}: {exc}"[:300], io_errors_total=self.stats.io_errors)

    # -- internals: sealing and delivery -----------------------------------------------------

    def _seal(self, *, commit: bool = True) -> None:
        """Close the open batch; its events become publishable once synced (`_commit`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._batcher.reset()
        if not commit:
            return
        if self._loop is None or self._loop_thread is None:
            self._commit()
        elif self._commit_handle is None:
            # Not inside record(): the sync starts right after the caller returns.
            self._commit_handle = self._loop.call_soon(self._commit)

    def _commit(self) -> None:
        """Sync what was appended and release it for publishing. With a loop the fsync runs in
        a worker thread (on dup'd fds; the loop goes on appending meanwhile) and the release
        waits for it; a failure is counted and retried, never raised into the loop."""
        self._commit_handle = None
        if self._syncing is not None:
            self._sync_again = True
            return
        job = self._spool.start_sync()
        loop = self._loop
        if job is None:
            self._publisher.release(self._spool.synced)
        elif loop is None or self._loop_thread is None:  # no loop (not entered yet, or closed): here
            try:
                job.run()
            except OSError as exc:
                self._spool.finish_sync(job, exc)
                return
            self._spool.finish_sync(job, None)
            self._publisher.release(self._spool.synced)
        else:
            self._syncing = loop.run_in_executor(None, job.run)
            self._syncing.add_done_callback(functools.partial(self._synced, job))

    def _synced(self, job: SyncJob[Position], done: asyncio.Future[None]) -> None:
        self._syncing = None
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        self._spool.finish_sync(job, error)
        self._publisher.release(self._spool.synced)
        if error is not None:
            if self._retry_handle is None and self._loop is not None and not self._closed:
                self._retry_handle = self._loop.call_later(SYNC_RETRY_S, self._retry_commit)
        elif self._sync_again:
            self._sync_again = False
            self._commit()

    def _retry_commit(self) -> None:
        self._retry_handle = None
        self._commit()

    async def _sync_now(self) -> bool:
        """Sync everything appended so far and release it; False if the fsync failed."""
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        while self._syncing is not None:
            await asyncio.wait([self._syncing])
        upto = self._spool.tail
        self._sync_again = False
        self._commit()
        while self._syncing is not None:
            await asyncio.wait([self._syncing])
        return self._spool.synced >= upto

    def _delivered(self) -> None:
        if self._spool.empty:
            for waiter in self._drained:
                if not waiter.done():
                    waiter.set_result(None)
            self._drained.clear()
