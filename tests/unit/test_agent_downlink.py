"""Messages for the box: checked, once per id (across restarts), never after expiry, kept while
nobody listens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.downlink import Downlink, Inbox, InvalidDownlink, parse

NOW = 1_795_000_000_000


def message(i: int, *, expires: int = NOW + 3_600_000, **changes: Any) -> bytes:
    doc = {"v": 1, "id": f"m{i}", "campaign": "euro-final", "variant": "a", "title": f"Tonight {i}",
           "body": "Press OK", "action": {"type": "tune", "channel_id": 12}, "expires": expires, **changes}
    return msgpack.packb(doc)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.mark.parametrize(("payload", "why"), [
    (b"\xc1", "msgpack"), (msgpack.packb([1]), "map"), (message(1, v=2), "version"), (message(1, v=True), "version"),
    (message(1, id=""), "'id'"), (message(1, id=7), "'id'"), (message(1, title="x" * 1025), "'title'"),
    (message(1, action="tune"), "'action'"), (message(1, expires="soon"), "'expires'"),
])
def test_invalid_payloads_are_refused_with_a_reason(payload: bytes, why: str) -> None:
    with pytest.raises(InvalidDownlink, match=why):
        parse(payload)


def test_waits_for_a_listener_then_delivers_oldest_first_once(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, clock_ms=Clock())
    for i in range(3):
        inbox.receive(message(i))
    got: list[Downlink] = []
    inbox.add_listener(got.append)
    assert [m.id for m in got] == ["m0", "m1", "m2"] and inbox.pending == []
    inbox.receive(message(1))  # a QoS 1 redelivery, or the operator sending it again
    inbox.receive(message(3))  # a new one goes straight to the listener
    assert [m.id for m in got] == ["m0", "m1", "m2", "m3"]
    assert inbox.duplicates == 1 and inbox.delivered == 4
    assert got[3].doc["action"] == {"type": "tune", "channel_id": 12}  # the map as published


def test_at_most_once_across_a_restart_and_kept_while_nobody_listens(tmp_path: Path) -> None:
    clock = Clock()
    first = Inbox(tmp_path, clock_ms=clock)
    seen: list[str] = []

    def ui(m: Downlink) -> None:
        seen.append(m.id)

    first.add_listener(ui)
    first.receive(message(1))
    first.remove_listener(ui)  # the UI disconnected
    first.receive(message(2))  # nobody listens: kept on disk
    again = Inbox(tmp_path, clock_ms=clock)  # the agent restarted
    again.receive(message(1))  # the broker redelivers the delivered one after the restart
    late: list[str] = []
    again.add_listener(lambda m: late.append(m.id))
    assert seen == ["m1"] and late == ["m2"]


def test_never_after_expiry(tmp_path: Path) -> None:
    clock = Clock()
    inbox = Inbox(tmp_path, clock_ms=clock)
    inbox.receive(message(1, expires=NOW - 1))          # expired on arrival
    inbox.receive(message(2, expires=NOW + 60_000))      # expires while nobody listens
    inbox.receive(message(3, expires=NOW + 3_600_000))
    clock.now = NOW + 120_000
    got: list[str] = []
    inbox.add_listener(lambda m: got.append(m.id))
    assert got == ["m3"] and inbox.expired == 2


def test_keeps_the_newest_while_nobody_listens(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, clock_ms=Clock(), keep=5)
    for i in range(12):
        inbox.receive(message(i))
    assert [m.id for m in Inbox(tmp_path, clock_ms=Clock(), keep=5).pending] == [f"m{i}" for i in range(7, 12)]


def test_an_unreadable_state_file_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "downlink.msgpack").write_bytes(b"\x93garbage")
    inbox = Inbox(tmp_path, clock_ms=Clock())
    inbox.receive(message(1))
    assert [m.id for m in inbox.pending] == ["m1"]


def test_a_failed_save_is_counted_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = Inbox(tmp_path, clock_ms=Clock())

    def no_space(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("agent.downlink.os.fsync", no_space)
    inbox.receive(message(1))
    assert inbox.io_errors == 1 and [m.id for m in inbox.pending] == ["m1"]
