"""PNG plots of the latest benchmark results (benchmarks/results/*.json)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR


def _bars(ax: Any, labels: list[str], values: list[float], title: str, ylabel: str) -> None:
    bars = ax.bar(range(len(values)), values, color=["#999999" if "null" in lb or "bare" in lb else "#3b7dd8"
                                                     for lb in labels])
    ax.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(f"{value:,.0f}" if value >= 10 else f"{value:.2f}", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=7)


def ingest(doc: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, epm in zip(axes, (1, 50), strict=True):
        rows = [r for r in doc["rows"] if r["events_per_message"] == epm]
        _bars(ax, [f"{r['store']} w{r['workers']}" for r in rows], [r["events_per_s"] for r in rows],
              f"drain, {epm}-event messages", "events/s committed")
    fig.suptitle("ingest: collector drain vs null store (same run)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def agent(doc: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in doc["rows"] if r["process"] != "replay"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [r["process"] if r["process"] != "agent" else f"agent {r['rate']:g}/s" for r in rows]
    _bars(axes[0], labels, [r["rss_mib"] for r in rows], "resident memory", "MiB")
    _bars(axes[1], labels, [r["cpu_pct"] for r in rows], "CPU", "% of one core")
    fig.suptitle("agent footprint vs a bare interpreter (same run)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def generic(doc: dict[str, Any], out: Path) -> None:
    """Any benchmark: one bar per row of its first numeric figure."""
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    numeric = [k for k, v in rows[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    key = numeric[-1] if numeric else None
    if key is None:
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [" ".join(str(v) for k, v in r.items() if not isinstance(v, float))[:30] for r in rows]
    _bars(ax, labels, [float(r.get(key, 0)) for r in rows], f"{doc['benchmark']}: {key}", key)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    for path in sorted(RESULTS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        out = path.with_suffix(".png")
        own = getattr(importlib.import_module(f"benchmarks.{doc['benchmark']}"), "plot", None)
        (own or {"ingest": ingest, "agent": agent}.get(doc["benchmark"], generic))(doc, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
