"""Ingest: how fast the real collector commits to a real ClickHouse server, against references.

Drain: N messages are queued in mosquitto (by firmware_sim.fastpub) for the collector's
persistent session while it is offline; the collector is then started and timed until every
message is acknowledged, which it does only after the rows are committed: from process start
(`seconds`), and from the first message the pipeline takes (`steady_*`; `startup_s` is the
rest: imports, store connection and migration, MQTT connect). The same run measures the same
collector with the null store (receive, validate, acknowledge, write nothing), with 50-event
messages also at --workers 2 (each compared with its own worker count), and the naive
collector (benchmarks.naive_collector: paho, row-wise inserts) on the 50-event backlog.
One-event messages: a backlog of 1,000,000, so that start-up does not dominate.
Live: firmware_sim.fastpub publishes from 2 processes while the collector runs.

The CPU budget: CPU-seconds per million events of the collector, ClickHouse and the broker
(all on the same 2 cores), and the rate they allow at best: 2 cores / CPU-s per event.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.common import Result, cpu_seconds, table, tree_cpu_seconds
from collector.process import CollectorProcess
from firmware_sim.fastpub import publish_fast_parallel
from firmware_sim.loadgen import Traffic
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
        collector.stop_cleanly()
        publish_fast_parallel(mqtt.url, traffic, processes=2)
        started = time.monotonic()
        # Where the two cores go: the broker and ClickHouse share them with the collector.
        cpu0 = cpu_seconds(clickhouse_pid), cpu_seconds(_pid(mqtt))
        collector.start(wait_connected=False)
        first = _first_message(collector, workers)
        collector.wait_for(lambda _m: sum(collector.metrics(i).get("collector_acks_total", 0)
                                          for i in range(workers)) >= traffic.total_messages,
                           900, "every message acknowledged")
        elapsed = time.monotonic() - started
        clickhouse_cpu, broker_cpu = cpu_seconds(clickhouse_pid) - cpu0[0], cpu_seconds(_pid(mqtt)) - cpu0[1]
        assert collector.proc is not None
        collector_cpu = tree_cpu_seconds(collector.proc.pid)
        collector.stop_cleanly()
    finally:
        collector.close()
    return _figures(traffic, store_url, label, elapsed, collector_cpu, clickhouse_cpu, broker_cpu,
                    startup=first - started)


def _first_message(collector: CollectorProcess, workers: int) -> float:
    """When the pipeline took its first message (polled every 10 ms: start-up is ~1 s)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(collector.metrics(i).get("collector_messages_received_total", 0) > 0 for i in range(workers)):
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError("no message taken within 120 s\n" + collector.log_tail())


def _figures(traffic: Traffic, store_url: str, label: str, elapsed: float, collector_cpu: float,
             clickhouse_cpu: float, broker_cpu: float, startup: float | None = None) -> dict[str, float]:
    """One drain's row, after checking that the store holds exactly what was published."""
    committed = traffic.total_events
    if not store_url.startswith("null:"):
        wh = open_warehouse(store_url)
        committed = int(wh.query_rows(f"SELECT count() FROM {wh.database}.events FINAL")[0][0])
        wh.close()
        if committed != traffic.total_events:
            raise AssertionError(f"{label}: {committed} rows committed, {traffic.total_events} published")
    figures = {"seconds": round(elapsed, 2), "events_per_s": traffic.total_events / elapsed,
               "messages_per_s": traffic.total_messages / elapsed, "committed": committed,
               "collector_cpu_s": round(collector_cpu, 2), "clickhouse_cpu_s": round(clickhouse_cpu, 2),
               "broker_cpu_s": round(broker_cpu, 2)}
    if startup is not None:
        steady = elapsed - startup
        figures.update(startup_s=round(startup, 2), steady_events_per_s=traffic.total_events / steady,
                       steady_messages_per_s=traffic.total_messages / steady)
    return figures


