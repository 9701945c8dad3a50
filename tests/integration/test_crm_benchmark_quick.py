"""CI keeps `python -m benchmarks crm` working: the quick run completes, measures and writes JSON
(it asserts that the harness ran, never a speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_quick_crm_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "crm.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "crm", "--quick", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    [row] = doc["rows"]
    assert doc["benchmark"] == "crm" and row["profiled"] == row["households"] == 20_000
    assert row["segment_example_count"] > 0 and 0 < row["segment_bucket_count"] < row["households"]
