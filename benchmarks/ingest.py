"""Ingest: how fast the real collector commits to a real ClickHouse server, against references.

Drain: N messages are queued in mosquitto for the collector's persistent session while it
is offline; the collector is then started and timed (process start included) until every
message is acknowledged, which it does only after the rows are committed. The same run
measures the same collector with the null store (receive, validate, acknowledge, write
nothing) at --workers 1 and 2 (each compared with its own worker count), and the naive
collector (benchmarks.naive_collector: paho, row-wise inserts) on the same backlog.
Live: firmware_sim.fastpub publishes from 2 processes while the collector runs.
CPU seconds of the collector, ClickHouse and the broker show where the 2 cores went.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result, cpu_seconds, table, tree_cpu_seconds
from collector.process import CollectorProcess
from firmware_sim.fastpub import publish_fast_parallel
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
        assert collector.proc is not None
        collector_cpu = tree_cpu_seconds(collector.proc.pid)
        assert collector.terminate() == 0
    finally:
        collector.close()
    return _figures(traffic, store_url, label, elapsed, collector_cpu, clickhouse_cpu, broker_cpu)


def _figures(traffic: Traffic, store_url: str, label: str, elapsed: float, collector_cpu: float,
             clickhouse_cpu: float, broker_cpu: float) -> dict[str, float]:
    """One drain's row, after checking that the store holds exactly what was published."""
    committed = traffic.total_events
    if not store_url.startswith("null:"):
        wh = open_warehouse(store_url)
        committed = int(wh.query_rows(f"SELECT count() FROM {wh.database}.events FINAL")[0][0])
        wh.close()
        if committed != traffic.total_events:
            raise AssertionError(f"{label}: {committed} rows committed, {traffic.total_events} published")
    return {"seconds": round(elapsed, 2), "events_per_s": traffic.total_events / elapsed,
            "messages_per_s": traffic.total_messages / elapsed, "committed": committed,
            "collector_cpu_s": round(collector_cpu, 2), "clickhouse_cpu_s": round(clickhouse_cpu, 2),
            "broker_cpu_s": round(broker_cpu, 2)}


def naive_drain(mqtt: Mosquitto, store_url: str, traffic: Traffic, clickhouse_pid: int) -> dict[str, float]:
    """The same drain with benchmarks.naive_collector (paho, row-wise inserts): the reference."""
    import subprocess
    import sys

    group = f"naive{time.monotonic_ns() % 10**9}"
    wh = open_warehouse(store_url)
    wh.migrate()
    command = [sys.executable, "-m", "benchmarks.naive_collector", mqtt.url, store_url, group]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as first:  # creates the persistent session
        assert first.stdout is not None
        for line in first.stdout:
            if line.strip() == "subscribed":
                break
        first.kill()
    publish_parallel(mqtt.url, traffic, processes=2)
    started = time.monotonic()
    cpu0 = cpu_seconds(clickhouse_pid), cpu_seconds(_pid(mqtt))
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as naive:
        try:
            assert naive.stdout is not None
            for line in naive.stdout:
                if line.strip().isdigit() and int(line) >= traffic.total_messages:
                    break
            elapsed = time.monotonic() - started
            collector_cpu = cpu_seconds(naive.pid)
        finally:
            naive.kill()
    clickhouse_cpu, broker_cpu = cpu_seconds(clickhouse_pid) - cpu0[0], cpu_seconds(_pid(mqtt)) - cpu0[1]
    wh.close()
    return _figures(traffic, store_url, "naive", elapsed, collector_cpu, clickhouse_cpu, broker_cpu)


def _pid(server: Mosquitto | ClickHouseServer) -> int:
    assert server.proc is not None
    return server.proc.pid


