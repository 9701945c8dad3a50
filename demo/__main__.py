"""`make demo` (`python -m demo`): every layer on a simulated fleet — broker, collector (embedded chdb),
CRM, marketing (a guide-triggered campaign answered by the simulated boxes), recommender — then the
operator console on the demo data until Ctrl-C.

It lives in its own package above every room it drives (the simulator stays a world model).
Everything runs locally in one folder and is stopped at the end (or on Ctrl-C): a
mosquitto on a free port, the collector as a child process, the fleet's agents.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from collector.process import CollectorProcess
from demo.console_step import run_console
from demo.crm_step import run_crm
from demo.marketing_step import run_marketing
from demo.recommend_step import run_recommendations
from demo.summary import print_summary
from firmware_sim.__main__ import load_guide
from firmware_sim.fleet import FleetPlan, build_world, run_fleet, today_utc
from stbcommon.localservers import Mosquitto

_EVENTS_ROWS = 'collector_rows_written_total{table="events"}'
_DEAD_ROWS = 'collector_rows_written_total{table="dead_letters"}'




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument("--households", type=int, default=2000, help="simulated households (default 2000)")
    p.add_argument("--days", type=int, default=3, help="simulated days of viewing, from today (default 3)")
    p.add_argument("--seed", type=int, default=7, help="the simulated world's seed: same seed, same world (default 7)")
    p.add_argument("--processes", type=int, default=2, help="processes running the fleet's agents (default 2)")
    p.add_argument("--dir", default="demo-data", help="working folder (emptied first)")
    p.add_argument("--churn-households", type=int, default=1000,
                   help="households of the simulated 120-day history churn is shown on (runs shorter than 90 days)")
    p.add_argument("--no-console", action="store_true",
                   help="do not leave the operator console running at the end (it starts, is checked, stops)")
    args = p.parse_args(argv)
    # Ctrl-C and SIGTERM both stop the demo cleanly, also when started where SIGINT was ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

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
        print_summary(store)
        run_crm(store, work, plan, households, args.churn_households)
        run_marketing(store, work, plan, households, broker.url)
        run_recommendations(store, work, plan)
        print(f"\nground truth: {work / 'truth.npz'}; data: {work / 'chdb'} (chdb); "
              f"collector log: {work}", flush=True)
        broker.stop()
        run_console(store, work, stay=not args.no_console)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if collector is not None:
            collector.close()
        broker.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


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








if __name__ == "__main__":
    sys.exit(main())
