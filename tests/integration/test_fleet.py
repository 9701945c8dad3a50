"""The simulated fleet with real agents and broker; the demo, end to end."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.fleet import FleetPlan, run_fleet
from stbcommon.localservers import Mosquitto
from tests.integration.test_agent_delivery import Inbox

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def published(tmp: Path, seed: int) -> set[tuple[str, int, str]]:
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    try:
        inbox = Inbox(broker.port)
        plan = FleetPlan(mqtt_url=broker.url, households=60, days=1, seed=seed, start=dt.date(2026, 3, 2),
                         guide_size="small", spool_root=str(tmp / "spools"))
        totals = run_fleet(plan)
        assert totals["published"] == totals["events"] > 0
        got = inbox.wait_for_unique(totals["published"])
        inbox.close()
        return {(d.device, d.seq, repr(d.event)) for d in got}
    finally:
        broker.stop()


def test_same_seed_same_events(tmp_path: Path) -> None:
    first = published(tmp_path / "a", seed=11)
    second = published(tmp_path / "b", seed=11)
    other = published(tmp_path / "c", seed=12)
    assert first == second
    assert first != other


def test_short_demo_runs_and_leaves_nothing_running(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "demo", "--households", "150", "--days", "1",
                          "--processes", "1", "--dir", str(tmp_path / "demo"), "--no-console",
                          "--churn-households", "300"],
                         cwd=ROOT, capture_output=True, text=True, timeout=480)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "== stored:" in out.stdout and "Top channels by watch time" in out.stdout
    assert "0 dead letters" in out.stdout
    assert "== Churn early warning" in out.stdout and "households scored for" in out.stdout
    assert re.search(r"^ +h[0-9a-f]{16} +0\.\d{3} +\w", out.stdout, re.M), "the riskiest households with reasons"
    assert "== Marketing" in out.stdout and "cycle: 1 active campaign(s)" in out.stdout
    assert "campaign euro-football (active)" in out.stdout
    assert "== Console: http://127.0.0.1:" in out.stdout and "admin     ada / demo-admin" in out.stdout
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
