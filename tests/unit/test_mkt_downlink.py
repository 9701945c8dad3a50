"""Downlink payloads as the box accepts them (agent.downlink.parse), ids unique and stable, topics safe."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.downlink import parse
from marketing.downlink import MAX_ID, MAX_TEXT, encode, encode_many, message_ids, topic

ACTION = {"type": "tune", "channel_id": 12, "programme_id": "p-7", "start": 1_797_620_400_000}
EXPIRES = 1_797_624_000_000


def test_topic_is_the_boxes_messages_topic() -> None:
    assert topic("north", "stb-1-1") == "stb/v1/north/stb-1-1/messages"


@pytest.mark.parametrize(("region", "device"), [("", "a"), ("a", ""), ("a/b", "c"), ("a", "+"), ("#", "b"),
                                                ("a", "x\0y")])
def test_topic_refuses_parts_that_change_its_shape(region: str, device: str) -> None:
    with pytest.raises(ValueError):
        topic(region, device)


def test_message_ids_are_stable_unique_and_hide_the_household() -> None:
    households = np.arange(10**9, 10**9 + 50_000, dtype=np.uint64)
    waves = np.where(households % 3 == 0, 2, 1)
    ids = message_ids("euro-final", households, waves)
    assert len(set(ids.tolist())) == len(households)
    assert (ids == message_ids("euro-final", households, waves)).all()       # a retried send: same ids
    assert ids[0] == f"euro-final.{waves[0]}.{ids[0].rsplit('.', 1)[1]}" and len(ids[0].rsplit(".", 1)[1]) == 16
    assert max(len(i) for i in ids) <= MAX_ID
    for h, i in zip(households[:200].tolist(), ids[:200].tolist(), strict=True):
        assert str(h) not in i and f"{h:x}" not in i
    other_wave = message_ids("euro-final", households[:1], np.array([3]))
    other_campaign = message_ids("euro-semi", households[:1], waves[:1])
    keyed = message_ids("euro-final", households[:1], waves[:1], key=b"operator secret")
    tails = {ids[0].rsplit(".", 1)[1], other_campaign[0].rsplit(".", 1)[1], keyed[0].rsplit(".", 1)[1]}
    assert len(tails) == 3 and other_wave[0].startswith("euro-final.3.")
    assert other_wave[0].rsplit(".", 1)[1] == ids[0].rsplit(".", 1)[1]   # the wave is in the prefix


def test_message_ids_refuse_mismatched_inputs_and_overlong_campaigns() -> None:
    with pytest.raises(ValueError):
        message_ids("c", np.arange(3, dtype=np.uint64), np.ones(2, dtype=np.int64))
    with pytest.raises(ValueError):
        message_ids("c" * 120, np.arange(3, dtype=np.uint64), np.ones(3, dtype=np.int64))


def test_encode_is_what_the_agent_accepts() -> None:
    payload = encode("euro-final.1.00ff", "euro-final", "a", "Tonight", "Press OK", ACTION, EXPIRES)
    message = parse(payload)
    assert message.id == "euro-final.1.00ff" and message.expires_ms == EXPIRES
    assert message.doc == {"v": 1, "id": "euro-final.1.00ff", "campaign": "euro-final", "variant": "a",
                           "title": "Tonight", "body": "Press OK", "action": ACTION, "expires": EXPIRES}


@pytest.mark.parametrize("change", [
    {"message_id": ""}, {"message_id": "x" * (MAX_ID + 1)}, {"campaign": "c" * (MAX_ID + 1)},
    {"variant": "v" * (MAX_ID + 1)}, {"title": "t" * (MAX_TEXT + 1)}, {"body": "b" * (MAX_TEXT + 1)},
    {"action": {1: "x"}}, {"expires_ms": 0}, {"expires_ms": 1.5},
])
def test_encode_refuses_what_the_agent_would_drop(change: dict[str, object]) -> None:
    args: dict[str, object] = {"message_id": "m", "campaign": "c", "variant": "a", "title": "t", "body": "b",
                               "action": ACTION, "expires_ms": EXPIRES, **change}
    with pytest.raises(ValueError):
        encode(**args)  # type: ignore[arg-type]
    if change.keys() != {"message_id"}:
        args.pop("message_id")
        with pytest.raises(ValueError):
            encode_many(["m"], **args)  # type: ignore[arg-type]


def test_limits_are_the_agents() -> None:
    from agent import downlink as box
    assert (MAX_ID, MAX_TEXT) == (box.MAX_ID, box.MAX_TEXT)


ids_strategy = st.lists(st.text(min_size=1, max_size=MAX_ID), min_size=1, max_size=5)


@settings(derandomize=True, database=None, max_examples=80, deadline=None)
@given(ids=ids_strategy, title=st.text(max_size=MAX_TEXT), body=st.text(max_size=60))
@example(ids=["a" * 31, "a" * 32, "é" * 100, "\U0001f600" * MAX_ID], title="", body="")  # str header sizes
def test_encode_many_is_encode_byte_for_byte(ids: list[str], title: str, body: str) -> None:
    many = encode_many(ids, "euro-final", "b", title, body, ACTION, EXPIRES)
    assert many == [encode(i, "euro-final", "b", title, body, ACTION, EXPIRES) for i in ids]
    assert [parse(p).doc["id"] for p in many] == ids
    assert msgpack.unpackb(many[0])["title"] == title
