"""Ingest: how fast the real collector commits a queued backlog to a real ClickHouse server.

Drain: N messages are queued in mosquitto for the collector's persistent session while it
is offline; the collector is then started and timed (process start included) until every
message is acknowledged, which it does only after the rows are committed. The same run
measures the same collector with the null store (receive, validate, acknowledge, write
nothing) as the reference, at --workers 1 and 2 (each compared with its own worker count).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result, cpu_seconds, table
from collector.process import CollectorProcess
from firmware_sim.loadgen import Traffic, publish_parallel
from stbcommon.localservers import ClickHouseServer, Mosquitto
from warehouse import open_warehouse


def drain(mqtt: Mosquitto, store_url: str, work: Path, traffic: Traffic, workers: int, label: str,
          clickhouse_pid: int) -> dict[str, float]:
    group = f"bench{time.monotonic_ns() % 10**9}"
    collector = CollectorProcess(mqtt.url, store_url, work, group=group, workers=workers,
                                 extra_env={"STB_COLLECTOR__LOG__LEVEL": "WARNING"})
    try:
        collector.start()  # creates the persistent sessions, then goes away
        collector.wait_for(lambda _m: all(collector.metrics(i).get("collector_mqtt_connected") == 1
                                          for i in range(workers)), 60, "every worker connected")
        assert collector.terminate() == 0
        publish_parallel(mqtt.url, traffic, processes=2)
        started = time.monotonic()
        # Where the two cores go: the broker and ClickHouse share them with the collector.
        cpu0 = cpu_seconds(clickhouse_pid), cpu_seconds(_pid(mqtt))
        collector.start(wait_connected=False)
        collector.wait_for(lambda _m: sum(collector.metrics(i).get("collector_acks_total", 0)
                                          for i in range(workers)) >= traffic.total_messages,
                           900, "every message acknowledged")
        elapsed = time.monotonic() - started
        clickhouse_cpu, broker_cpu = cpu_seconds(clickhouse_pid) - cpu0[0], cpu_seconds(_pid(mqtt)) - cpu0[1]
        assert collector.terminate() == 0
    finally:
        collector.close()
    committed = traffic.total_events
    if not store_url.startswith("null:"):
        wh = open_warehouse(store_url)
        committed = int(wh.query_rows(f"SELECT count() FROM {wh.database}.events FINAL")[0][0])
        wh.close()
        if committed != traffic.total_events:
            raise AssertionError(f"{label}: {committed} rows committed, {traffic.total_events} published")
    return {"seconds": round(elapsed, 2), "events_per_s": traffic.total_events / elapsed,
            "messages_per_s": traffic.total_messages / elapsed, "committed": committed,
            "clickhouse_cpu_s": round(clickhouse_cpu, 2), "broker_cpu_s": round(broker_cpu, 2)}


def _pid(server: Mosquitto | ClickHouseServer) -> int:
    assert server.proc is not None
    return server.proc.pid


def live(mqtt: Mosquitto, store_url: str, work: Path, households: int, days: int, workers: int) -> dict[str, float]:
    """Simulator processes publish at full speed through real agents while the collector
    runs; sustained rate = rows committed while the fleet ran / its duration; lag = how long
    after the last PUBACK to the fleet the collector had committed everything."""
    import datetime as dt
    import threading

    from firmware_sim.fleet import FleetPlan, run_fleet

    collector = CollectorProcess(mqtt.url, store_url, work, group=f"live{time.monotonic_ns() % 10**9}",
                                 workers=workers, extra_env={"STB_COLLECTOR__LOG__LEVEL": "WARNING"})
    rows = lambda: sum(collector.metrics(i).get('collector_rows_written_total{table="events"}', 0.0)  # noqa: E731
                       for i in range(workers))
    plan = FleetPlan(mqtt_url=mqtt.url, households=households, days=days, seed=5, start=dt.date(2026, 1, 5),
                     processes=2, spool_root=str(work / f"spools-{workers}"))
    totals: dict[str, int] = {}
    try:
        collector.start()
        collector.wait_for(lambda _m: all(collector.metrics(i).get("collector_mqtt_connected") == 1
                                          for i in range(workers)), 60, "every worker connected")
        fleet = threading.Thread(target=lambda: totals.update(run_fleet(plan)), name="fleet")
        started = time.monotonic()
        fleet.start()
        fleet.join()
        fleet_s = time.monotonic() - started
        committed_during = rows()
        collector.wait_for(lambda _m: rows() >= totals["published"], 300, "every published event committed")
        lag_s = time.monotonic() - started - fleet_s
        assert collector.terminate() == 0
    finally:
        collector.close()
    return {"events": totals["published"], "fleet_s": round(fleet_s, 2), "publish_events_per_s":
            totals["published"] / fleet_s, "committed_events_per_s": committed_during / fleet_s,
            "lag_s": round(lag_s, 2)}


def run(args: argparse.Namespace) -> Result:
    sizes = [(1, 20_000 if args.quick else 100_000), (50, 4_000 if args.quick else 40_000)]
    result = Result("ingest", {"mode": "drain", "quick": args.quick,
                               "batches": [{"events_per_message": e, "messages": n} for e, n in sizes]})
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "mosquitto") as mqtt, ClickHouseServer(work / "clickhouse") as clickhouse:
            for events_per_message, messages in sizes:
                traffic = Traffic(devices=500, messages_per_device=messages // 500,
                                  events_per_message=events_per_message)
                reference: dict[int, float] = {}
                for workers in (1, 2):  # each store compared with the null store at the same worker count
                    for store, url in (("null", "null://"),
                                       ("clickhouse", clickhouse.url(f"b{events_per_message}w{workers}"))):
                        figures = drain(mqtt, url, work, traffic, workers, f"{store} w{workers}", _pid(clickhouse))
                        if store == "null":
                            reference[workers] = figures["events_per_s"]
                        result.add(events_per_message=events_per_message, messages=traffic.total_messages,
                                   store=store, workers=workers, **figures,
                                   ratio_to_null=figures["events_per_s"] / reference[workers])
            hh, days = (300, 1) if args.quick else (3000, 3)
            for workers in (1, 2):
                figures = live(mqtt, clickhouse.url(f"live{workers}"), work, hh, days, workers)
                result.add(events_per_message="live", messages=0, store="clickhouse", workers=workers,
                           households=hh, days=days, **figures)
    live_rows = [r for r in result.rows if r["events_per_message"] == "live"]
    result.rows = [r for r in result.rows if r["events_per_message"] != "live"]
    best = {e: max((r for r in result.rows if r["events_per_message"] == e and r["store"] == "clickhouse"),
                   key=lambda r: r["events_per_s"]) for e, _ in sizes}
    result.params["live"] = live_rows
    result.headline = {
        "live_committed_events_per_s": round(max(r["committed_events_per_s"] for r in live_rows)),
        "live_max_lag_s": max(r["lag_s"] for r in live_rows),
        "drain_50_events_per_s": round(best[50]["events_per_s"]),
        "drain_50_workers": best[50]["workers"],
        "drain_1_messages_per_s": round(best[1]["messages_per_s"]),
        "ratio_to_null_store_50": round(best[50]["ratio_to_null"], 2),
        "targets": {"drain_50_events_per_s": 400_000, "drain_1_messages_per_s": 10_000, "ratio_to_null": 0.7},
    }
    print()
    print(table(result.rows, ["events_per_message", "messages", "store", "workers", "seconds", "events_per_s",
                               "clickhouse_cpu_s", "broker_cpu_s",
                              "messages_per_s", "ratio_to_null"]))
    print("\nlive (simulated fleet through real agents, publishing at full speed):")
    print(table(live_rows, ["workers", "households", "days", "events", "fleet_s", "publish_events_per_s",
                            "committed_events_per_s", "lag_s"]))
    return result
