"""Fuzzing: every raw-bytes target of benchmarks.fuzz_targets under atheris (coverage-guided
libFuzzer) for a fixed time each, reporting inputs tried, coverage reached and any finding.

A finding is a crash, an undocumented exception or an input slower than the per-input
timeout; libFuzzer writes it as crash-*/timeout-* in the work folder, and this run fails.
    python -m benchmarks fuzz [--quick]      # quick: 10 s a target (CI); else 5 min a target
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Result, table
from benchmarks.fuzz_targets import TARGETS

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(r"cov: (\d+) ft: (\d+)")


def fuzz_one(name: str, seconds: int, work: Path) -> dict[str, object]:
    corpus = work / name
    corpus.mkdir(parents=True, exist_ok=True)
    scratch = work / f"tmp-{name}"      # the target's temporary files: libFuzzer's exit skips atexit
    scratch.mkdir(exist_ok=True)
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.fuzz_targets", name, str(corpus), f"-max_total_time={seconds}",
         "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={work}/{name}-", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=seconds + 120, env={**os.environ, "TMPDIR": str(scratch)})
    done = _DONE.search(run.stderr)
    coverage = _COVERAGE.findall(run.stderr)
    findings = sorted(p.name for p in work.glob(f"{name}-*"))
    return {"target": name, "seconds": seconds, "inputs": int(done.group(1)) if done else 0,
            "coverage": int(coverage[-1][0]) if coverage else 0, "corpus": len(list(corpus.iterdir())),
            "exit": run.returncode, "findings": ", ".join(findings) or "none",
            "tail": "" if run.returncode == 0 else run.stderr[-3000:]}


def run(args: argparse.Namespace) -> Result:
    seconds = 10 if args.quick else 300
    result = Result("fuzz", {"seconds_per_target": seconds, "engine": "atheris (libFuzzer)"})
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        for name in TARGETS:
            row = fuzz_one(name, seconds, Path(tmp))
            tail = row.pop("tail")
            result.add(**row)
            if tail:
                print(tail, file=sys.stderr)
    print()
    print(table(result.rows, ["target", "seconds", "inputs", "coverage", "corpus", "exit", "findings"]))
    result.headline = {"inputs": sum(int(str(r["inputs"])) for r in result.rows),
                       "findings": sum(r["findings"] != "none" for r in result.rows),
                       "targets": len(result.rows)}
    if result.headline["findings"]:
        raise SystemExit(f"fuzzing found {result.headline['findings']} failing target(s); see above")
    return result
