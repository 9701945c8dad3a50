"""Login rate limiting: after `max_failures` failed logins for a user name, or from a client address,
within `window_s`, further attempts for that name or from that address are refused until fewer than
`max_failures` of its failures are younger than `window_s` (a sliding window).

    limiter = LoginLimiter()                       # 5 failures in 5 minutes
    wait = limiter.begin(keys, now)                # > 0: refuse, try again in `wait` seconds
    ... check the password ...
    limiter.take_back(keys, now); limiter.forget(name_key)    # on success; else it stays a failure

An attempt counts as a failure from the moment it begins (before the password is checked, which
takes a thread and some time): parallel attempts cannot slip past the limit while the first ones
are still being checked. A success takes its own attempt back and clears the name's failures.

In memory, per console process: a restart forgets, and several console processes count apart.
Keys are bounded (`max_keys`, the oldest dropped first) so a flood of made-up names cannot grow
the process without end.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window_s: float = 300.0, max_keys: int = 10_000) -> None:
        self.max_failures, self.window_s, self.max_keys = max_failures, window_s, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, keys: Iterable[str], now: float) -> float:
        """Seconds until an attempt for these keys is allowed again; 0.0 when it is now."""
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[-self.max_failures] + self.window_s - now)
        return wait

    def begin(self, keys: Iterable[str], now: float) -> float:
        """Start an attempt: the seconds to wait (refused, nothing counted), or 0.0 and the attempt
        counted as a failure until `succeeded` takes it back."""
        keys = list(keys)
        wait = self.retry_after(keys, now)
        if wait > 0:
            return wait
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        return 0.0

    def take_back(self, keys: Iterable[str], began: float) -> None:
        """The attempt begun at `began` was no failure (it logged in)."""
        for key in keys:
            times = self._failures.get(key)
            if times is not None and began in times:
                times.remove(began)
                if not times:
                    del self._failures[key]

    def forget(self, key: str) -> None:
        """Drop a key's failures (a name that has just logged in)."""
        self._failures.pop(key, None)


def login_keys(name: str, address: str) -> tuple[str, str]:
    """The limiter's keys of an attempt: the name as typed (bounded) and the client's address."""
    return f"name:{name[:64]}", f"addr:{address}"
