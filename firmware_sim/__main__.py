"""`python -m firmware_sim`: a simulated fleet of households driving real agents."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

DESCRIPTION = """\
Simulate households watching TV and drive one real STB agent per box against a real
MQTT broker, at accelerated time. Simulated days begin at midnight UTC of --start; the
guide covers those days and the day after. Deterministic: the same seed on fresh state
publishes the same events. Exits once every agent's spool is empty (all delivered).
"""

EPILOG = """\
examples:
  python -m firmware_sim --mqtt mqtt://localhost:1883 --households 2000 --days 3 --seed 7
  python -m firmware_sim responder --mqtt mqtt://localhost:1883 --households 2000 --days 3 --seed 7 \\
      --start 2026-12-01 --state responder-state --until-idle 30
  python -m firmware_sim --mqtt mqtt://localhost:1883 --store clickhouse://localhost:9000/stb \\
      --households 5000 --days 7 --seed 7 --truth truth.npz --subscribers subscribers.csv --processes 2
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m firmware_sim", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mqtt", metavar="URL", required=True, help="broker the agents publish to")
    p.add_argument("--store", metavar="URL", help="load the simulated guide (XMLTV importer) into this store")
    p.add_argument("--households", metavar="N", type=int, required=True)
    p.add_argument("--days", metavar="D", type=int, required=True)
    p.add_argument("--seed", metavar="S", type=int, required=True)
    p.add_argument("--start", metavar="YYYY-MM-DD", type=dt.date.fromisoformat, help="first day (default today, UTC)")
    p.add_argument("--truth", metavar="PATH",
                   help="write the ground truth (npz) used to score recommenders and churn models")
    p.add_argument("--xmltv", metavar="PATH", help="also write the guide as XMLTV here")
    p.add_argument("--subscribers", metavar="PATH", help="write the fleet's subscriber extract (CSV) here, as of "
                                                          "the last day (for python -m crm import-subscribers); "
                                                          "households that left are `ended` on the day their boxes "
                                                          "stopped reporting")
    p.add_argument("--purchases", metavar="LEDGER", help="the responder's ledger: products bought up to the last "
                                                          "day join the --subscribers extract")
    p.add_argument("--processes", metavar="P", type=int, default=1, help="publisher processes (default 1)")
    p.add_argument("--guide-size", choices=["small", "medium", "large"], default="medium")
    p.add_argument("--no-recommendations", action="store_true", help="no rec_impression/rec_click events")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.households < 1 or args.days < 1 or args.processes < 1:
        p.error("--households, --days and --processes must be at least 1")
    return args


def load_guide(epg: object, store_url: str, xmltv_path: str | None = None) -> None:
    """Write the guide as XMLTV and load it through the same importer operators use."""
    from firmware_sim.xmltv import write_xmltv
    from warehouse import open_warehouse
    from warehouse.xmltv_import import import_xmltv

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(xmltv_path) if xmltv_path else Path(tmp) / "guide.xml"
        write_xmltv(epg, path)  # type: ignore[arg-type]
        wh = open_warehouse(store_url)
        try:
            wh.migrate()
            stats = import_xmltv(path, wh, progress=False)
        finally:
            wh.close()
    print(f"guide loaded: {stats.channels} channels, {stats.programmes} programmes, {stats.airings} airings",
          file=sys.stderr)


RESPONDER_DESCRIPTION = """\
Boxes that answer campaign messages: build the fleet's world (same households, device ids and
regions as the fleet with the same --households/--seed/--start/--days/--guide-size), run a real
agent per box with messages on (the fleet's client ids, so the broker's persistent sessions deliver
what was queued), and answer each message by the response model (firmware_sim/responses.py):
kind 8 msg_shown and maybe kind 9 msg_response events. Accepted offers, organic purchases and
retention saves go to the ledger (JSON lines), which --purchases feeds into the subscriber extract.
Runs until SIGTERM/SIGINT, or with --until-idle until no message came for that long after one did.
"""


