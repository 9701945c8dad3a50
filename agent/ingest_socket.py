"""Local ingest for firmware that is not Python: one event per datagram.

A datagram is one wire event `[kind, ts_ms, field...]`, either msgpack-encoded or as JSON
text (first byte `[`). UNIX datagram socket (default) and/or UDP on 127.0.0.1. Malformed
input is counted and dropped with a rate-limited log line; it never stops the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import msgpack

from agent.core import Agent

log = logging.getLogger(__name__)
MAX_DATAGRAM = 8192


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, agent: Agent, ingest: IngestSocket) -> None:
        self.agent, self.ingest = agent, ingest

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            event = json.loads(data) if data[:1] == b"[" else msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException, msgpack.ExtraData) as exc:
            self.ingest.malformed(f"not JSON or msgpack: {exc}"[:200])
            return
        if not isinstance(event, list) or not self.agent.record(event):
            self.ingest.malformed("not a valid wire event")
        else:
            self.ingest.received += 1


class IngestSocket:
    """Owns the sockets; `async with IngestSocket(agent, unix_path=..., udp_port=...)`."""

    def __init__(self, agent: Agent, *, unix_path: str = "", udp_port: int = 0) -> None:
        self.agent, self.unix_path, self.udp_port = agent, unix_path, udp_port
        self.received = 0
        self.malformed_count = 0
        self._transports: list[asyncio.BaseTransport] = []
        self.bound_udp_port = 0

    def malformed(self, why: str) -> None:
        self.malformed_count += 1
        n = self.malformed_count
        if n <= 10 or n % 1000 == 0:
            log.warning("malformed local event dropped", extra={"why": why, "malformed_total": n})

    async def __aenter__(self) -> IngestSocket:
        loop = asyncio.get_running_loop()
        if self.unix_path:
            path = Path(self.unix_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale socket from a previous run
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
            os.chmod(path, 0o660)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self.agent, self), sock=sock)
            self._transports.append(transport)
        if self.udp_port:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self.agent, self),
                                                               local_addr=("127.0.0.1", self.udp_port))
            self.bound_udp_port = transport.get_extra_info("sockname")[1]
            self._transports.append(transport)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in self._transports:
            transport.close()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                Path(self.unix_path).unlink()
