"""`python -m benchmarks NAME [--quick] [--json PATH]`: reproducible measurements.

Each benchmark prints a table, writes JSON (machine, versions, parameters, figures) to
--json or benchmarks/results/NAME.json, and reports its headline as a ratio against a
reference measured in the same run (this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "ingest": ("benchmarks.ingest", "collector drain of a queued backlog into ClickHouse, vs the null store"),
    "serve": ("benchmarks.serve", "gRPC Recommend latency and QPS at concurrency 1-128, vs a null handler"),
    "train": ("benchmarks.train", "extraction, ALS fit and index build at 100k and 1M households, vs bare implicit"),
    "agent": ("benchmarks.agent", "agent RSS and CPU at 1 and 100 events/s, spool replay, vs bare python"),
    "crm": ("benchmarks.crm", "household profiles + tags at 100k and 1M households, segment count latency"),
    "fuzz": ("benchmarks.fuzz", "atheris (libFuzzer) on every raw-input parser: inputs tried, coverage, findings"),
    "decode": ("benchmarks.decode", "decoder CPU per event, native extension vs pure Python, no broker or store"),
    "churn": ("benchmarks.churn", "churn model on a simulated fleet: AUC, lift, Brier vs rules and the truth ceiling"),
    "marketing": ("benchmarks.marketing", "campaign loop on the simulator (targeting, uplift, variants); a 1M cycle"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="benchmarks:\n" + "\n".join(f"  {k:8s} {v[1]}" for k, v in
                                                                        BENCHMARKS.items()))
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute each (CI)")
    parser.add_argument("--json", metavar="PATH", help="where to write the JSON result")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    for name in names:
        module = importlib.import_module(BENCHMARKS[name][0])
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        result = module.run(args)
        path = result.write(args.json if len(names) == 1 else None)
        print(f"\nheadline: {result.headline}\nwrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