def parse_responder_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m firmware_sim responder", description=RESPONDER_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mqtt", metavar="URL", required=True)
    p.add_argument("--households", metavar="N", type=int, required=True)
    p.add_argument("--days", metavar="D", type=int, required=True)
    p.add_argument("--seed", metavar="S", type=int, required=True)
    p.add_argument("--start", metavar="YYYY-MM-DD", type=dt.date.fromisoformat, help="first day (default today, UTC)")
    p.add_argument("--state", metavar="DIR", required=True, help="agents' spools and inboxes, the households' "
                                                                 "recent messages (kept across restarts)")
    p.add_argument("--ledger", metavar="FILE", help="purchases ledger (default STATE/ledger.jsonl)")
    p.add_argument("--until-idle", metavar="SECONDS", type=float,
                   help="stop once no message came for this long (after the first)")
    p.add_argument("--guide-size", choices=["small", "medium", "large"], default="medium")
    args = p.parse_args(argv)
    if args.households < 1 or args.days < 1:
        p.error("--households and --days must be at least 1")
    if args.until_idle is not None and args.until_idle <= 0:
        p.error("--until-idle must be > 0")
    return args


def responder_main(argv: list[str]) -> int:
    args = parse_responder_args(argv)
    from firmware_sim.fleet import FleetPlan, today_utc
    from firmware_sim.responder import ResponderPlan, run_responder

    state = Path(args.state)
    plan = ResponderPlan(
        fleet=FleetPlan(mqtt_url=args.mqtt, households=args.households, days=args.days, seed=args.seed,
                        start=args.start or today_utc(), guide_size=args.guide_size),
        state_dir=state, ledger=Path(args.ledger) if args.ledger else state / "ledger.jsonl",
        until_idle_s=args.until_idle)
    summary = run_responder(plan)
    print(summary.line(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["responder"]:
        return responder_main(argv[1:])
    args = parse_args(argv)
    from tqdm import tqdm

    from firmware_sim.fleet import FleetPlan, build_world, run_fleet, today_utc

    plan = FleetPlan(mqtt_url=args.mqtt, households=args.households, days=args.days, seed=args.seed,
                     start=args.start or today_utc(), processes=args.processes, guide_size=args.guide_size,
                     recommendations=not args.no_recommendations)
    if args.store or args.truth or args.xmltv or args.subscribers:
        epg, households = build_world(plan)
        if args.subscribers:
            from firmware_sim.ledger import read_ledger
            from firmware_sim.subscribers import write_subscribers

            rows = write_subscribers(args.subscribers, households, plan.start + dt.timedelta(days=plan.days - 1),
                                     start=plan.start, purchases=read_ledger(args.purchases) if args.purchases else ())
            print(f"subscriber extract ({rows:,} households) written to {args.subscribers}", file=sys.stderr)
        if args.truth:
            from firmware_sim.truth import write_truth

            write_truth(args.truth, epg, households)
            print(f"ground truth written to {args.truth}", file=sys.stderr)
        if args.store:
            from warehouse import WarehouseError

            try:
                load_guide(epg, args.store, args.xmltv)
            except WarehouseError as exc:
                print(f"firmware_sim: cannot load the guide: {exc}", file=sys.stderr)
                return 2
        elif args.xmltv:
            from firmware_sim.xmltv import write_xmltv

            write_xmltv(epg, args.xmltv)
    bar = tqdm(total=plan.days * plan.processes, unit="day", disable=args.quiet,
               desc=f"{plan.households} households", dynamic_ncols=True)
    state = {"events": 0}
    recorded: dict[int, int] = {}

    def on_progress(update: tuple[str, int, int, int]) -> None:
        kind, share, value, events = update
        recorded[share] = events
        bar.set_postfix(events=f"{sum(recorded.values()):,}", refresh=False)
        if kind == "day":
            bar.update(1)
        else:
            bar.set_description(f"draining ({value} boxes left)")
        state["events"] = sum(recorded.values())

    started = time.monotonic()
    totals = run_fleet(plan, on_progress=on_progress)
    bar.close()
    elapsed = time.monotonic() - started
    print(f"fleet done in {elapsed:.1f}s: {totals['devices']:,} boxes, {totals['events']:,} events recorded, "
          f"{totals['published']:,} published in {totals['batches']:,} batches "
          f"({totals['events'] / max(elapsed, 1e-9):,.0f} events/s), {totals['dropped']} dropped, "
          f"{totals['rejected']} rejected", file=sys.stderr)
    return 0 if totals["published"] == totals["events"] else 1


if __name__ == "__main__":
    sys.exit(main())
