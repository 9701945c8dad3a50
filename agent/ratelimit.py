"""Rate-limited log lines: a firmware bug that sends garbage 100 times a second must not fill
the box's flash with logs, yet the first occurrence and a running count must be visible."""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    """At most one line per `interval_s`; each line says how many were suppressed since the last."""

    __slots__ = ("_interval", "_last", "_logger", "_suppressed")

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last = -interval_s - 1.0
        self._suppressed = 0

    def warning(self, msg: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        self._last = now
        self._logger.warning(msg, extra={**fields, "suppressed": self._suppressed})
        self._suppressed = 0
