"""The demo's marketing step: the seed's Euro Cup example, closed loop.

1. a guide-triggered campaign (`python -m marketing campaign create`): tonight's football (airings
   starting 18:00-23:00 in the next 24 hours), the football fans who do not have the sports
   package, three variants, a 10 % holdout;
2. one daemon cycle (`python -m marketing run --once`) publishes the messages; boxes that are off
   keep them queued in their persistent sessions;
3. the simulated households' boxes come on (`python -m firmware_sim responder`: real agents) and
   answer; the collector stores the answers (msg_shown / msg_response events);
4. the billing system's next extract (with what households bought) is imported by the CRM;
5. another cycle turns the answers into contact states, and the report shows the funnel and the
   uplift against the holdout.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from collector.process import CollectorProcess
from firmware_sim.fleet import FleetPlan
from firmware_sim.households import Households
from firmware_sim.ledger import read_ledger
from firmware_sim.subscribers import write_subscribers

CAMPAIGN = "euro-football"
CAMPAIGN_FILE = """\
id = "euro-football"
name = "Football tonight: the sports package"
product = "sports"
segment = "interest.football and not product.sports and not product.full"
holdout = 0.10
priority = 5
attribution_days = 7
[waves]
count = 1
after_hours = 24
[trigger]
kind = "guide"
category = "Sport"
title_contains = "football"
within_hours = 24
starts_between = "18:00-23:00"
[[variants]]
id = "match"
title = "{title} at {start}"
body = "Watch {title} on {channel} at {start}: add the sports package. Press OK."
action = { type = "offer" }
[[variants]]
id = "price"
title = "All the football, one package"
body = "{title} and every match of the season with {product}. Press OK."
action = { type = "offer" }
[[variants]]
id = "quiz"
title = "Football quiz: who wins {title}?"
body = "Answer and get the sports package's first month free. Press OK."
action = { type = "offer" }
"""


def run_marketing(store_url: str, work: Path, plan: FleetPlan, households: Households, mqtt_url: str) -> None:
    print("\n== Marketing: the football campaign on the TV (guide trigger, 10 % holdout)", flush=True)
    (work / "euro-football.toml").write_text(CAMPAIGN_FILE)
    steps = [["campaign", "create", str(work / "euro-football.toml")], ["run", "--once", "--mqtt", mqtt_url]]
    for step in steps:
        if not _marketing(step, store_url, work):
            return
    collector = CollectorProcess(mqtt_url, store_url, work, group="demo")
    collector.start()
    try:
        responder = subprocess.run(
            [sys.executable, "-m", "firmware_sim", "responder", "--mqtt", mqtt_url, "--households",
             str(plan.households), "--days", str(plan.days), "--seed", str(plan.seed), "--start",
             plan.start.isoformat(), "--state", str(work / "responder"), "--ledger", str(work / "ledger.jsonl"),
             "--until-idle", "5"], capture_output=True, text=True, timeout=600)
        print("   boxes: " + (responder.stdout.strip().splitlines() or ["(no summary)"])[-1], flush=True)
        if responder.returncode != 0:
            print("   the responder failed: " + responder.stderr.strip()[-500:], flush=True)
            return
        collector.wait_quiet(2.0, 120)
    finally:
        collector.terminate()
    # The billing system's next extract, with what the households bought meanwhile.
    extract = work / "subscribers-after.csv"
    last_day = plan.start + dt.timedelta(days=plan.days - 1)
    write_subscribers(extract, households, last_day, start=plan.start, purchases=read_ledger(work / "ledger.jsonl"))
    crm = subprocess.run([sys.executable, "-m", "crm", "import-subscribers", str(extract), "--store", store_url],
                         capture_output=True, text=True, timeout=600)
    if crm.returncode != 0:
        print("   crm import-subscribers failed: " + crm.stderr.strip()[-500:], flush=True)
        return
    for step in (["run", "--once", "--mqtt", mqtt_url],
                 ["campaign", "report", CAMPAIGN, "--json", str(work / "euro-football-report.json")]):
        if not _marketing(step, store_url, work, show=step[0] == "campaign"):
            return


def _marketing(step: list[str], store_url: str, work: Path, show: bool = True) -> bool:
    run = subprocess.run([sys.executable, "-m", "marketing", *step, "--store", store_url], capture_output=True,
                         text=True, timeout=900, env=_quiet_env())
    if run.returncode != 0:
        print(f"   marketing {' '.join(step[:2])} failed: {run.stderr.strip()[-500:]}", flush=True)
        return False
    if show and run.stdout.strip():
        print("\n".join("   " + line for line in run.stdout.strip().splitlines()), flush=True)
    return True


def _quiet_env() -> dict[str, str]:
    import os

    return {**os.environ, "STB_MARKETING__LOG__FORMAT": "text", "STB_MARKETING__LOG__LEVEL": "WARNING"}
