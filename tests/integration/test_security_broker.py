"""deploy/mosquitto/secure.conf + secure.acl on a real mosquitto, with certificates from stbcommon.pki.

Each test starts its own broker (milliseconds) from the shipped files, with the placeholder
paths replaced by temp ones. What is checked: a certificate is the identity (a device cannot
publish as another, whatever username or client id it sends; the collector never sees a
forgery), downlink rights, refusal of unknown-CA, expired, revoked and missing certificates,
an expired CRL, no plain listener, and the real agent -> real collector over mutual TLS.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from collector.process import CollectorProcess
from stbcommon import pki
from tests.integration.secure_broker import (
    AgentProcess,
    Client,
    SecureMosquitto,
    connect_packet,
    listening_ports,
    scrape,
    try_connect,
    wait_until,
)

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)

DEVICES = ("stb-a", "stb-b", "stb-gone")


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


def test_no_plain_mqtt_port(broker: SecureMosquitto) -> None:
    assert broker.proc is not None
    assert listening_ports(broker.proc.pid) == {broker.port}
    with socket.create_connection(("127.0.0.1", broker.port), timeout=3) as s:
        s.sendall(connect_packet("plain"))
        try:
            answer = s.recv(16)
        except OSError:
            answer = b""
    assert not answer.startswith(b"\x20"), "a plain MQTT CONNECT was answered with a CONNACK"


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
        wait_until(lambda: scrape(impostor.metrics).get("stb_agent_datagrams_received_total", 0) >= 20
                   and scrape(impostor.metrics).get("stb_agent_publish_refused_total", 0) >= 1,
                   "impostor's batches refused")
        assert scrape(impostor.metrics).get("stb_agent_events_published_total", 0) == 0
        assert scrape(impostor.metrics).get("stb_agent_spool_events", 0) == 20  # kept, not lost
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
