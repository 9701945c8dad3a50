"""MqttSource on the mqtt5 codec against a real mosquitto, on uvloop and on the default loop.

"Nothing comes back" is checked without waiting out a silence: a fresh source on the same
session gets a marker published after it subscribed; anything redelivered arrives first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from collector import metrics
from collector.mqtt_source import Message, MqttSource
from collector.settings import MqttSettings
from firmware_sim.loadgen import publish
from stbcommon.localservers import Mosquitto, free_port

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)

TOPIC = "stb/v1/north/{}/events"
Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Run:
    def runner(coro: Coroutine[Any, Any, None]) -> None:
        factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(coro)
    return runner


def settings(url: str, client_id: str = "m5", **overrides: Any) -> MqttSettings:
    return MqttSettings(url=url, client_id=client_id, group="m5test", reconnect_min_s=0.05,
                        reconnect_max_s=0.2, **overrides)


def messages(n: int, prefix: str = "m") -> list[tuple[str, bytes]]:
    return [(TOPIC.format(f"dev{i % 7}"), f"{prefix}{i}".encode()) for i in range(n)]


async def send(url: str, batch: list[tuple[str, bytes]]) -> None:
    await asyncio.to_thread(publish, url, batch)


async def take(src: MqttSource, n: int, timeout: float = 15.0) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            got += await src.get_batch(n - len(got), timeout)
    return got


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll a condition the source exposes no event for (connected again after an outage)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (a condition with a deadline, not a fixed sleep)
            await asyncio.sleep(0.02)


async def redelivered(s: MqttSettings, publish_url: str) -> list[bytes]:
    """Open the session again and return what comes before a fresh marker (acking all)."""
    async with MqttSource(s) as src:
        await send(publish_url, [(TOPIC.format("marker"), b"END")])
        got: list[Message] = []
        while not got or got[-1].payload != b"END":
            got += await take(src, 1)
        src.ack(got)
        return [m.payload for m in got[:-1]]


def test_receive_and_ack_then_nothing_comes_back(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        s = settings(mosquitto.url)
        sent = messages(500)
        async with MqttSource(s) as src:
            assert src.connected
            await send(mosquitto.url, sent)
            got = await take(src, 500)
            assert [(m.topic, m.payload) for m in got] == sent  # receive order
            assert all(m.mid and not m.dup and m.received_ms > 0 for m in got)
            src.ack(got)
        assert not src.connected
        assert await redelivered(s, mosquitto.url) == []
    run(scenario())


def test_unacked_messages_are_redelivered_to_the_next_source(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        s = settings(mosquitto.url)
        async with MqttSource(s) as src:
            await send(mosquitto.url, messages(100))
            got = await take(src, 100)
            src.ack(got[:40])  # a committed batch; the rest was in flight when we stopped
        async with MqttSource(s) as src:  # the persistent session kept the other 60
            again = await take(src, 60)
            assert [m.payload for m in again] == [m.payload for m in got[40:]]
            assert all(m.dup for m in again)
            src.ack(again)
        assert await redelivered(s, mosquitto.url) == []
    run(scenario())


def test_shared_subscription_splits_the_stream_between_two_sources(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        async with MqttSource(settings(mosquitto.url, "m5-a")) as a, \
                MqttSource(settings(mosquitto.url, "m5-b")) as b:
            assert a.subscription_filter == b.subscription_filter == "$share/m5test/stb/v1/+/+/events"
            sent = messages(400)
            await send(mosquitto.url, sent)
            got: dict[str, list[bytes]] = {"a": [], "b": []}
            async with asyncio.timeout(15):
                while len(got["a"]) + len(got["b"]) < 400:
                    for name, src in (("a", a), ("b", b)):
                        batch = await src.get_batch(400, 0.05)
                        src.ack(batch)
                        got[name] += [m.payload for m in batch]
            assert sorted(got["a"] + got["b"]) == sorted(p for _, p in sent)  # each exactly once
            assert len(got["a"]) > 50 and len(got["b"]) > 50
    run(scenario())


def test_broker_restart_mid_stream_reconnects_and_redelivers(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        s = settings(mosquitto.url)
        async with MqttSource(s) as src:
            await send(mosquitto.url, messages(100, "first"))
            before = await take(src, 100)  # received, not yet committed
            connects = metrics.MQTT_CONNECTS._value.get()
            await asyncio.to_thread(mosquitto.stop)  # persists the session and its in-flight messages
            await asyncio.to_thread(mosquitto.start)
            await until(lambda: metrics.MQTT_CONNECTS._value.get() > connects and src.connected)
            after = await take(src, 100)  # the broker redelivers everything un-acked
            assert [m.payload for m in after] == [m.payload for m in before]
            assert {m.session for m in after}.isdisjoint({m.session for m in before})
            stale, acks = metrics.STALE_ACKS._value.get(), metrics.ACKS._value.get()
            src.ack(before)  # the commit of the old connection's batch: nothing to send
            src.ack(after)
            assert metrics.STALE_ACKS._value.get() == stale + 100
            assert metrics.ACKS._value.get() == acks + 100
            await send(mosquitto.url, messages(50, "second"))  # resubscribed: the stream goes on
            src.ack(await take(src, 50))
        assert await redelivered(s, mosquitto.url) == []
    run(scenario())


def test_a_frozen_broker_is_detected_by_keepalive(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        # keep-alive 1 s (below the settings' minimum of 5) keeps the test quick
        async with MqttSource(settings(mosquitto.url, keepalive_s=1)) as src:
            assert mosquitto.proc is not None
            os.kill(mosquitto.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                await until(lambda: not src.connected, timeout=10)
                # 1.5 keep-alives after the last bytes, which may precede the freeze by one ping period
                assert 0.4 < time.monotonic() - started < 5
            finally:
                os.kill(mosquitto.proc.pid, signal.SIGCONT)
            await until(lambda: src.connected)
            await send(mosquitto.url, messages(10))
            src.ack(await take(src, 10))
    run(scenario())


def test_stop_receiving_then_aclose_leaves_the_rest_to_the_broker(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        s = settings(mosquitto.url)
        async with MqttSource(s) as src:
            await send(mosquitto.url, messages(20, "early"))
            early = await take(src, 20)
            await src.stop_receiving()
            await send(mosquitto.url, messages(10, "late"))  # reaches the socket, never handed out
            assert await asyncio.wait_for(src.get_batch(100, 30), 1) == []
            src.ack(early)  # the drain's last commit still gets acknowledged
        assert await redelivered(s, mosquitto.url) == [p for _, p in messages(10, "late")]
    run(scenario())


def test_receive_maximum_and_backpressure(mosquitto: Mosquitto, run: Run) -> None:
    async def scenario() -> None:
        s = settings(mosquitto.url, receive_maximum=10)
        async with MqttSource(s) as src:
            await send(mosquitto.url, messages(30))
            first = await take(src, 10)
            # Receive Maximum: the broker sends no 11th before we ack (a short window to look).
            assert await src.get_batch(100, 0.3) == []
            src.ack(first)
            src.ack(await take(src, 20))
        s = settings(mosquitto.url, receive_maximum=1000, max_buffered_bytes=20_000)
        sent = [(t, p * 1000) for t, p in messages(300)]
        async with MqttSource(s) as src:
            await send(mosquitto.url, sent)
            await until(lambda: metrics.READING_PAUSED._value.get() == 1)
            got: list[Message] = []
            while len(got) < 300:
                batch = await src.get_batch(7, 10)  # a slow consumer: small batches
                src.ack(batch)
                got += batch
            assert [m.payload for m in got] == [p for _, p in sent]
            assert metrics.READING_PAUSED._value.get() == 0
    run(scenario())


# -- TLS and username/password ----------------------------------------------------------------

USER, PASSWORD = "coll@ector", "p:ss/w%rd"  # both need percent-encoding in a URL
URL_AUTH = "coll%40ector:p%3Ass%2Fw%25rd"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate naming only `localhost`, from the openssl CLI."""
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem",
                    "-days", "2", "-subj", "/CN=m5-test-ca"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", *ec, "-keyout", d / "server.key", "-out", d / "server.csr",
                    "-subj", "/CN=localhost"], check=True, capture_output=True)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    subprocess.run(["openssl", "x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey",
                    d / "ca.key", "-CAcreateserial", "-out", d / "server.pem", "-days", "2",
                    "-extfile", d / "san.ext"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", *ec, "-keyout", d / "client.key", "-out", d / "client.csr",
                    "-subj", "/CN=collector"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", d / "client.csr", "-CA", d / "ca.pem", "-CAkey",
                    d / "ca.key", "-CAcreateserial", "-out", d / "client.pem", "-days", "2"],
                   check=True, capture_output=True)
    return d