def budget(row: dict[str, object]) -> dict[str, object]:
    """CPU-seconds per million events of each process on the 2 cores, and the rate they allow."""
    per_million = {who: float(str(row[f"{who}_cpu_s"])) / int(str(row["committed"])) * 1e6
                   for who in ("collector", "clickhouse", "broker")}
    total = sum(per_million.values())
    return {"drain": row["drain"], "events_per_message": row["events_per_message"], "messages": row["messages"],
            "store": row["store"],
            "workers": row["workers"], **{f"{who}_cpu_s_per_M": round(v, 2) for who, v in per_million.items()},
            "total_cpu_s_per_M": round(total, 2), "bound_events_per_s": round(2 / (total / 1e6)) if total else None,
            "measured_events_per_s": round(float(str(row["events_per_s"])))}


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
    publish_fast_parallel(mqtt.url, traffic, processes=2)
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
        collector.stop_cleanly()
    finally:
        collector.close()
    return {"events": traffic.total_events, "publish_s": round(run.seconds, 2),
            "publish_events_per_s": traffic.total_events / run.seconds,
            "committed_events_per_s": traffic.total_events / (committed_at - started),
            "lag_s": round(committed_at - published_at, 2)}


class Drain(NamedTuple):
    name: str                    # "one-event", "fifty-event", "fifty-event-long": rows are picked by it
    events_per_message: int
    messages: int
    worker_counts: tuple[int, ...]
    with_naive: bool


