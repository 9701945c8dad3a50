"""`python -m crm churn train|score|evaluate`: the commands' output around crm.churn."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from crm.churn.artifact import load_current
from crm.churn.evaluate import evaluate, table
from crm.churn.features import day_number
from crm.churn.scoring import score_day
from crm.churn.train import save, train
from crm.cli_profile import last_day
from crm.export_ids import household_labeller
from crm.settings import CrmSettings
from warehouse import Warehouse


def run_churn(args: argparse.Namespace, settings: CrmSettings, store: Warehouse) -> int:
    day = args.day or last_day(store, settings)
    steps = {"train": 3, "score": 4, "evaluate": 3}[args.action]
    with tqdm(total=steps, unit="step", disable=args.no_progress, desc=f"churn {args.action} {day}") as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        if args.action == "train":
            trained = train(store, day, settings, on_step=step)
            version = save(trained, Path(args.model_dir or settings.churn.model_dir), settings.churn.keep_versions)
            bar.close()
            m = trained.meta
            top = sorted(m["importance"].items(), key=lambda kv: -kv[1])[:5]
            print(f"churn model {version} for {day}: {m['rows']:,} rows on {len(m['feature_days'])} feature days "
                  f"({m['feature_days'][0]} .. {m['feature_days'][-1]}), {m['leavers']} leavers; calibration day "
                  f"{m['calibration_day']}: predicted {100 * m['calibration']['mean_predicted']:.2f} %, observed "
                  f"{100 * m['calibration']['observed']:.2f} %; in {m['train_seconds']:.1f}s")
            print("  top features: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
            return 0
        if args.action == "score":
            label = _top_labeller(args, settings)  # a broken key file stops before scoring
            loaded = load_current(Path(args.model_dir or settings.churn.model_dir))
            report = score_day(store, day_number(day), settings, loaded, on_step=step)
            bar.close()
            b = report.bands
            print(f"{report.households:,} households scored for {report.day} with model {report.model_version}: "
                  f"high {b['high']:,}, medium {b['medium']:,}, low {b['low']:,}; {report.alerts:,} new alerts")
            if label is not None:
                for hid, score, why in report.top[:args.top]:
                    print(f"  {label(hid):>17}  {score:6.3f}  " + "; ".join(why))
            elif args.top > 0 and report.top:
                print("churn score: riskiest households not listed: set [privacy] key_file for pseudonyms "
                      "or pass --identified", file=sys.stderr)
            return 0
        result = evaluate(store, day, settings, truth=Path(args.truth) if args.truth else None, on_step=step)
    print("\n".join(table(result)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


def _top_labeller(args: argparse.Namespace, settings: CrmSettings) -> Callable[[int], str] | None:
    """How `score` lists its riskiest households; None: not at all (no key and no --identified).
    Scoring is the command's job (the contract), so a missing key only drops the listing."""
    if args.top <= 0 or not (args.identified or settings.privacy.key_file):
        return None
    return household_labeller(settings.privacy, args.identified)
