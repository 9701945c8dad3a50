"""Worker stand-ins for the supervisor tests (module level: spawn pickles them by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from collector.settings import CollectorSettings


def die_once_then_serve(settings: CollectorSettings, worker: int) -> None:
    """The first start dies at once (exit 3); a restarted worker serves until SIGTERM."""
    starts = Path(os.environ["SUPERVISOR_TEST_DIR"]) / f"starts-{worker}"
    with starts.open("a") as f:
        f.write(f"{os.getpid()}\n")
    if len(starts.read_text().split()) == 1:
        raise SystemExit(3)
    time.sleep(120)  # SIGTERM's default action ends it; a worker that never gets one stays