class TlsMosquitto(Mosquitto):
    """The fixture's broker plus a TLS listener that wants a username and password, and one
    that wants a client certificate (its CN is the username)."""

    def __init__(self, folder: Path, certs: Path) -> None:
        super().__init__(folder)
        self.tls_port, self.mtls_port = free_port(), free_port()
        subprocess.run(["mosquitto_passwd", "-b", "-c", folder / "passwd", USER, PASSWORD],
                       check=True, capture_output=True)
        self.config_path.write_text(
            "per_listener_settings true\n" + self.config_path.read_text()
            + f"listener {self.tls_port} 127.0.0.1\n"
            f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\nkeyfile {certs / 'server.key'}\n"
            f"allow_anonymous false\npassword_file {folder / 'passwd'}\n"
            f"listener {self.mtls_port} 127.0.0.1\n"
            f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\nkeyfile {certs / 'server.key'}\n"
            "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n")


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Path) -> Iterator[TlsMosquitto]:
    broker = TlsMosquitto(tmp_path / "mosquitto-tls", certs)
    broker.start()
    yield broker
    broker.kill()


def test_tls_with_password_or_client_certificate(tls_broker: TlsMosquitto, certs: Path, run: Run,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ca = str(certs / "ca.pem")

    async def scenario() -> None:
        s = settings(f"mqtts://{URL_AUTH}@localhost:{tls_broker.tls_port}", ca_file=ca)
        async with MqttSource(s) as src:
            await send(tls_broker.url, messages(50))  # published on the plain listener
            src.ack(await take(src, 50))
        # The certificate does not name 127.0.0.1: refused, unless tls_insecure (chain still checked).
        await refused(settings(f"mqtts://{URL_AUTH}@127.0.0.1:{tls_broker.tls_port}", ca_file=ca),
                      "certificate verify failed")
        s = settings(f"mqtts://{URL_AUTH}@127.0.0.1:{tls_broker.tls_port}", ca_file=ca, tls_insecure=True)
        async with MqttSource(s) as src:
            assert src.connected
        await refused(settings(f"mqtts://{URL_AUTH}x@localhost:{tls_broker.tls_port}", ca_file=ca),
                      "broker refused the connection")
        # Mutual TLS: our certificate is our identity; without it the handshake fails.
        s = settings(f"mqtts://localhost:{tls_broker.mtls_port}", ca_file=ca,
                     cert_file=str(certs / "client.pem"), key_file=str(certs / "client.key"))
        async with MqttSource(s) as src:
            await send(tls_broker.url, messages(5))
            src.ack(await take(src, 5))
        await refused(settings(f"mqtts://localhost:{tls_broker.mtls_port}", ca_file=ca), "certificate required")

    async def refused(s: MqttSettings, error: str) -> None:
        """Logged and retried: __aenter__ does not return."""
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="collector.mqtt_source"), pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await MqttSource(s).__aenter__()
        errors = [getattr(r, "error", "") for r in caplog.records if r.getMessage() == "mqtt connect failed, retrying"]
        assert errors and all(error in e for e in errors), errors

    run(scenario())
