"""The demo's CRM step: the subscriber extract, profiles and tags, ratings, a segment, churn — through
`python -m crm`, as an operator would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from firmware_sim.fleet import FleetPlan
from firmware_sim.households import Households


def run_crm(store_url: str, work: Path, plan: FleetPlan, households: Households, churn_households: int = 1000) -> None:
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
    # Churn needs 8 weeks of history before a training day and 30 days after it (docs/CRM.md): a
    # short demo scores a simulated history of its own, in a store of its own.
    churn_store, model_dir = store_url, work / "churn"   # the console shows this model (demo/console_step.py)
    if plan.days < 90:
        history = work / "churn-history"
        churn_store, model_dir = f"chdb://{history / 'chdb'}", history / "model"
        print(f"\n== Churn early warning (the live demo has {plan.days} days: a simulated 120-day history of "
              f"{churn_households:,} households, 3x the usual leaving rates)", flush=True)
        load = subprocess.run([sys.executable, "-m", "demo.churn_history", "--store", churn_store,
                               "--households", str(churn_households)],
                              capture_output=True, text=True, timeout=1800)
        if load.returncode != 0:
            print(f"   churn history failed: {load.stderr.strip()[-500:]}", flush=True)
            return
        print(f"   {load.stdout.strip()}", flush=True)
    else:
        print("\n== Churn early warning", flush=True)
    # Households leave the store as keyed pseudonyms (docs/SECURITY.md): the demo makes its own key.
    key = work / "pseudonym.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    env = {**os.environ, "STB_CRM__PRIVACY__KEY_FILE": str(key)}
    for step in (["churn", "train", "--model-dir", str(model_dir)],
                 ["churn", "score", "--model-dir", str(model_dir), "--top", "3"]):
        run = subprocess.run([sys.executable, "-m", "crm", *step, "--store", churn_store, "--no-progress"],
                             capture_output=True, text=True, timeout=1800, env=env)
        print("\n".join("   " + line for line in (run.stdout or run.stderr).strip().splitlines()), flush=True)
