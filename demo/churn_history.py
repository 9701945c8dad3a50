"""A simulated viewing history long enough for churn: `python -m demo.churn_history --store URL`.

The live demo collects a few days through real agents; churn needs months (8 weeks of features
before a training day, 30 days of outcome after it). So the demo's churn step loads a separate
world of its own (default 1,000 households, 120 days, 3x the simulator's leaving rates so a
small fleet has enough leavers) straight into its own store, as the collector would have
written it, with the subscriber extract through the CRM importer (`benchmarks.churn`'s world,
also the churn benchmark's and tests'). A process of its own: chdb opens one folder a process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.churn import simulate
from warehouse import open_warehouse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.churn_history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="store URL to load the history into (migrated here)")
    p.add_argument("--households", type=int, default=1000)
    p.add_argument("--days", type=int, default=120)
    p.add_argument("--rate", type=float, default=3.0, help="leaving rates x the simulator's defaults")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    world = simulate(args.households, args.days, args.seed, rate=args.rate)
    store = open_warehouse(args.store)
    try:
        store.migrate()
        with tempfile.TemporaryDirectory(prefix="demo-churn-") as tmp:
            events = world.load(store, Path(tmp))
    finally:
        store.close()
    print(f"{events:,} events of {args.households:,} households over {args.days} days "
          f"({world.start} .. {world.last_day})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
