"""`AgentThread`: the agent for firmware that is not asyncio — its own loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from agent.core import Agent
from agent.settings import AgentSettings
from proto.telemetry import InvalidMessage, check_event


class AgentThread:
    """`record()` may be called from any thread; it validates at once and hands the event
    to the agent's loop (the spool write happens there, in order)."""

    def __init__(self, settings: AgentSettings) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready: Future[Agent] = Future()
        self._thread = threading.Thread(target=self._main, args=(settings,), name="stb-agent", daemon=True)
        self._thread.start()
        self.agent = self._ready.result(timeout=30)
        self._stop: asyncio.Event | None = None

    def _main(self, settings: AgentSettings) -> None:
        asyncio.set_event_loop(self._loop)

        async def run() -> None:
            self._stop = asyncio.Event()
            async with Agent(settings) as agent:
                self._ready.set_result(agent)
                await self._stop.wait()

        self._loop.run_until_complete(run())

    def record(self, event: list[Any]) -> bool:
        try:
            check_event(event)
        except InvalidMessage:
            self.agent.stats.rejected += 1
            return False
        self._loop.call_soon_threadsafe(self.agent.record, event)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within `timeout`, then stop; the rest stays spooled."""
        asyncio.run_coroutine_threadsafe(self.agent.drain(timeout), self._loop).result(timeout + 5)
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout + 5)
