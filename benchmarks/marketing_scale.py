"""The marketing benchmark's scale part: one engine cycle for an audience of N households — resolved,
capped and published to a real broker — on ClickHouse 18.16 and mosquitto on this machine.

A synthetic store generated inside ClickHouse (INSERT ... SELECT from system.numbers): N profiled
households with a tag each (`interest.bench`), a subscriber record with consent on the box, and
one box that reported yesterday; a second campaign (lower priority, same audience, same product)
makes the caps decide for every household (one message a week per product: the second waits).
Nobody subscribes to the topics, so the broker acknowledges each PUBLISH without queueing it
(what a broker does for boxes that are online is the boxes' cost, not the sender's).
Target (issue 11): N = 1M in <= 60 s.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_seconds
from marketing import store as registry
from marketing.daemon import _publish
from marketing.engine import Engine
from marketing.settings import MarketingSettings
from stbcommon.localservers import ClickHouseServer, Mosquitto
from warehouse import Warehouse, open_warehouse
from warehouse.columns import KIND_ENUM

DAY = dt.date(2026, 11, 30)
NOW = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(12), dt.UTC)


def campaign(cid: str, priority: int) -> str:
    return (f'id = "{cid}"\nproduct = "bench"\nsegment = "interest.bench"\nholdout = 0.1\npriority = {priority}\n'
            '[[variants]]\nid = "a"\ntitle = "A {product} offer"\nbody = "Press OK"\naction = { type = "offer" }\n'
            '[[variants]]\nid = "b"\ntitle = "B {product} offer"\nbody = "Press OK now"\naction = { type = "offer" }\n')


def generate(store: Warehouse, households: int) -> float:
    db = store.database
    started = time.monotonic()
    store.execute(f"INSERT INTO {db}.household_profiles (household_id, day, minutes_28d, computed_ms, status, "
                  f"region) SELECT number + 1, toDate('{DAY}'), 600, 1, 'active', 'north' "
                  f"FROM system.numbers LIMIT {households}")
    store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                  f"SELECT number + 1, 'interest.bench', 'interest', 1, toDate('{DAY}'), 1 "
                  f"FROM system.numbers LIMIT {households}")
    store.execute(f"INSERT INTO {db}.subscribers (household_id, status, activated, products, region, contact_opt_in, "
                  f"imported_ms) SELECT number + 1, 'active', toDate('2024-01-01'), 'basic', 'north', 'stb', 1 "
                  f"FROM system.numbers LIMIT {households}")
    ts = int(NOW.timestamp() * 1000) - 20 * 3_600_000
    store.execute(f"INSERT INTO {db}.events (household_id, device_id, seq, kind, device_ts_ms, ts_ms, received_ms, "
                  f"region, firmware, channel_id, duration_s) SELECT number + 1, concat('stb-', toString(number + 1)), "
                  f"0, CAST('view' AS {KIND_ENUM}), {ts}, {ts}, {ts}, 'north', 'bench', 101, 600 "
                  f"FROM system.numbers LIMIT {households}")
    return time.monotonic() - started


def measure(tmp: Path, households: int) -> dict[str, Any]:
    with ClickHouseServer(tmp / "clickhouse") as server:
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        store = open_warehouse(server.url(f"bench_mkt_{households}"))
        try:
            store.migrate()
            row: dict[str, Any] = {"households": households, "generate_s": round(generate(store, households), 1)}
            registry.create(store, campaign("first", 9))
            registry.create(store, campaign("second", 1))
            settings = MarketingSettings()
            from dataclasses import replace

            from marketing.mqtt_settings import MarketingMqttSettings
            settings = replace(settings, mqtt=MarketingMqttSettings(url=broker.url))
            published: list[float] = []

            def publish(messages: Any) -> list[int]:
                started = time.monotonic()
                codes = _publish(settings, messages)
                published.append(time.monotonic() - started)
                return codes

            engine = Engine(settings, store, publish)
            cpu0 = cpu_seconds(server.proc.pid) if server.proc else 0.0
            started = time.monotonic()
            result = engine.cycle(NOW)
            row["cycle_s"] = round(time.monotonic() - started, 2)
            row["publish_s"] = round(sum(published), 2)
            row["clickhouse_cpu_s"] = round((cpu_seconds(server.proc.pid) if server.proc else 0.0) - cpu0, 1)
            row.update({f"status_{k}": v for k, v in result.statuses.items()})
            row["sent_per_s"] = round(result.statuses.get("sent", 0) / max(row["publish_s"], 1e-9))
            return row
        finally:
            store.execute(f"DROP DATABASE IF EXISTS {store.database}")
            store.close()
            broker.stop()
