"""CI keeps the benchmark harness working: each --quick run must complete and write its
JSON. It asserts that the harness ran and measured, never a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["ingest", "serve", "train", "agent", "fuzz", "marketing"])
def test_quick_benchmark_runs(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks", name, "--quick", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == name and doc["machine"]["cores"] and doc["rows"] and doc["headline"]
    if name == "ingest":  # every run verified its committed row count against what was published
        assert all(r["committed"] == r["messages"] * r["events_per_message"] for r in doc["rows"])
    if name == "fuzz":  # every target ran and none found a crash, an undocumented error or a hang
        assert doc["headline"]["findings"] == 0 and all(r["inputs"] > 0 for r in doc["rows"])
    if name == "marketing":  # the loop sent, the boxes answered, the scale cycle sent to the broker
        quality, scale = doc["rows"]
        assert quality["targeted_treated"] > 0 and quality["targeted_conversion"] > 0
        assert quality["uplift_ci95"][0] is not None and scale["status_sent"] > 0
    if name == "serve":  # every call answered OK, the model always answered with items, every level measured
        assert doc["headline"]["errors"] == 0 and doc["headline"]["empty_model_answers"] == 0
        assert {r["concurrency"] for r in doc["rows"] if r["server"] == "null"} == {1, 8, 32, 128}
