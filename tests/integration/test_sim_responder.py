"""The responder end to end: a real broker, the real responder process with a real agent per box.
Messages published to boxes come back as kind 8 (and, where the model answered, kind 9) events with
their ids; accepted offers reach the ledger; a household sees a message once across its boxes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from firmware_sim.fleet import FleetPlan, build_world, today_utc
from firmware_sim.ledger import read_ledger
from firmware_sim.responses import ACCEPTED, ResponseModel, decision_rng
from proto.telemetry import decode_envelope

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]
SEED, HOUSEHOLDS, DAYS = 5, 12, 1
EXPIRES_S = 3 * 24 * 3600
MSG_SHOWN, MSG_RESPONSE = 8, 9


class Events:
    """Subscribes to every box's events and keeps the message events (kinds 8 and 9)."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, list[Any]]] = []
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-events", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("stb/v1/+/+/events", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        env = decode_envelope(bytes(msg.payload), msg.topic)
        with self.lock:
            self.events.extend((env.device_id, e) for e in env.events if e[0] in (MSG_SHOWN, MSG_RESPONSE))

    def of(self, kind: int, message_id: str) -> list[tuple[str, list[Any]]]:
        with self.lock:
            return [(d, e) for d, e in self.events if e[0] == kind and e[2] == message_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payload(mid: str, campaign: str, action: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "id": mid, "campaign": campaign, "variant": "b", "title": "Tonight", "body": "Press OK",
            "action": action, "expires": int((time.time() + EXPIRES_S) * 1000)}


def test_boxes_answer_messages_and_the_ledger_gets_accepted_offers(mosquitto: Any, tmp_path: Path) -> None:
    start = today_utc()
    epg, households = build_world(FleetPlan(mqtt_url="", households=HOUSEHOLDS, days=DAYS, seed=SEED, start=start,
                                            guide_size="small"))
    model = ResponseModel(epg, households)
    now = int(time.time() * 1000)
    rows = np.arange(len(households))
    visible = rows[model.p_shown(rows, now, now + EXPIRES_S * 1000) > 0.999]
    buyer = int(next(r for r in visible if not model.owns(np.array([r]), "sports")[0]))
    others = [int(r) for r in visible if r != buyer][:4]
    multi = next((int(r) for r in visible if households.n_devices[r] > 1 and r != buyer), None)
    football = int(epg.content_ids[np.flatnonzero(epg.content_football)[0]]) * 1_000_000 + 1

    def answer(row: int, doc: dict[str, Any]) -> Any:
        hh = int(households.household_id[row])
        return model.decide(row, doc, now, 0, decision_rng(SEED, hh, doc["id"]))

    # The buyer gets an offer it accepts (an id chosen so the model's draw says so); the others a
    # football tune message each, answered however the model draws it.
    offer = next(d for d in (payload(f"offer-{i}", "sports-up", {"type": "offer", "product": "sports"})
                             for i in range(5000)) if answer(buyer, d).response == ACCEPTED)
    sends = [(buyer, 0, offer)] + [(r, 0, payload(f"match-{r}", "euro-final",
                                                 {"type": "tune", "channel_id": 301, "programme_id": football}))
                                   for r in others]
    if multi is not None:  # the same message on each box of a household: seen once
        both = payload("both-boxes", "euro-final", {"type": "info"})
        sends += [(multi, k, both) for k in range(int(households.n_devices[multi]))]

    events = Events(mosquitto.port)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "responder", "--mqtt", mosquitto.url, "--households", str(HOUSEHOLDS),
         "--days", str(DAYS), "--seed", str(SEED), "--start", start.isoformat(), "--state", str(state),
         "--guide-size", "small", "--until-idle", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    operator = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator", protocol=mqtt.MQTTv5)
    operator.connect("127.0.0.1", mosquitto.port)
    operator.loop_start()
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        deadline = time.monotonic() + 30
        while True:  # resent until shown: the first copies may beat an agent's subscription
            missing = [(r, k, d) for r, k, d in sends if not events.of(MSG_SHOWN, d["id"])]
            if not missing:
                break
            assert time.monotonic() < deadline, f"never shown: {[d['id'] for _, _, d in missing]}"
            for row, k, doc in missing:
                topic = f"stb/v1/{households.region_name(row)}/{households.device_ids(row)[k]}/messages"
                operator.publish(topic, msgpack.packb(doc), qos=1).wait_for_publish(10)
            time.sleep(0.5)
        out, err = proc.communicate(timeout=60)
    finally:
        operator.disconnect()
        operator.loop_stop()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        events.close()
    assert proc.returncode == 0, err[-3000:]
    assert "responder:" in out and "shown" in out

    for row, _k, doc in sends:
        shown = events.of(MSG_SHOWN, doc["id"])
        assert len(shown) == 1, doc["id"]
        device, event = shown[0]
        assert device in households.device_ids(row) and event[3:] == [doc["campaign"], doc["variant"]]
        expected = answer(row, doc).response
        answered = events.of(MSG_RESPONSE, doc["id"])
        assert [e[5] for _, e in answered] == ([] if expected is None else [expected]), doc["id"]
        assert all(e[3:5] == [doc["campaign"], doc["variant"]] and e[1] > event[1] for _, e in answered)

    accepted = [p for p in read_ledger(state / "ledger.jsonl") if p.source == "accepted"]
    assert [(p.household_id, p.product) for p in accepted] == [(int(households.household_id[buyer]), "sports")]
    assert accepted[0].day == dt.datetime.now(dt.UTC).date()
    memory = json.loads((state / "responder.json").read_text())
    assert str(int(households.household_id[buyer])) in memory["receipts"]
    assert memory["organic_through"] == dt.datetime.now(dt.UTC).date().isoformat()
