"""Structured property tests of the agent's local socket handler (raw bytes: benchmarks.fuzz_targets).

`IngestSocket.handle` is documented never to raise: every datagram is either an accepted
event, counted malformed, or (a valid event the agent cannot take) counted refused, exactly
one of these. Generated valid wire events, sent as msgpack or as JSON, are all accepted
(taken into the spool); generated near-misses are accepted exactly when the wire contract's
own validator (`check_event`) accepts them.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core import Agent
from agent.ingest_socket import IngestSocket
from agent.settings import AgentSettings, DeviceSettings, MessagesSettings, SpoolSettings
from proto.telemetry import KINDS, MAX_TS_MS, InvalidMessage, check_event

SETTINGS = settings(derandomize=True, database=None, max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
safe_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)


@st.composite
def valid_event(draw: st.DrawFn) -> list[Any]:
    spec = KINDS[draw(st.sampled_from(sorted(KINDS)))]
    fields: list[Any] = [draw(st.integers(0, f.max)) if f.type is int else draw(safe_text)[:f.max]
                         for f in spec.fields]
    keep = draw(st.integers(spec.required, len(fields)))  # optional trailing fields may be left out
    return [spec.code, draw(st.integers(0, MAX_TS_MS)), *fields[:keep]]


odd = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(-2**63, 2**64 - 1), safe_text,
                st.lists(st.integers(-1, 300), max_size=4), st.dictionaries(safe_text, st.integers(), max_size=2))


@st.composite
def near_miss(draw: st.DrawFn) -> Any:
    event = draw(valid_event())
    how = draw(st.integers(0, 4))
    if how == 0:
        return draw(odd)                                            # not an event at all
    if how == 1 and len(event) > 2:
        event[draw(st.integers(0, len(event) - 1))] = draw(odd)     # one value of the wrong type or range
    elif how == 2:
        event = event[:draw(st.integers(0, len(event)))]            # cut short
    elif how == 3:
        event += draw(st.lists(odd, min_size=1, max_size=3))        # more fields than the kind has
    return event


def encode(value: Any, as_json: bool) -> bytes | None:
    try:
        return json.dumps(value).encode() if as_json else msgpack.packb(value)
    except (TypeError, ValueError, OverflowError):
        return None


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> IngestSocket:
    """One agent (spool in pytest's temporary folder) for every example of the module."""
    spool = tmp_path_factory.mktemp("agent-prop")
    return IngestSocket(Agent(AgentSettings(device=DeviceSettings(id="prop"), messages=MessagesSettings(enabled=False),
                                            spool=SpoolSettings(dir=str(spool), fsync="off"))))


def counters(ingest: IngestSocket) -> tuple[int, int, int]:
    return ingest.received, ingest.malformed_count, ingest.agent.stats.refused


def handle_once(ingest: IngestSocket, data: bytes) -> tuple[int, int, int]:
    before = counters(ingest)
    ingest.handle(data)                                             # never raises
    moved = tuple(b - a for a, b in zip(before, counters(ingest), strict=True))
    assert sorted(moved) == [0, 0, 1], moved                        # exactly one outcome
    return moved  # type: ignore[return-value]


@SETTINGS
@given(st.lists(valid_event(), min_size=1, max_size=5), st.booleans())
def test_valid_events_are_accepted(ingest: IngestSocket, events: list[list[Any]], as_json: bool) -> None:
    for event in events:
        data = encode(event, as_json)
        assert data is not None
        assert data[:1] == b"[" or not as_json
        accepted_before = ingest.agent.stats.accepted
        assert handle_once(ingest, data) == (1, 0, 0)
        assert ingest.agent.stats.accepted == accepted_before + 1


@SETTINGS
@given(near_miss(), st.booleans())
def test_near_misses_follow_the_wire_contract(ingest: IngestSocket, value: Any, as_json: bool) -> None:
    data = encode(value, as_json)
    if data is None:
        return
    try:  # the handler reads JSON only when the datagram starts with '[' (JSON `null` is no msgpack)
        decoded = json.loads(data) if data[:1] == b"[" else msgpack.unpackb(data, raw=False)
        check_event(decoded)
        valid = True
    except (InvalidMessage, ValueError):
        valid = False
    assert handle_once(ingest, data)[0] == int(valid)


@SETTINGS
@given(st.binary(max_size=64) | st.binary(max_size=8).map(lambda b: b"[" + b))
def test_any_bytes_are_handled(ingest: IngestSocket, data: bytes) -> None:
    handle_once(ingest, data)
