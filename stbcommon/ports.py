"""Free TCP/UDP ports for local servers, chosen outside the kernel's ephemeral range.

`bind(("127.0.0.1", 0))` hands out a port from the ephemeral range, the same pool every
outgoing connection takes its local port from (Linux even gives connect() the even ports and
bind(0) the odd ones, so the port right after a bind(0) port is exactly where connections go).
A port chosen that way and bound a moment later by a server, or the block P..P+n-1 that
`collector --workers n` serves its metrics on, can be taken by a client's connection in between:
the server then fails to start with EADDRINUSE, now and then (it failed a CI run so). Ports
below the ephemeral range are only ever taken by listeners, which the check here sees.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_LOWEST = 10_000  # below: well-known and registered services
_handed_out: set[int] = set()  # never the same port twice in one process, bound yet or not
_lock = threading.Lock()


def free_port() -> int:
    """One free port (TCP and UDP) outside the ephemeral range."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` consecutive free ports outside the ephemeral range."""
    low, high = _candidate_range()
    with _lock:
        for _ in range(1000):
            first = random.randint(low, high - count + 1)
            block = list(range(first, first + count))
            if not _handed_out.intersection(block) and all(_is_free(p) for p in block):
                _handed_out.update(block)
                return block
    raise OSError(f"no {count} consecutive free ports in {low}-{high}")


def _candidate_range() -> tuple[int, int]:
    """The ports below the ephemeral range (Linux's default: 10000-32767)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    if ephemeral_low - _LOWEST < 1000:  # an unusual kernel setting: take the ports above it instead
        return 61_000, 65_535
    return _LOWEST, ephemeral_low - 1


def _is_free(port: int) -> bool:
    """Nothing listens or is bound there, on any address, in TCP or UDP."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("", port))  # the wildcard address conflicts with a bind on any address
            except OSError:
                return False
    return True
