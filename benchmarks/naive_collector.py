"""The naive reference collector the ingest benchmark compares against: what one writes in an
afternoon with paho and clickhouse-driver. One process, paho's own network loop, msgpack,
one tuple per event, row-wise INSERT every 0.3 s or 50k rows, manual acks after the insert.
It stores the same columns as the real collector (so both do the same work in ClickHouse),
with no validation and no dead letters.

    python -m benchmarks.naive_collector MQTT_URL CLICKHOUSE_URL GROUP
Prints "subscribed" once the broker has the subscription, then the running total of
acknowledged messages, one number a line.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import urlsplit

import msgpack
import paho.mqtt.client as mqtt
from clickhouse_driver import Client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from proto.telemetry import FIELD_COLUMNS, KINDS
from warehouse.columns import EVENT_COLUMNS

FIELDS = list(FIELD_COLUMNS)
SLOTS = {code: [FIELDS.index(f.column) for f in spec.fields] for code, spec in KINDS.items()}
DEFAULTS = [f.default for f in FIELD_COLUMNS.values()]


def main(mqtt_url: str, store_url: str, group: str) -> None:
    store = urlsplit(store_url)
    ch = Client(store.hostname or "127.0.0.1", port=store.port or 9000)
    sql = f"INSERT INTO {store.path.strip('/')}.events ({', '.join(EVENT_COLUMNS)}) VALUES"
    rows: list[tuple[Any, ...]] = []
    mids: list[int] = []

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = msgpack.unpackb(msg.payload, raw=False)
        received = int(time.time() * 1000)
        region = msg.topic.split("/")[2]
        for i, event in enumerate(doc["ev"]):
            fields = list(DEFAULTS)
            for slot, value in zip(SLOTS[event[0]], event[2:], strict=False):
                fields[slot] = value
            rows.append((doc["hh"], doc["dev"], doc["seq0"] + i, event[0], event[1], event[1], received,
                         region, doc["fw"], *fields))
        mids.append(msg.mid)

    url = urlsplit(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{group}-naive", protocol=mqtt.MQTTv5,
                         manual_ack=True)
    client.on_message = on_message
    client.on_subscribe = lambda *_: print("subscribed", flush=True)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval, props.ReceiveMaximum = 3600, 65535
    client.connect(url.hostname or "127.0.0.1", url.port or 1883, clean_start=False, properties=props)
    client.subscribe(f"$share/{group}/stb/v1/+/+/events", qos=1)
    acked, last_flush = 0, time.monotonic()
    while True:
        client.loop(0.01)
        if rows and (len(rows) >= 50_000 or time.monotonic() - last_flush >= 0.3):
            ch.execute(sql, rows)
            for mid in mids:
                client.ack(mid, 1)
            acked += len(mids)
            rows.clear()
            mids.clear()
            print(acked, flush=True)
        if not rows:
            last_flush = time.monotonic()


if __name__ == "__main__":
    main(*sys.argv[1:4])
