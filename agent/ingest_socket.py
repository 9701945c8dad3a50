"""Local ingest for firmware that is not Python: one event per datagram.

A datagram is one wire event `[kind, ts_ms, field...]`, either msgpack-encoded or as JSON
text (first byte `[`). UNIX datagram socket and/or UDP on 127.0.0.1. Datagrams keep message
boundaries, need no connection and never block the sender on the agent (a full socket
buffer makes a non-blocking sendto fail with EAGAIN; the firmware decides). Malformed
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
from agent.errors import IngestError
from agent.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, ingest: IngestSocket) -> None:
        self.ingest = ingest

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.ingest.handle(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("ingest socket error", extra={"error": str(exc)})


class IngestSocket:
    """Owns the sockets: `async with IngestSocket(agent, unix_path=..., udp_port=...) as ingest:`."""

    def __init__(self, agent: Agent, *, unix_path: str = "", udp_port: int = 0) -> None:
        self.agent, self.unix_path, self.udp_port = agent, unix_path, udp_port
        self.received = 0          # datagrams that became accepted events
        self.malformed_count = 0   # not JSON/msgpack, not an array, or not a valid wire event
        self.bound_udp_port = 0
        self._transports: list[asyncio.BaseTransport] = []
        self._log = RateLimitedLog(log)

    def handle(self, data: bytes) -> None:
        try:
            event = json.loads(data) if data[:1] == b"[" else msgpack.unpackb(data, raw=False)
        except Exception as exc:  # ExtraData, FormatError, JSON/UTF-8 errors, unhashable keys, deep nesting
            self._malformed(f"not JSON or msgpack: {type(exc).__name__}: {exc}", data)
            return
        if not isinstance(event, list):
            self._malformed(f"a {type(event).__name__}, not an array", data)
            return
        rejected_before = self.agent.stats.rejected
        if self.agent.record(event):
            self.received += 1
        elif self.agent.stats.rejected != rejected_before:  # else refused: counted in agent.stats.refused
            self._malformed("not a valid wire event (see the agent's rejection log)", data)

    def _malformed(self, why: str, data: bytes) -> None:
        self.malformed_count += 1
        self._log.warning("malformed local event dropped", why=why[:200], head=data[:48].hex(),
                          malformed_total=self.malformed_count)

    async def __aenter__(self) -> IngestSocket:
        loop = asyncio.get_running_loop()
        try:
            if self.unix_path:
                path = Path(self.unix_path)
                path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # a stale socket from a previous run (a killed agent leaves it)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # bursts while the loop fsyncs
                sock.bind(str(path))
                os.chmod(path, 0o660)
                transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self), sock=sock)
                self._transports.append(transport)
            if self.udp_port:
                transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self),
                                                                   local_addr=("127.0.0.1", self.udp_port))
                self.bound_udp_port = transport.get_extra_info("sockname")[1]
                self._transports.append(transport)
        except OSError as exc:
            await self.__aexit__()
            raise IngestError(f"cannot open the local socket: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                Path(self.unix_path).unlink()
