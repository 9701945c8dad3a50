"""A load generator that outruns the collector: raw MQTT 5 QoS 1 publishing with the `mqtt5`
codec over a plain socket, a deep window of un-acknowledged PUBLISHes, several processes.

paho publishes ~7k messages/s per process here; this writes pre-encoded payloads in large
`sendall` chunks and counts PUBACKs as they stream back, so the broker and the collector,
not the generator, set the pace. Payloads are generated before the clock starts.

    sent, seconds = publish_fast(mqtt_url, messages)                 # one process
    totals = publish_fast_parallel(mqtt_url, traffic, processes=2)    # Traffic split by device
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import mqtt5

from firmware_sim.loadgen import Traffic

_WINDOW = 20_000  # PUBLISHes in flight; below the 65,535 packet ids, so an id is never reused in flight


@dataclass(frozen=True)
class PublishRun:
    messages: int
    seconds: float  # first byte sent to last PUBACK received


def publish_fast(mqtt_url: str, messages: Sequence[tuple[str, bytes]], *, client_id: str = "",
                 window: int = _WINDOW, timeout: float = 600.0) -> PublishRun:
    """Publish every message at QoS 1 and wait for every PUBACK."""
    url = urlsplit(mqtt_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 1883), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(mqtt5.ConnectPacket(
            client_id or f"fastpub-{time.monotonic_ns()}", clean_start=True, keep_alive=0,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password).encode() if url.password else None).write())
        reader = _PacketReader(sock)
        connack = reader.next()
        if not isinstance(connack, mqtt5.ConnAckPacket) or connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            raise ConnectionError(f"broker refused the connection: {connack}")
        window = max(1, min(window, connack.receive_max))
        started = time.monotonic()
        sent = acked = 0
        qos = mqtt5.QoS.AT_LEAST_ONCE
        while acked < len(messages):
            if sent < len(messages) and sent - acked < window:
                upto = min(len(messages), acked + window, sent + 2000)
                sock.sendall(b"".join(
                    mqtt5.PublishPacket(topic, payload, qos=qos, packet_id=i % 65_535 + 1).write()
                    for i, (topic, payload) in enumerate(messages[sent:upto], start=sent)))
                sent = upto
                if sent - acked < window:
                    acked += reader.acks(block=False)
                    continue
            acked += reader.acks(block=True)
        seconds = time.monotonic() - started
        sock.sendall(mqtt5.DisconnectPacket().write())
    return PublishRun(len(messages), seconds)


class _PacketReader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def next(self) -> Any:
        while True:
            try:
                packet, size = mqtt5.read(memoryview(self._buffer))
            except IndexError:  # not a whole packet yet
                self._fill(block=True)
                continue
            del self._buffer[:size]
            return packet

    def acks(self, *, block: bool) -> int:
        """PUBACKs in what has arrived (waiting for some if `block`)."""
        self._fill(block)
        count = consumed = 0
        view = memoryview(self._buffer)
        try:
            while consumed < len(view):
                packet, size = mqtt5.read(view[consumed:])
                consumed += size
                if isinstance(packet, mqtt5.PubAckPacket):
                    if packet.reason_code not in (mqtt5.PubAckReasonCode.SUCCESS,
                                                  mqtt5.PubAckReasonCode.NO_MATCHING_SUBSCRIBERS):
                        raise ConnectionError(f"publish refused: {packet.reason_code}")
                    count += 1
                elif isinstance(packet, mqtt5.DisconnectPacket):
                    raise ConnectionError(f"broker disconnected: {packet}")
        except IndexError:
            pass  # a partial packet stays for the next read
        finally:
            view.release()
        del self._buffer[:consumed]
        return count

    def _fill(self, block: bool) -> None:
        self._sock.setblocking(block)
        try:
            data = self._sock.recv(1 << 20)
        except BlockingIOError:
            return
        finally:
            self._sock.setblocking(True)
        if not data:
            raise ConnectionError("broker closed the connection")
        self._buffer += data


def _publisher(args: tuple[str, Traffic, int, int, Any, Any]) -> tuple[int, float, float, float]:
    url, traffic, share, shares, ready, go = args
    messages = list(traffic.messages(range(share, traffic.devices, shares)))
    ready.release()
    go.wait()
    started = time.time()
    run = publish_fast(url, messages, client_id=f"fastpub-{share}-{time.monotonic_ns()}")
    return run.messages, run.seconds, started, started + run.seconds


def publish_fast_parallel(mqtt_url: str, traffic: Traffic, processes: int = 2) -> PublishRun:
    """`traffic` from several processes, each generating its share first, then all starting
    together; `seconds` runs from the first process's start to the last one's final PUBACK."""
    ctx = mp.get_context("spawn")
    with mp.Manager() as manager:
        ready, go = manager.Semaphore(0), manager.Event()
        with ctx.Pool(processes) as pool:
            results = pool.map_async(_publisher, [(mqtt_url, traffic, i, processes, ready, go)
                                                  for i in range(processes)])
            for _ in range(processes):
                ready.acquire()
            go.set()
            shares = results.get()
    begin, end = min(r[2] for r in shares), max(r[3] for r in shares)
    return PublishRun(sum(r[0] for r in shares), end - begin)