def run(args: argparse.Namespace) -> Result:
    # The one-event drain is the single-process target (>= 100k msg/s); the naive reference and
    # --workers 2 are the 50-event comparisons (a naive drain of 1M one-event messages alone would
    # take a minute); the long 50-event drain (10M events, one process) is the 1M events/s target
    # without start-up weighing on it: 40,000 messages drain in ~3 s, a third of it the process start.
    drains = [Drain("one-event", 1, 20_000 if args.quick else 1_000_000, (1,), False),
              Drain("fifty-event", 50, 4_000 if args.quick else 40_000, (1, 2), True)]
    if not args.quick:
        drains.append(Drain("fifty-event-long", 50, 200_000, (1,), False))
    result = Result("ingest", {"mode": "drain", "quick": args.quick,
                               "batches": [{"events_per_message": d.events_per_message, "messages": d.messages}
                                           for d in drains]})
    live_rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "mosquitto") as mqtt, ClickHouseServer(work / "clickhouse") as clickhouse:
            for d in drains:
                traffic = Traffic(devices=500, messages_per_device=d.messages // 500,
                                  events_per_message=d.events_per_message)
                naive_rate = None
                if d.with_naive:
                    naive = naive_drain(mqtt, clickhouse.url(f"naive{d.events_per_message}"), traffic,
                                        _pid(clickhouse))
                    naive_rate = naive["events_per_s"]
                    result.add(drain=d.name, events_per_message=d.events_per_message, messages=traffic.total_messages,
                               store="clickhouse", workers="naive", **naive, ratio_to_null=None, ratio_to_naive=1.0)
                reference: dict[int, float] = {}
                for workers in d.worker_counts:  # each store compared with the null store at the same worker count
                    for store, url in (("null", "null://"),
                                       ("clickhouse", clickhouse.url(f"b{d.events_per_message}w{workers}"))):
                        figures = drain(mqtt, url, work, traffic, workers, f"{store} w{workers}", _pid(clickhouse))
                        if store == "null":
                            reference[workers] = figures["events_per_s"]
                        result.add(drain=d.name, events_per_message=d.events_per_message,
                                   messages=traffic.total_messages, store=store, workers=workers, **figures,
                                   ratio_to_null=figures["events_per_s"] / reference[workers],
                                   ratio_to_naive=figures["events_per_s"] / naive_rate if naive_rate else None)
            live_traffic = Traffic(devices=500, messages_per_device=8 if args.quick else 80, events_per_message=50)
            for workers in (1, 2):
                figures = live(mqtt, clickhouse.url(f"live{workers}"), work, live_traffic, workers)
                live_rows.append({"workers": workers, "events_per_message": 50, **figures})
    def rows(name: str, store: str) -> list[dict[str, Any]]:
        return [r for r in result.rows if r["drain"] == name and r["store"] == store]

    by_events = ((1, "one-event"), (50, "fifty-event"))
    stored = {e: [r for r in rows(name, "clickhouse") if r["workers"] != "naive"] for e, name in by_events}
    best = {e: max(stored[e], key=lambda r: r["events_per_s"]) for e, _ in by_events}
    long = rows("fifty-event-long", "clickhouse")
    null_w1 = {e: next(r for r in rows(name, "null") if r["workers"] == 1) for e, name in by_events}
    budgets = [budget(r) for r in result.rows if r["store"] == "clickhouse"]
    result.params["live"] = live_rows
    result.params["cpu_budget"] = budgets
    one = next(r for r in stored[1] if r["workers"] == 1)
    fifty = next(b for b in budgets if b["drain"] == "fifty-event" and b["workers"] == 1)
    result.headline = {
        "live_committed_events_per_s": round(max(float(str(r["committed_events_per_s"])) for r in live_rows)),
        "live_max_lag_s": max(float(str(r["lag_s"])) for r in live_rows),
        "drain_50_events_per_s": round(best[50]["events_per_s"]),
        "drain_50_workers": best[50]["workers"],
        "drain_50_ratio_to_naive": round(best[50]["ratio_to_naive"], 2),
        "drain_50_null_store_events_per_s": round(null_w1[50]["events_per_s"]),
        "drain_50_cpu_s_per_M_events": {k: fifty[f"{k}_cpu_s_per_M"] for k in ("collector", "clickhouse", "broker")},
        "drain_50_cpu_bound_events_per_s": fifty["bound_events_per_s"],
        "drain_1_messages_per_s": round(one["messages_per_s"]),
        "drain_1_steady_messages_per_s": round(one["steady_messages_per_s"]),
        "drain_1_startup_s": one["startup_s"],
        "drain_1_null_store_messages_per_s": round(null_w1[1]["messages_per_s"]),
        "ratio_to_null_store_50": round(best[50]["ratio_to_null"], 2),
        **({"drain_50_long_messages": long[0]["messages"], "drain_50_long_events_per_s": round(long[0]["events_per_s"]),
            "drain_50_long_steady_events_per_s": round(long[0]["steady_messages_per_s"] * 50),
            "drain_50_long_ratio_to_null": round(long[0]["ratio_to_null"], 2)} if long else {}),
        "targets": {"drain_50_events_per_s": 1_000_000, "drain_50_ratio_to_naive": 5.0,
                    "drain_1_messages_per_s": 100_000, "ratio_to_null": 0.8},
    }
    print()
    print(table(result.rows, ["events_per_message", "messages", "store", "workers", "seconds", "events_per_s",
                              "messages_per_s", "startup_s", "steady_messages_per_s", "collector_cpu_s",
                              "clickhouse_cpu_s", "broker_cpu_s", "ratio_to_null", "ratio_to_naive"]))
    print("\nCPU budget (CPU-seconds per million events on the shared 2 cores; bound = 2 cores / the sum):")
    print(table(budgets, ["events_per_message", "messages", "store", "workers", "collector_cpu_s_per_M",
                          "clickhouse_cpu_s_per_M", "broker_cpu_s_per_M", "total_cpu_s_per_M", "bound_events_per_s",
                          "measured_events_per_s"]))
    print(f"null store (w1): {null_w1[50]['events_per_s']:,.0f} events/s with 50-event messages, "
          f"{null_w1[1]['messages_per_s']:,.0f} messages/s with 1-event messages")
    print("\nlive (firmware_sim.fastpub, 2 publisher processes, while the collector runs):")
    print(table(live_rows, ["workers", "events_per_message", "events", "publish_s", "publish_events_per_s",
                            "committed_events_per_s", "lag_s"]))
    return result
