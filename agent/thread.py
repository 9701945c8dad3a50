"""`AgentThread`: the agent for firmware that is not asyncio — its own loop in a daemon thread.

    agent = AgentThread(settings)        # returns once the spool is open and the loop runs
    agent.power(1)                       # any thread; True = accepted
    agent.record([2, now_ms, 12, 14, 1])
    agent.close(timeout=5)               # publish what 5 s allow; the rest stays spooled

`record()` validates in the caller's thread and hands the event to the agent's loop
(bounded queue, no waiting). The thread is a daemon so a firmware that forgets `close()`
still exits; an atexit hook then moves queued events into the spool first.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agent.core import Agent
from agent.events import EventHelpers
from agent.settings import AgentSettings
from agent.stats import AgentStats


class AgentThread(EventHelpers):
    def __init__(self, settings: AgentSettings, *, clock: Callable[[], int] | None = None,
                 start_timeout_s: float = 30.0) -> None:
        self.agent = Agent(settings, clock=clock)  # opens the spool here: errors surface in the caller
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name=f"stb-agent-{settings.device.id}", daemon=True)
        self._thread.start()
        self._ready.result(timeout=start_timeout_s)
        atexit.register(self._at_exit)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self.agent:
                self._ready.set_result(None)
                await self._stop.wait()

        try:
            self._loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced to the constructor if start-up failed
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise
        finally:
            self._loop.close()

    # -- firmware-facing API ----------------------------------------------------------------

    def record(self, event: list[Any]) -> bool:
        """Thread-safe, non-blocking; see `Agent.record`."""
        return self.agent.record(event)

    def now_ms(self) -> int:
        return self.agent.now_ms()

    @property
    def stats(self) -> AgentStats:
        return self.agent.stats

    def close(self, timeout: float = 10.0) -> bool:
        """Spool what is queued, publish what `timeout` allows, stop the thread.

        True when everything was delivered; the rest stays spooled for the next start."""
        atexit.unregister(self._at_exit)
        if not self._thread.is_alive():
            return self.agent.spool_empty

        async def finish() -> bool:
            await self.agent.aclose(grace_s=timeout)
            assert self._stop is not None
            self._stop.set()
            return self.agent.spool_empty

        delivered = asyncio.run_coroutine_threadsafe(finish(), self._loop).result(timeout + 10)
        self._thread.join(10)
        return delivered

    def __enter__(self) -> AgentThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _at_exit(self) -> None:
        """Interpreter exit without close(): spool the queued events, do not wait for the network."""
        if self._thread.is_alive():
            self.close(timeout=0)
