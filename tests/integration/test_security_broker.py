"""deploy/mosquitto/secure.conf + secure.acl on a real mosquitto, with certificates from stbcommon.pki.

Each test starts its own broker (milliseconds) from the shipped files, with the placeholder
paths replaced by temp ones. What is checked: a certificate is the identity (a device cannot
publish as another, whatever username or client id it sends; the collector never sees a
forgery), downlink rights, refusal of unknown-CA, expired, revoked and missing certificates,
an expired CRL, no plain listener, and the real agent -> real collector over mutual TLS.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.process import CollectorProcess
from stbcommon import pki
from stbcommon.localservers import Mosquitto, free_port

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mosquitto"
DEVICES = ("stb-a", "stb-b", "stb-gone")


def secure_config(port: int, pki_dir: Path, acl: Path, data: Path) -> str:
    """secure.conf with its documented placeholders replaced; each must still be there."""
    text = (DEPLOY / "secure.conf").read_text()
    for old, new in {"listener 8883": f"listener {port} 127.0.0.1", "/etc/stb/pki/": f"{pki_dir}/",
                     "/etc/stb/mosquitto/secure.acl": str(acl), "/var/lib/mosquitto/": f"{data}/",
                     # as root mosquitto would switch to its own user and lose access to tmp
                     "log_dest syslog": f"log_dest file {data}/mosquitto.log\nuser {getpass.getuser()}"}.items():
        assert old in text, f"secure.conf lost its placeholder {old!r}"
        text = text.replace(old, new)
    return text


class SecureMosquitto(Mosquitto):
    """localservers' Mosquitto (start/stop/log) with the shipped secure config instead of its own."""

    def __init__(self, folder: Path, pki_dir: Path) -> None:
        super().__init__(folder)
        self.pki_dir = pki_dir
        acl = folder / "secure.acl"
        shutil.copy(DEPLOY / "secure.acl", acl)
        self.config_path.write_text(secure_config(self.port, pki_dir, acl, folder))

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue(d, "server", "broker")
    for name in ("collector", "marketing"):
        pki.issue(d, "service", name)
    for name in DEVICES:
        pki.issue(d, "device", name)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    pki.issue(d, "device", "stb-old", not_before=past, days=1)   # expired nine days ago
    return d


@pytest.fixture
def own_pki(pki_dir: Path, tmp_path: Path) -> Path:
    """A copy for tests that change the CRL."""
    return Path(shutil.copytree(pki_dir, tmp_path / "pki"))


def _broker(folder: Path, pki_dir: Path) -> Iterator[SecureMosquitto]:
    broker = SecureMosquitto(folder, pki_dir)
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def broker(tmp_path: Path, pki_dir: Path) -> Iterator[SecureMosquitto]:
    yield from _broker(tmp_path / "mosquitto", pki_dir)


@pytest.fixture
def own_broker(tmp_path: Path, own_pki: Path) -> Iterator[SecureMosquitto]:
    yield from _broker(tmp_path / "mosquitto", own_pki)


def _connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 5 CONNECT (clean start, keepalive 60, no properties)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def try_connect(port: int, pki_dir: Path | None, name: str | None, *, ca: Path | None = None) -> str:
    """'accepted', or why not (the TLS alert the broker sent, or the CONNACK)."""
    ctx = ssl.create_default_context(cafile=ca or (pki_dir and pki_dir / "ca.crt"))
    if name and pki_dir:
        ctx.load_cert_chain(pki_dir / f"{name}.crt", pki_dir / f"{name}.key")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            # TLS 1.3: the broker judges the client certificate after the handshake returned
            # here; wait for its alert before writing, or the close may reset the alert away.
            s.settimeout(0.3)
            try:
                data = s.recv(16)
            except TimeoutError:
                s.settimeout(3)
                s.sendall(_connect_packet(f"probe-{uuid.uuid4().hex[:8]}"))
                data = s.recv(16)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"
    return "accepted" if data[:1] == b"\x20" and len(data) >= 4 and data[3] == 0 else f"refused: {data.hex()}"


