"""The UI's side of the downlink: a UNIX stream socket; every connected client receives each
message as one line of JSON, the map as published (../shared/CONTRACTS.md).

Writes never block the agent: each client has a bounded output buffer, and a client that
stops reading past it is disconnected (it reconnects and gets what arrives from then on;
what it missed was already delivered, by the at-most-once rule). The firmware reports what
it displayed and the viewer's answer as events of kinds 8 and 9 on the events socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path

from agent.downlink import Downlink, Inbox
from agent.errors import IngestError

log = logging.getLogger(__name__)
MAX_CLIENT_BACKLOG = 1 << 20  # bytes queued for one client before it is dropped


class MessagesSocket:
    """`async with MessagesSocket(inbox, path):` serves UI clients until the block ends."""

    def __init__(self, inbox: Inbox, path: str) -> None:
        self._inbox = inbox
        self._path = path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.clients_total = 0
        self.dropped_slow_clients = 0

    @property
    def connected(self) -> int:
        return len(self._clients)

    async def __aenter__(self) -> MessagesSocket:
        path = Path(self._path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale socket from a previous run
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, 0o660)
        except OSError as exc:
            raise IngestError(f"cannot open the messages socket {self._path}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            Path(self._path).unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients_total += 1
        self._clients.add(writer)

        def send(message: Downlink) -> None:
            if writer.is_closing():
                return
            if writer.transport.get_write_buffer_size() > MAX_CLIENT_BACKLOG:
                self.dropped_slow_clients += 1
                log.warning("messages client not reading; disconnected")
                writer.close()
                return
            writer.write(json.dumps(message.doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

        self._inbox.add_listener(send)  # what waited for a client is written now
        try:
            while await reader.read(4096):  # clients only listen; reading tells us when they leave
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self._inbox.remove_listener(send)
            self._clients.discard(writer)
            writer.close()
