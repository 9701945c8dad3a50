"""`make demo` (`python -m demo`): every layer on a simulated fleet — broker, collector (embedded chdb),
CRM, recommender — then a summary.

It lives in its own package above every room it drives (the simulator stays a world model).
Everything runs locally in one folder and is stopped at the end (or on Ctrl-C): a
mosquitto on a free port, the collector as a child process, the fleet's agents.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from collector.process import CollectorProcess
from firmware_sim.__main__ import load_guide
from firmware_sim.fleet import FleetPlan, build_world, run_fleet, today_utc
from firmware_sim.households import Households
from stbcommon.localservers import Mosquitto

_EVENTS_ROWS = 'collector_rows_written_total{table="events"}'
_DEAD_ROWS = 'collector_rows_written_total{table="dead_letters"}'

SUMMARY_QUERIES = {
    "Top channels by watch time": """
        SELECT c.name AS channel, round(sum(e.duration_s) / 3600, 1) AS hours, uniqExact(e.household_id) AS homes
        FROM (SELECT channel_id, duration_s, household_id FROM {db}.events FINAL WHERE kind = 'view') AS e
        ANY LEFT JOIN (SELECT channel_id, name FROM {db}.channels FINAL) AS c USING channel_id
        GROUP BY channel ORDER BY hours DESC LIMIT 5""",
    "Top programmes by watch time": """
        SELECT p.title AS title, round(sum(e.duration_s) / 3600, 1) AS hours, uniqExact(e.household_id) AS homes
        FROM (SELECT programme_id, duration_s, household_id FROM {db}.events FINAL
              WHERE kind = 'view' AND programme_id != 0) AS e
        ANY INNER JOIN (SELECT programme_id, content_id, title FROM {db}.programmes FINAL) AS p USING programme_id
        GROUP BY title ORDER BY hours DESC LIMIT 5""",
    "Viewing by daypart (UTC)": """
        SELECT multiIf(h < 6, '1 night 00-06', h < 12, '2 morning 06-12', h < 17, '3 daytime 12-17',
                       h < 19, '4 early evening 17-19', h < 23, '5 prime time 19-23', '6 late 23-24') AS daypart,
               round(sum(duration_s) / 3600, 1) AS hours
        FROM (SELECT toHour(time) AS h, duration_s FROM {db}.events FINAL WHERE kind = 'view')
        GROUP BY daypart ORDER BY daypart""",
    "Events by kind": "SELECT kind, count() AS events FROM {db}.events FINAL GROUP BY kind ORDER BY events DESC",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument("--households", type=int, default=2000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--dir", default="demo-data", help="working folder (emptied first)")
    args = p.parse_args(argv)

    work = Path(args.dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store = f"chdb://{work / 'chdb'}"
    plan = FleetPlan(mqtt_url="", households=args.households, days=args.days, seed=args.seed, start=today_utc(),
                     processes=args.processes, spool_root=str(work / "spools"))
    print(f"demo: {args.households:,} households, {args.days} days from {plan.start}, seed {args.seed}; "
          f"working in {work}", flush=True)
    broker = Mosquitto(work / "mosquitto")
    collector: CollectorProcess | None = None
    try:
        broker.start()
        epg, households = build_world(plan)
        from firmware_sim.truth import write_truth

        write_truth(work / "truth.npz", epg, households)
        load_guide(epg, store)  # before the collector opens the embedded store (one process at a time)
        collector = CollectorProcess(broker.url, store, work, group="demo")
        collector.start()
        print(f"broker {broker.url}, collector metrics http://127.0.0.1:{collector.metrics_port}/metrics",
              flush=True)
        totals = _run_with_progress(FleetPlan(**{**plan.__dict__, "mqtt_url": broker.url}), collector)
        collector.wait_for(lambda m: m.get(_EVENTS_ROWS, 0) >= totals["published"],
                           120, "every published event committed")
        m = collector.metrics()
        rows, dead = m.get(_EVENTS_ROWS, 0), m.get(_DEAD_ROWS, 0)
        print(f"collector: {rows:,.0f} rows committed from {m.get('collector_messages_received_total', 0):,.0f} "
              f"messages, {dead:,.0f} dead letters", flush=True)
        if collector.terminate() != 0:
            print("collector did not stop cleanly:\n" + collector.log_tail(), file=sys.stderr)
            return 1
        collector = None
        _summary(store)
        _crm(store, work, plan, households)
        _recommendations(store, work, plan)
        print(f"\nground truth: {work / 'truth.npz'}; data: {work / 'chdb'} (chdb); "
              f"collector log: {work}", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if collector is not None:
            collector.close()
        broker.stop()


def _run_with_progress(plan: FleetPlan, collector: CollectorProcess) -> dict[str, int]:
    result: dict[str, Any] = {}

    def fleet() -> None:
        try:
            result["totals"] = run_fleet(plan)
        except BaseException as exc:  # reported on the main thread
            result["error"] = exc

    thread = threading.Thread(target=fleet, name="fleet")
    started = time.monotonic()
    thread.start()
    last = (started, 0.0)
    tty = sys.stdout.isatty()
    while thread.is_alive():
        thread.join(1.0 if tty else 5.0)
        last = _progress_line(collector, *last, newline=not tty)
    if tty:
        print(flush=True)
    if "error" in result:
        raise result["error"]
    totals: dict[str, int] = result["totals"]
    print(f"fleet: {totals['devices']:,} boxes published {totals['published']:,} events in "
          f"{totals['batches']:,} batches ({totals['dropped']} dropped)", flush=True)
    return totals


def _progress_line(collector: CollectorProcess, since: float, rows_before: float,
                   newline: bool = False) -> tuple[float, float]:
    m = collector.metrics()
    now = time.monotonic()
    rows, dead = m.get(_EVENTS_ROWS, 0.0), m.get(_DEAD_ROWS, 0.0)
    rate = (rows - rows_before) / max(now - since, 1e-6)
    end = "\n" if newline else "\r"
    print(f"  {rate:>9,.0f} events/s   {rows:>11,.0f} rows stored   {dead:,.0f} dead letters   ", end=end,
          flush=True)
    return now, rows


def _summary(store_url: str) -> None:
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        total = wh.query_rows(f"SELECT count(), uniqExact(household_id), uniqExact(device_id) "
                              f"FROM {wh.database}.events FINAL")[0]
        print(f"\n== stored: {total[0]:,} events from {total[1]:,} households, {total[2]:,} boxes")
        for title, sql in SUMMARY_QUERIES.items():
            rows = wh.query_rows(sql.format(db=wh.database))
            print(f"\n== {title}")
            for row in rows:
                print("   " + "  ".join(f"{v:>10,}" if isinstance(v, int | float) and not isinstance(v, bool)
                                        else f"{v!s:<34}" for v in row))
    finally:
        wh.close()


def _crm(store_url: str, work: Path, plan: FleetPlan, households: Households) -> None:
    """Subscriber extract, profiles and tags, then yesterday's top programmes and the football fans
    (through `python -m crm`, as an operator would: the simulator never imports the CRM)."""
    import datetime as dt
    import subprocess

    from firmware_sim.subscribers import write_subscribers

    day = (plan.start + dt.timedelta(days=plan.days - 1)).isoformat()   # the data's yesterday
    write_subscribers(work / "subscribers.csv", households, plan.start + dt.timedelta(days=plan.days - 1),
                      start=plan.start)
    print(f"\n== CRM: yesterday ({day}): top programmes by rating, and the football fans", flush=True)
    steps = [["import-subscribers", str(work / "subscribers.csv")], ["profile", "--day", day, "--no-progress"],
             ["ratings", "--day", day, "--top", "5"], ["segment", "count", "interest.football", "--day", day]]
    for step in steps:
        run = subprocess.run([sys.executable, "-m", "crm", *step, "--store", store_url], capture_output=True,
                             text=True, timeout=600)
        if run.returncode != 0:
            print(f"   crm {step[0]} failed: {run.stderr.strip()[-500:]}", flush=True)
            return
        if step[0] == "ratings":
            print("\n".join("   " + line for line in run.stdout.splitlines()[1:]), flush=True)
        elif step[0] == "segment":
            print(f"   segment \"football fans\" (interest.football): {int(run.stdout):,} households", flush=True)
    # Churn needs 28 days of history before a training day and 30 after it (docs/CRM.md).
    if plan.days < 90:
        print("   churn early warning: needs 90+ simulated days (--days 90) to train", flush=True)
        return
    for step in (["churn", "train", "--model-dir", str(work / "churn")],
                 ["churn", "score", "--model-dir", str(work / "churn"), "--top", "3"]):
        run = subprocess.run([sys.executable, "-m", "crm", *step, "--store", store_url, "--no-progress"],
                             capture_output=True, text=True, timeout=1800)
        print("\n".join("   " + line for line in (run.stdout or run.stderr).strip().splitlines()), flush=True)


def _recommendations(store_url: str, work: Path, plan: FleetPlan, households: int = 3) -> None:
    """Train on what was collected, serve it over gRPC, ask for tomorrow evening's picks."""
    import datetime as dt
    import subprocess

    import grpc

    from proto import recommender_pb2 as pb
    from proto import recommender_pb2_grpc as pb_grpc
    from stbcommon.localservers import free_port
    from warehouse import open_warehouse

    model_dir = work / "model"
    print("\n== Recommendations (train, then serve over gRPC)", flush=True)
    train = subprocess.run([sys.executable, "-m", "recommender", "train", "--store", store_url, "--model-dir",
                            str(model_dir), "--no-eval"], capture_output=True, text=True, timeout=600)
    if train.returncode != 0:
        print("   training failed:\n" + train.stderr[-2000:], flush=True)
        return
    wh = open_warehouse(store_url)  # read names now: the server will hold the embedded store
    try:
        db = wh.database
        titles = dict(wh.query_rows(f"SELECT content_id, any(title) FROM {db}.programmes FINAL GROUP BY content_id"))
        channels = dict(wh.query_rows(f"SELECT channel_id, name FROM {db}.channels FINAL"))
        top = [r[0] for r in wh.query_rows(
            f"SELECT household_id, sum(duration_s) AS s FROM {db}.events FINAL WHERE kind = 'view' "
            f"GROUP BY household_id ORDER BY s DESC LIMIT {households}")]
    finally:
        wh.close()
    port, ready = free_port(), work / "recommender.ready"
    log = (work / "recommender.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "recommender", "serve", "--store", store_url, "--model-dir",
                               str(model_dir), "--listen", f"127.0.0.1:{port}", "--ready-file", str(ready)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                print("   the recommender did not start; see recommender.log", flush=True)
                return
            time.sleep(0.1)
        tomorrow = dt.datetime.combine(plan.start + dt.timedelta(days=plan.days), dt.time(20), dt.UTC)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RecommenderStub(channel)
            for household in top:
                answer = stub.Recommend(pb.RecommendRequest(household_id=household, k=5, window_minutes=180,
                                                            at_unix_ms=int(tomorrow.timestamp() * 1000)), timeout=10)
                print(f"   household {household}, {tomorrow:%a %d %b} 20:00-23:00 UTC "
                      f"(model {answer.model_version}):", flush=True)
                for item in answer.items:
                    start = dt.datetime.fromtimestamp(item.start_unix_ms / 1000, dt.UTC)
                    print(f"      {start:%H:%M}  {channels.get(item.channel_id, item.channel_id)!s:<14} "
                          f"{titles.get(item.content_id, item.content_id)!s:<34} {item.reason}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
