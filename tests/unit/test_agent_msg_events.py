"""The firmware reports messages for the box as kinds 8 and 9; the collector stores them."""

from __future__ import annotations

import time
from pathlib import Path

from agent.core import Agent
from agent.settings import AgentSettings, DeviceSettings, SpoolSettings
from collector.decoder import Decoder
from proto.telemetry import encode_batch

NOW = int(time.time() * 1000)


def test_msg_events_are_valid_and_decode_into_their_columns(tmp_path: Path) -> None:
    agent = Agent(AgentSettings(device=DeviceSettings(id="box-1"), spool=SpoolSettings(dir=str(tmp_path), fsync="off")))
    assert agent.msg_shown("m1", "euro-final", "a", ts_ms=NOW)
    assert agent.msg_response("m1", "euro-final", "a", 2, ts_ms=NOW + 1)
    assert not agent.msg_response("m1", "euro-final", "a", 5)  # 0..4 only
    events = [r.event for r in agent.spool.read(agent.spool.head, agent.spool.tail, 10, 1 << 20)]
    agent.spool.close()
    payload = encode_batch(device_id="box-1", household_id=7, firmware="1", seq0=0, sent_ms=NOW, events=events)
    for native in (True, False):
        decoder = Decoder(native=native)
        batch = decoder.decode([decoder.accept("stb/v1/north/box-1/events", payload, NOW)])  # type: ignore[list-item]
        assert batch.rows == 2 and not batch.dead_letters
        assert batch.events["kind"].tolist() == [8, 9]
        assert batch.events["message_id"].tolist() == ["m1", "m1"]
        assert batch.events["campaign"].tolist() == ["euro-final"] * 2
        assert batch.events["response"].tolist() == [0, 2]