def live(mqtt: Mosquitto, store_url: str, work: Path, traffic: Traffic, workers: int) -> dict[str, float]:
    """A load generator that outruns the collector (firmware_sim.fastpub, 2 processes) publishes
    while the collector runs: committed rate = events / (publishing start -> last row committed);
    lag = how long after the generator's last PUBACK the collector had committed everything."""
    collector = CollectorProcess(mqtt.url, store_url, work, group=f"live{time.monotonic_ns() % 10**9}",
                                 workers=workers, extra_env={"STB_COLLECTOR__LOG__LEVEL": "WARNING"})
    rows = lambda: sum(collector.metrics(i).get('collector_rows_written_total{table="events"}', 0.0)  # noqa: E731
                       for i in range(workers))
    try:
        collector.start()
        collector.wait_for(lambda _m: all(collector.metrics(i).get("collector_mqtt_connected") == 1
                                          for i in range(workers)), 60, "every worker connected")
        started = time.time()
        run = publish_fast_parallel(mqtt.url, traffic, processes=2)
        published_at = time.time()
        collector.wait_for(lambda _m: rows() >= traffic.total_events, 600, "every published event committed")
        committed_at = time.time()
        assert collector.terminate() == 0
    finally:
        collector.close()
    return {"events": traffic.total_events, "publish_s": round(run.seconds, 2),
            "publish_events_per_s": traffic.total_events / run.seconds,
            "committed_events_per_s": traffic.total_events / (committed_at - started),
            "lag_s": round(committed_at - published_at, 2)}


def run(args: argparse.Namespace) -> Result:
    sizes = [(1, 20_000 if args.quick else 100_000), (50, 4_000 if args.quick else 40_000)]
    result = Result("ingest", {"mode": "drain", "quick": args.quick,
                               "batches": [{"events_per_message": e, "messages": n} for e, n in sizes]})
    live_rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "mosquitto") as mqtt, ClickHouseServer(work / "clickhouse") as clickhouse:
            for events_per_message, messages in sizes:
                traffic = Traffic(devices=500, messages_per_device=messages // 500,
                                  events_per_message=events_per_message)
                naive = naive_drain(mqtt, clickhouse.url(f"naive{events_per_message}"), traffic, _pid(clickhouse))
                result.add(events_per_message=events_per_message, messages=traffic.total_messages,
                           store="clickhouse", workers="naive", **naive, ratio_to_null=None, ratio_to_naive=1.0)
                reference: dict[int, float] = {}
                for workers in (1, 2):  # each store compared with the null store at the same worker count
                    for store, url in (("null", "null://"),
                                       ("clickhouse", clickhouse.url(f"b{events_per_message}w{workers}"))):
                        figures = drain(mqtt, url, work, traffic, workers, f"{store} w{workers}", _pid(clickhouse))
                        if store == "null":
                            reference[workers] = figures["events_per_s"]
                        result.add(events_per_message=events_per_message, messages=traffic.total_messages,
                                   store=store, workers=workers, **figures,
                                   ratio_to_null=figures["events_per_s"] / reference[workers],
                                   ratio_to_naive=figures["events_per_s"] / naive["events_per_s"])
            live_traffic = Traffic(devices=500, messages_per_device=8 if args.quick else 80, events_per_message=50)
            for workers in (1, 2):
                figures = live(mqtt, clickhouse.url(f"live{workers}"), work, live_traffic, workers)
                live_rows.append({"workers": workers, "events_per_message": 50, **figures})
    stored = [r for r in result.rows if r["store"] == "clickhouse" and r["workers"] != "naive"]
    best = {e: max((r for r in stored if r["events_per_message"] == e), key=lambda r: r["events_per_s"])
            for e, _ in sizes}
    result.params["live"] = live_rows
    result.headline = {
        "live_committed_events_per_s": round(max(float(str(r["committed_events_per_s"])) for r in live_rows)),
        "live_max_lag_s": max(float(str(r["lag_s"])) for r in live_rows),
        "drain_50_events_per_s": round(best[50]["events_per_s"]),
        "drain_50_workers": best[50]["workers"],
        "drain_50_ratio_to_naive": round(best[50]["ratio_to_naive"], 2),
        "drain_1_messages_per_s": round(best[1]["messages_per_s"]),
        "ratio_to_null_store_50": round(best[50]["ratio_to_null"], 2),
        "targets": {"drain_50_events_per_s": 1_000_000, "drain_50_ratio_to_naive": 2.5,
                    "drain_1_messages_per_s": 100_000, "ratio_to_null": 0.8},
    }
    print()
    print(table(result.rows, ["events_per_message", "messages", "store", "workers", "seconds", "events_per_s",
                              "messages_per_s", "collector_cpu_s", "clickhouse_cpu_s", "broker_cpu_s",
                              "ratio_to_null", "ratio_to_naive"]))
    print("\nlive (firmware_sim.fastpub, 2 publisher processes, while the collector runs):")
    print(table(live_rows, ["workers", "events_per_message", "events", "publish_s", "publish_events_per_s",
                            "committed_events_per_s", "lag_s"]))
    return result
