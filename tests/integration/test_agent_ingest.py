"""The local sockets: valid datagrams become events, malformed ones are counted and survived."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.core import Agent
from agent.ingest_socket import IngestSocket
from stbcommon.localservers import free_port
from tests.integration.test_agent_crash import AgentProcess
from tests.integration.test_agent_delivery import NOW, Inbox, agent_settings, check_exactly_once_in_order

pytestmark = pytest.mark.integration

MALFORMED = [
    b"",                                       # empty
    b"\xc1\xc1",                               # not msgpack
    b"[1, 2",                                  # torn JSON
    b"[1, 2] trailing",                        # JSON with garbage after it
    msgpack.packb([5, NOW, 1]) + b"\x00",      # msgpack with extra data
    json.dumps({"kind": 1}).encode(),          # a JSON object: its first byte is not '['
    msgpack.packb({"kind": 1}),                # a msgpack map
    msgpack.packb([99, NOW]),                  # unknown kind
    b"[5, 1795000000000, 1.0]",                # a float where an integer belongs
    b"[5, 1795000000000, 7]",                  # power state out of range
    msgpack.packb([[[[[]]]]] * 3),             # nested nonsense
    b"[" * 100_000,                            # deep nesting (RecursionError in the JSON parser)
    b"\xff" * 4000,                            # binary noise
]


@pytest.fixture
def inbox(mosquitto: Any) -> Any:
    box = Inbox(mosquitto.port)
    yield box
    box.close()


async def test_unix_and_udp_datagrams(mosquitto: Any, inbox: Inbox, tmp_path: Path) -> None:
    path = tmp_path / "events.sock"
    udp_port = free_port()
    async with Agent(agent_settings(mosquitto.url, tmp_path / "spool")) as agent, \
            IngestSocket(agent, unix_path=str(path), udp_port=udp_port) as ingest:
        assert ingest.bound_udp_port == udp_port
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            unix.sendto(json.dumps([1, NOW, 101, 90210, 1500, 0]).encode(), str(path))   # JSON, as C's snprintf
            unix.sendto(msgpack.packb([2, NOW + 1, 101, 102, 1]), str(path))             # msgpack
            for bad in MALFORMED:
                unix.sendto(bad, str(path))
                await asyncio.sleep(0)  # AF_UNIX datagram queues are short: let the agent read
            udp.sendto(b'[3, 1795000000002, "guide", "open", 90210]', ("127.0.0.1", udp_port))
            unix.sendto(msgpack.packb([5, NOW + 3, 2]), str(path))  # still alive after the garbage
        for _ in range(100):
            if ingest.received + ingest.malformed_count >= 4 + len(MALFORMED):
                break
            await asyncio.sleep(0.02)
        assert (ingest.received, ingest.malformed_count) == (4, len(MALFORMED))
        assert agent.stats.accepted == 4
        assert await agent.drain(10)
    got = await asyncio.to_thread(inbox.wait_for_unique, 4)
    check_exactly_once_in_order(got)
    assert [d.event for d in got] == [[1, NOW, 101, 90210, 1500, 0], [2, NOW + 1, 101, 102, 1],
                                      [3, NOW + 2, "guide", "open", 90210], [5, NOW + 3, 2]]
    assert not path.exists()  # the socket file is removed on close


def test_standalone_agent_counts_in_metrics_and_stops_on_sigterm(mosquitto: Any, inbox: Inbox,
                                                                  tmp_path: Path) -> None:
    port = free_port()
    agent = AgentProcess(mosquitto.url, tmp_path, "box-m", "--metrics-port", str(port))
    agent.start()
    agent.send([json.dumps([5, NOW + i, 1]).encode() for i in range(3)] + MALFORMED[:2])
    inbox.wait_for_unique(3)
    deadline = time.monotonic() + 10
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if "stb_agent_events_published_total 3.0" in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for line in ("stb_agent_events_accepted_total 3.0", "stb_agent_datagrams_malformed_total 2.0",
                 "stb_agent_events_published_total 3.0", "stb_agent_spool_events 0.0", "stb_agent_connected 1.0",
                 "stb_agent_events_dropped_total 0.0"):
        assert line in text, line
    started = time.monotonic()
    assert agent.signal(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    assert '"malformed": 2' in agent.log.read_text() or "malformed=2" in agent.log.read_text()
