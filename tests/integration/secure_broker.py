"""The secure broker of deploy/mosquitto on a real mosquitto, and clients of it: the shared parts of
test_security_broker (and of the marketing delivery tests, which publish over the same config).

SecureMosquitto runs the shipped secure.conf + secure.acl with the placeholder paths replaced by
temporary ones; Client is paho over mutual TLS with a certificate from stbcommon.pki;
try_connect says how a bare TLS connection with a given certificate is answered.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stbcommon.localservers import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mosquitto"


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
    """localservers' Mosquitto (start/stop/reload/log) with the shipped secure config instead of its own."""

    def __init__(self, folder: Path, pki_dir: Path) -> None:
        super().__init__(folder)
        self.pki_dir = pki_dir
        acl = folder / "secure.acl"
        shutil.copy(DEPLOY / "secure.acl", acl)
        self.config_path.write_text(secure_config(self.port, pki_dir, acl, folder))

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"


def connect_packet(client_id: str) -> bytes:
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
                s.sendall(connect_packet(f"probe-{uuid.uuid4().hex[:8]}"))
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


def listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:   # closed since the listing (a client leaving): not a listener
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:            # 0A = LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def scrape(port: int) -> dict[str, float]:
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
        wait_until(lambda: scrape(self.metrics).get("stb_agent_connected") == 1, f"agent {device_id} connected", 20)

    def send(self, count: int) -> None:
        now = int(time.time() * 1000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(count):
                s.sendto(json.dumps([5, now + i, 1]).encode(), ("127.0.0.1", self.udp))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