class Client:
    """paho-mqtt, MQTT 5, TLS with a certificate from the PKI; records messages and PUBACK codes."""

    def __init__(self, broker: SecureMosquitto, name: str, *, client_id: str | None = None,
                 username: str | None = None, clean_start: bool = True, session_expiry: int = 0) -> None:
        self.name = name
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subacks: dict[int, list[str]] = {}
        self._pubacks: dict[int, str] = {}
        c = self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}-{uuid.uuid4().hex}",
                                      protocol=mqtt.MQTTv5)
        d = broker.pki_dir
        c.tls_set(ca_certs=str(d / "ca.crt"), certfile=str(d / f"{name}.crt"), keyfile=str(d / f"{name}.key"))
        if username:
            c.username_pw_set(username, "ignored")
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda _c, _u, mid, rcs, _p: self._subacks.__setitem__(mid, [str(r) for r in rcs])
        c.on_publish = lambda _c, _u, mid, rc, _p: self._pubacks.__setitem__(mid, str(rc))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        c.connect("127.0.0.1", broker.port, clean_start=clean_start, properties=props)
        c.loop_start()
        assert self._connected.wait(5), f"{name} not connected"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc == 0:
            self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, *filters: str) -> None:
        for f in filters:
            _, mid = self.client.subscribe(f, qos=1)
            wait_until(lambda mid=mid: mid in self._subacks, f"SUBACK for {f}")  # type: ignore[misc]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """The PUBACK's reason ('Success', 'No matching subscribers', 'Not authorized', ...)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.mid in self._pubacks, f"PUBACK for {topic}")
        return self._pubacks[info.mid]

    def received(self, payload: bytes) -> bool:
        with self._lock:
            return any(p == payload for _, p in self.messages)

    def payloads(self) -> set[bytes]:
        with self._lock:
            return {p for _, p in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


ALLOWED = ("Success", "No matching subscribers")


def test_a_device_cannot_publish_as_another_and_the_collector_never_sees_it(broker: SecureMosquitto) -> None:
    plain, shared = Client(broker, "collector"), Client(broker, "collector")
    plain.subscribe("stb/v1/+/+/events")
    shared.subscribe("$share/collectors/stb/v1/+/+/events")
    a = Client(broker, "stb-a")
    # Neither the MQTT username nor the client id is the identity: the certificate's CN is.
    a_as_b = Client(broker, "stb-a", client_id="stb-b", username="stb-b")
    assert a.publish("stb/v1/north/stb-b/events", b"forged") == "Not authorized"
    assert a.publish("stb/v1/north/stb-b/status", b"offline", retain=True) == "Not authorized"
    assert a_as_b.publish("stb/v1/north/stb-b/events", b"forged-with-b-username") == "Not authorized"
    assert a.publish("stb/v1/north/stb-a/events", b"own") in ALLOWED     # after the forgeries
    assert a.publish("stb/v1/north/stb-a/status", b"online", retain=True) in ALLOWED
    for collector in (plain, shared):
        wait_until(lambda c=collector: c.received(b"own"), "the device's own events")  # type: ignore[misc]
        assert collector.payloads() == {b"own"}
    # A certificate holder cannot take the collector's rights by sending its name as username.
    spy = Client(broker, "stb-a", username="collector")
    spy.subscribe("stb/v1/+/+/events", "$share/collectors/stb/v1/+/+/events", "#")
    assert a.publish("stb/v1/north/stb-a/events", b"own-2") in ALLOWED
    wait_until(lambda: plain.received(b"own-2"), "the second event")
    assert spy.payloads() == set()
    for c in (plain, shared, a, a_as_b, spy):
        c.close()


def test_downlink_marketing_writes_each_device_reads_only_its_own(broker: SecureMosquitto) -> None:
    a, b, marketing = Client(broker, "stb-a"), Client(broker, "stb-b"), Client(broker, "marketing")
    # mosquitto 2.0.11 grants every SUBSCRIBE; it checks read rights on each delivered message.
    a.subscribe("stb/v1/+/stb-b/messages", "stb/v1/+/+/messages", "$share/x/stb/v1/+/+/messages", "#",
                "stb/v1/north/stb-a/messages")
    b.subscribe("stb/v1/north/stb-b/messages")
    assert marketing.publish("stb/v1/north/stb-b/messages", b"for-b") in ALLOWED
    assert marketing.publish("stb/v1/north/stb-a/messages", b"for-a") in ALLOWED
    wait_until(lambda: a.received(b"for-a") and b.received(b"for-b"), "each box's own message")
    assert a.payloads() == {b"for-a"}
    assert b.payloads() == {b"for-b"}
    # Nobody else writes downlink or reads uplink through these roles.
    assert a.publish("stb/v1/north/stb-a/messages", b"self-sent") == "Not authorized"
    assert marketing.publish("stb/v1/north/stb-a/events", b"forged-telemetry") == "Not authorized"
    for c in (a, b, marketing):
        c.close()


def test_another_devices_client_id_gets_none_of_its_queued_messages(broker: SecureMosquitto) -> None:
    b = Client(broker, "stb-b", client_id="stb-b", clean_start=True, session_expiry=3600)
    b.subscribe("stb/v1/north/stb-b/messages")
    b.close()
    marketing = Client(broker, "marketing")
    assert marketing.publish("stb/v1/north/stb-b/messages", b"queued-for-b") in ALLOWED
    # stb-a resumes stb-b's persistent session (2.0.11 lets any identity take a client id).
    a = Client(broker, "stb-a", client_id="stb-b", clean_start=False, session_expiry=3600)
    a.subscribe("stb/v1/north/stb-a/messages")
    assert marketing.publish("stb/v1/north/stb-a/messages", b"for-a") in ALLOWED
    wait_until(lambda: a.received(b"for-a"), "A's own message")
    assert a.payloads() == {b"for-a"}   # read rights follow the certificate, not the session
    for c in (a, marketing):
        c.close()


def test_unknown_ca_expired_missing_and_server_certificates_are_refused(broker: SecureMosquitto,
                                                                        tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    pki.init_ca(other)
    pki.issue(other, "device", "stb-a")                  # a real device's name, from a rogue CA
    assert try_connect(broker.port, broker.pki_dir, "stb-a") == "accepted"
    assert "unknown ca" in try_connect(broker.port, other, "stb-a", ca=broker.pki_dir / "ca.crt")
    assert "expired" in try_connect(broker.port, broker.pki_dir, "stb-old")
    assert "certificate required" in try_connect(broker.port, broker.pki_dir, None)
    # A server certificate (serverAuth only) is no client identity.
    assert "unsupported certificate" in try_connect(broker.port, broker.pki_dir, "broker")


def test_revoked_certificate_is_refused_after_sighup_and_after_restart(own_broker: SecureMosquitto) -> None:
    broker, d = own_broker, own_broker.pki_dir
    assert try_connect(broker.port, d, "stb-gone") == "accepted"
    open_before = Client(broker, "stb-gone")
    pki.revoke(d, "stb-gone")
    assert try_connect(broker.port, d, "stb-gone") == "accepted"   # the CRL is read at start and on SIGHUP
    broker.reload()
    wait_until(lambda: "revoked" in try_connect(broker.port, d, "stb-gone"), "revocation after SIGHUP", 5)
    assert try_connect(broker.port, d, "stb-a") == "accepted"
    # Documented (docs/SECURITY.md): a connection opened before the reload stays until it drops.
    assert open_before.publish("stb/v1/north/stb-gone/events", b"late") in ALLOWED
    open_before.close()
    broker.stop()
    broker.start()
    assert "revoked" in try_connect(broker.port, d, "stb-gone")
    assert try_connect(broker.port, d, "stb-b") == "accepted"


def test_an_expired_crl_refuses_every_client_until_resigned(own_pki: Path, tmp_path: Path) -> None:
    ca_cert = x509.load_pem_x509_certificate((own_pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((own_pki / "ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    stale = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
             .last_update(now - dt.timedelta(days=40)).next_update(now - dt.timedelta(days=1))
             .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    (own_pki / "crl.pem").write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    broker = SecureMosquitto(tmp_path / "mosquitto", own_pki)
    broker.start()
    try:
        assert "expired" in try_connect(broker.port, own_pki, "collector")
        pki.refresh_crl(own_pki)
        broker.reload()
        wait_until(lambda: try_connect(broker.port, own_pki, "collector") == "accepted", "a fresh CRL", 5)
    finally:
        broker.kill()


def _listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:            # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_no_plain_mqtt_port(broker: SecureMosquitto) -> None:
    assert broker.proc is not None
    assert _listening_ports(broker.proc.pid) == {broker.port}
    with socket.create_connection(("127.0.0.1", broker.port), timeout=3) as s:
        s.sendall(_connect_packet("plain"))
        try:
            answer = s.recv(16)
        except OSError:
            answer = b""
    assert not answer.startswith(b"\x20"), "a plain MQTT CONNECT was answered with a CONNACK"


def _scrape(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^([a-z_]+) ([0-9.e+-]+)$", text, re.M)}


class AgentProcess:
    """`python -m agent` with a device certificate from the env settings, fed over UDP."""

    def __init__(self, broker: SecureMosquitto, tmp: Path, device_id: str, cert_name: str) -> None:
        self.udp, self.metrics = free_port(), free_port()
        d = broker.pki_dir
        env = {**os.environ, "STB_AGENT__MQTT__CA_FILE": str(d / "ca.crt"),
               "STB_AGENT__MQTT__CERT_FILE": str(d / f"{cert_name}.crt"),
               "STB_AGENT__MQTT__KEY_FILE": str(d / f"{cert_name}.key"), "STB_AGENT__BATCH__MAX_AGE_S": "0.2"}
        self.log = tmp / f"agent-{device_id}-{cert_name}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "--mqtt", broker.url, "--device-id", device_id, "--household-id", "7",
                 "--region", "north", "--spool", str(tmp / f"spool-{device_id}-{cert_name}"), "--fsync", "off",
                 "--socket", "", "--udp-port", str(self.udp), "--metrics-port", str(self.metrics),
                 "--log-format", "text"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _scrape(self.metrics).get("stb_agent_connected") == 1, f"agent {device_id} connected", 20)

    def send(self, count: int) -> None:
        now = int(time.time() * 1000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(count):
                s.sendto(json.dumps([5, now + i, 1]).encode(), ("127.0.0.1", self.udp))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def test_agent_to_collector_over_mutual_tls_and_an_impostor_is_never_stored(broker: SecureMosquitto,
                                                                             tmp_path: Path) -> None:
    d = broker.pki_dir
    collector = CollectorProcess(broker.url, "null://", tmp_path, extra_env={
        "STB_COLLECTOR__MQTT__CA_FILE": str(d / "ca.crt"), "STB_COLLECTOR__MQTT__CERT_FILE": str(d / "collector.crt"),
        "STB_COLLECTOR__MQTT__KEY_FILE": str(d / "collector.key")})
    agents: list[AgentProcess] = []
    try:
        collector.start()
        # An agent claiming device stb-b with stb-a's certificate: the broker refuses its batches
        # (PUBACK 135), and the agent keeps them spooled rather than counting them delivered.
        impostor = AgentProcess(broker, tmp_path, "stb-b", "stb-a")
        agents.append(impostor)
        impostor.send(20)
        wait_until(lambda: _scrape(impostor.metrics).get("stb_agent_datagrams_received_total", 0) >= 20
                   and _scrape(impostor.metrics).get("stb_agent_publish_refused_total", 0) >= 1,
                   "impostor's batches refused")
        assert _scrape(impostor.metrics).get("stb_agent_events_published_total", 0) == 0
        assert _scrape(impostor.metrics).get("stb_agent_spool_events", 0) == 20  # kept, not lost
        honest = AgentProcess(broker, tmp_path, "stb-a", "stb-a")
        agents.append(honest)
        honest.send(30)
        collector.wait_rows(30, timeout=30)
        collector.wait_quiet(quiet_s=1.0)
        assert collector.rows_written() == 30
        assert collector.dead_letters_written() == 0
    finally:
        for agent in agents:
            agent.stop()
        collector.close()
