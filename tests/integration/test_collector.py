"""The real collector process against a real mosquitto and both real stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from proto.telemetry import MAX_PAYLOAD_BYTES, encode_batch, make_event
from tests.integration.harness import Collector, Traffic, count_events, dead_letter_reasons, differing_copies, publish
from warehouse import open_warehouse
from warehouse.schema import TABLES

pytestmark = pytest.mark.integration
RUN_EARLY = True  # paho in this process: before the chdb stores use up low descriptors (tests/conftest.py)


@pytest.fixture(params=["clickhouse", "chdb"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("clickhouse_url" if request.param == "clickhouse" else "chdb_url"))


@pytest.fixture
def collector(mosquitto, store_url: str, tmp_path: Path) -> Iterator[Collector]:  # type: ignore[no-untyped-def]
    c = Collector(mosquitto.url, store_url, tmp_path)
    yield c
    c.close()


def test_end_to_end_counts_equal(mosquitto, collector: Collector, store_url: str) -> None:  # type: ignore[no-untyped-def]
    collector.start()
    traffic = Traffic(devices=40, messages_per_device=25, events_per_message=20)
    publish(mosquitto.url, traffic.messages())
    collector.wait_rows(traffic.total_events)
    collector.stop_cleanly()
    assert count_events(store_url) == traffic.total_events
    assert count_events(store_url, final=False) == traffic.total_events  # no duplicates at all here


def test_redelivered_duplicates_count_once(mosquitto, collector: Collector, store_url: str) -> None:  # type: ignore[no-untyped-def]
    collector.start()
    traffic = Traffic(devices=5, messages_per_device=10, events_per_message=10)
    messages = list(traffic.messages())
    publish(mosquitto.url, messages + messages[:20])  # an agent that resent after a lost PUBACK
    collector.wait_rows(traffic.total_events + 20 * 10)
    collector.stop_cleanly()
    assert count_events(store_url) == traffic.total_events
    assert differing_copies(store_url) == 0  # the copies are identical


def test_kill_9_mid_stream_then_restart_gives_every_event_once(mosquitto, collector: Collector,  # type: ignore[no-untyped-def]
                                                               store_url: str) -> None:
    collector.start()
    traffic = Traffic(devices=50, messages_per_device=60, events_per_message=25)
    publisher = threading.Thread(target=publish, args=(mosquitto.url, traffic.messages()))
    publisher.start()
    collector.wait_rows(traffic.total_events // 5)
    collector.kill()  # mid-stream: batches in flight, acks withheld
    publisher.join(120)
    collector.start()
    collector.wait_quiet()
    collector.stop_cleanly()
    assert count_events(store_url) == traffic.total_events
    assert differing_copies(store_url) == 0  # redelivered after the kill: identical copies only


def test_sigterm_flushes_and_acknowledges(mosquitto, collector: Collector, store_url: str) -> None:  # type: ignore[no-untyped-def]
    collector.start()
    traffic = Traffic(devices=20, messages_per_device=10, events_per_message=5)
    publish(mosquitto.url, traffic.messages())
    collector.wait_for(lambda m: m.get("collector_messages_received_total", 0) >= 200, 30, "all received")
    collector.stop_cleanly()
    assert count_events(store_url, final=False) == traffic.total_events
    # Everything was acknowledged: a restarted collector gets nothing redelivered.
    collector.start()
    time.sleep(1.5)
    assert collector.metrics().get("collector_messages_received_total", 0) == 0
    collector.stop_cleanly()
    assert count_events(store_url, final=False) == traffic.total_events


def test_broker_restart_shared_subscription(mosquitto, collector: Collector, store_url: str) -> None:  # type: ignore[no-untyped-def]
    """Un-acked messages survive a broker restart and the collector reconnects by itself.
    (mosquitto 2.0.11 does not restore *shared* subscriptions from persistence, so traffic
    is published again only once the collector has resubscribed; see the exclusive test.)"""
    collector.start()
    first = Traffic(devices=10, messages_per_device=40, events_per_message=10, region="east")
    publish(mosquitto.url, first.messages())
    mosquitto.stop()  # mid-stream: some messages are still un-acked or queued
    mosquitto.start()
    collector.wait_for(lambda m: m.get("collector_mqtt_connects_total", 0) >= 2, 30, "reconnected")
    second = Traffic(devices=10, messages_per_device=20, events_per_message=10, device_prefix="west")
    publish(mosquitto.url, second.messages())
    collector.wait_quiet(quiet_s=2.0)
    collector.stop_cleanly()
    assert count_events(store_url) == first.total_events + second.total_events
    assert differing_copies(store_url) == 0


def test_broker_restart_exclusive_subscription_loses_nothing(mosquitto, store_url: str,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    """With an exclusive subscription the broker restores it from persistence, so even
    messages published before the collector reconnects are kept for it."""
    collector = Collector(mosquitto.url, store_url, tmp_path,
                          extra_env={"STB_COLLECTOR__MQTT__SUBSCRIPTION": "exclusive",
                                     "STB_COLLECTOR__MQTT__RECONNECT_MIN_S": "2.0",
                                     "STB_COLLECTOR__MQTT__RECONNECT_MAX_S": "3.0"})
    try:
        collector.start()
        first = Traffic(devices=10, messages_per_device=20, events_per_message=10)
        publish(mosquitto.url, first.messages())
        mosquitto.stop()
        mosquitto.start()
        second = Traffic(devices=10, messages_per_device=20, events_per_message=10, device_prefix="west")
        publish(mosquitto.url, second.messages())  # before the collector is back
        collector.wait_for(lambda m: m.get("collector_mqtt_connects_total", 0) >= 2, 30, "reconnected")
        collector.wait_quiet(quiet_s=2.0)
        collector.stop_cleanly()
        assert count_events(store_url) == first.total_events + second.total_events
        assert differing_copies(store_url) == 0
    finally:
        collector.close()


def bad_inputs(sent: int) -> list[tuple[str, bytes, str]]:
    def env(**overrides: object) -> bytes:
        doc = {"v": 1, "dev": "bad-1", "hh": 9, "fw": "1", "seq0": 0, "sent": sent, "ev": [[5, sent, 1]]}
        doc.update(overrides)
        return msgpack.packb(doc)

    topic = "stb/v1/north/bad-1/events"
    return [
        (topic, b"\xc1\x00 definitely not msgpack", "not_msgpack"),
        (topic, msgpack.packb(["an", "array"]), "bad_envelope"),
        (topic, env(hh="nine"), "bad_envelope"),
        (topic, env(v=2), "unsupported_version"),
        (topic, b"\x91" + b"\x00" * (MAX_PAYLOAD_BYTES + 10), "oversize"),
        (topic, env(dev="someone-else"), "device_mismatch"),
        (topic, env(ev=[[5, sent, 1]] * 1001), "too_many_events"),
        (topic, env(ev=[[1, sent, "channel", 1, 1]]), "bad_event"),
        (topic, env(ev=[[42, sent]]), "unknown_kind"),
        (topic, env(ev=[[1, sent, 5, 1, 60, 9]]), "impossible_value"),
        ("stb/v1/UPPER/bad-1/events", env(), "bad_topic"),
    ]


def test_every_bad_input_class_is_dead_lettered(mosquitto, collector: Collector, store_url: str) -> None:  # type: ignore[no-untyped-def]
    collector.start()
    sent = int(time.time() * 1000)
    bad = bad_inputs(sent)
    good = encode_batch(device_id="good-1", household_id=1, firmware="1", seq0=0, sent_ms=sent,
                        events=[make_event("power", sent, 1)] * 3)
    publish(mosquitto.url, [(t, p) for t, p, _ in bad] + [("stb/v1/north/good-1/events", good)])
    collector.wait_for(lambda m: m.get('collector_rows_written_total{table="dead_letters"}', 0) >= len(bad)
                       and m.get('collector_rows_written_total{table="events"}', 0) >= 3, 30, "dead letters")
    assert collector.proc is not None and collector.proc.poll() is None  # still running
    collector.stop_cleanly()
    reasons = dead_letter_reasons(store_url)
    expected: dict[str, int] = {}
    for *_, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert reasons == expected
    assert count_events(store_url, final=False) == 3


def test_clickhouse_outage_under_load_loses_nothing(mosquitto, clickhouse_server, clickhouse_url: str,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    collector = Collector(mosquitto.url, clickhouse_url, tmp_path)
    try:
        collector.start()
        traffic = Traffic(devices=40, messages_per_device=30, events_per_message=20)
        messages = list(traffic.messages())
        third = len(messages) // 3
        publish(mosquitto.url, messages[:third])
        collector.wait_rows(third * 20)
        clickhouse_server.stop()
        publish(mosquitto.url, messages[third:2 * third])  # the broker keeps them: acks are withheld
        collector.wait_for(lambda m: m.get('collector_store_errors_total{retryable="true"}', 0) >= 2, 30,
                           "store errors while ClickHouse is down")
        clickhouse_server.start()
        publish(mosquitto.url, messages[2 * third:])
        collector.wait_quiet(quiet_s=2.0)
        collector.stop_cleanly()
        assert count_events(clickhouse_url) == traffic.total_events
        assert differing_copies(clickhouse_url) == 0
    finally:
        collector.close()
        if not clickhouse_server.is_running():
            clickhouse_server.start()


def test_starts_while_clickhouse_is_down_and_catches_up(mosquitto, clickhouse_server,  # type: ignore[no-untyped-def]
                                                         clickhouse_url: str, tmp_path: Path) -> None:
    clickhouse_server.stop()
    collector = Collector(mosquitto.url, clickhouse_url, tmp_path)
    try:
        collector.start(wait_connected=False)
        time.sleep(2)
        assert collector.proc.poll() is None  # waiting for the store, not crashed
        clickhouse_server.start()
        collector.wait_for(lambda m: m.get("collector_mqtt_connected") == 1, 60, "connected after store up")
        traffic = Traffic(devices=5, messages_per_device=5, events_per_message=5)
        publish(mosquitto.url, traffic.messages())
        collector.wait_rows(traffic.total_events)
        collector.stop_cleanly()
        assert count_events(clickhouse_url, final=False) == traffic.total_events
    finally:
        collector.close()
        if not clickhouse_server.is_running():
            clickhouse_server.start()


def test_two_workers_split_one_stream(mosquitto, clickhouse_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    collector = Collector(mosquitto.url, clickhouse_url, tmp_path, workers=2)
    try:
        collector.start()
        collector.wait_for(lambda _m: collector.metrics(1).get("collector_mqtt_connected") == 1, 30,
                           "second worker connected")
        traffic = Traffic(devices=40, messages_per_device=25, events_per_message=10)
        publish(mosquitto.url, traffic.messages())
        deadline = time.monotonic() + 60
        while count_events(clickhouse_url, final=False) < traffic.total_events and time.monotonic() < deadline:
            time.sleep(0.2)
        per_worker = [collector.metrics(i).get("collector_messages_received_total", 0) for i in (0, 1)]
        collector.stop_cleanly()
        assert count_events(clickhouse_url, final=False) == traffic.total_events  # each message to one member
        assert sum(per_worker) == 1000 and min(per_worker) > 100  # both members took a share
    finally:
        collector.close()


def test_a_dropped_events_table_holds_every_message_until_it_is_back(mosquitto, clickhouse_url: str,  # type: ignore[no-untyped-def]
                                                                     tmp_path: Path) -> None:
    """A store-wide refusal is not the messages' fault: nothing is dead-lettered or acknowledged."""
    collector = Collector(mosquitto.url, clickhouse_url, tmp_path,
                          extra_env={"STB_COLLECTOR__STORE__RETRY_MIN_S": "0.05",
                                     "STB_COLLECTOR__STORE__RETRY_MAX_S": "0.2"})
    store = open_warehouse(clickhouse_url)
    try:
        collector.start()
        store.execute(f"DROP TABLE {store.database}.events")
        traffic = Traffic(devices=4, messages_per_device=10, events_per_message=5)
        publish(mosquitto.url, traffic.messages())
        collector.wait_for(lambda m: m.get('collector_store_errors_total{retryable="false"}', 0) >= 10, 30,
                           "writes refused by the store")
        metrics = collector.metrics()
        assert metrics.get("collector_acks_total", 0) == 0
        assert metrics.get('collector_rows_written_total{table="dead_letters"}', 0) == 0
        store.execute(TABLES["events"].ddl(store.database))  # the operator restores the table
        collector.wait_rows(traffic.total_events)
        collector.stop_cleanly()
        assert count_events(clickhouse_url, final=False) == traffic.total_events
        assert dead_letter_reasons(clickhouse_url) == {}
    finally:
        store.close()
        collector.close()
