"""Messages for the box end to end: a real broker, the real agent process, a UI client on its
messages socket. Once per id across restarts, never after expiry, kept while no UI listens."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
import pytest

from tests.integration.test_agent_crash import AgentProcess

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)
TOPIC = "stb/v1/north/box-9/messages"


def message(mid: str, *, expires_in_s: float = 3600) -> bytes:
    return msgpack.packb({"v": 1, "id": mid, "campaign": "euro-final", "variant": "a", "title": "Tonight",
                          "body": "Press OK to watch", "action": {"type": "tune", "channel_id": 12},
                          "expires": int((time.time() + expires_in_s) * 1000)})


class Operator:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator", protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, payload: bytes) -> None:
        self.client.publish(TOPIC, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class UiClient:
    """What the firmware's UI does: connect to the messages socket, read JSON lines."""

    def __init__(self, path: Path, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the agent binds it just after its events socket; a killed one left a stale file
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                assert time.monotonic() < deadline, f"nobody listens on {path}"
                time.sleep(0.02)
        self.sock.settimeout(0.2)
        self.buffer = b""
        self.lines: list[dict[str, Any]] = []

    def wait_for(self, mid: str, resend: Operator | None = None, payload: bytes = b"", timeout: float = 20) -> None:
        """Until message `mid` has arrived (resending it while waiting: the first copies may
        reach a broker that has no subscription for the agent yet)."""
        deadline = time.monotonic() + timeout
        while not any(line["id"] == mid for line in self.lines):
            assert time.monotonic() < deadline, f"{mid} never arrived; got {self.lines}"
            if resend is not None:
                resend.send(payload)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data, "the agent closed the messages socket"
            self.buffer += data
            *complete, self.buffer = self.buffer.split(b"\n")
            self.lines.extend(json.loads(line) for line in complete)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def operator(mosquitto: Any) -> Any:
    op = Operator(mosquitto.port)
    yield op
    op.close()


def test_once_per_id_across_restarts_never_expired_kept_while_no_ui(mosquitto: Any, operator: Operator,
                                                                      tmp_path: Path) -> None:
    ui_path = tmp_path / "messages.sock"
    agent = AgentProcess(mosquitto.url, tmp_path, "box-9", "--messages-socket", str(ui_path))
    agent.start()
    try:
        ui = UiClient(ui_path)
        first = message("m1")
        ui.wait_for("m1", resend=operator, payload=first)  # resent until the agent's subscription is in place
        assert ui.lines[0]["title"] == "Tonight" and ui.lines[0]["action"] == {"type": "tune", "channel_id": 12}
        ui.close()
        assert agent.signal(signal.SIGKILL) == -signal.SIGKILL

        # The box is off: the broker queues for its persistent session.
        operator.send(message("m2"))
        operator.send(message("m3", expires_in_s=-1))   # already expired when the box sees it
        operator.send(first)                            # the operator sends m1 again
        agent.start()
        ui = UiClient(ui_path)
        operator.send(message("m4"))                    # after the queued ones, in order
        ui.wait_for("m4")
        assert [line["id"] for line in ui.lines] == ["m2", "m4"]
        ui.close()
        assert agent.signal(signal.SIGTERM) == 0

        agent.start()
        ui = UiClient(ui_path)
        operator.send(message("m5"))
        ui.wait_for("m5")
        assert [line["id"] for line in ui.lines] == ["m5"]  # nothing delivered before comes again
        ui.close()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.signal(signal.SIGTERM)
