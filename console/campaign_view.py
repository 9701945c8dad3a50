"""A campaign's report (marketing.report.build_report, the contract's JSON) as the campaign page shows it.

The console computes no campaign figure of its own: the funnel, the arms, the uplift and its
interval, variants, waves and the allocation history are the report's, so the page, the CLI's
`campaign report` and its `--json` always agree. This module only turns them into charts (drawn
from the report's numbers) and sentences.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from markupsafe import Markup

from console.charts import bars, lines


def _points(value: float) -> str:
    return f"{100 * value:+.2f} points"


def uplift_sentence(report: dict[str, Any]) -> str:
    """The uplift, its 95 % interval and the incremental conversions in words; why not, when absent."""
    u = report["uplift"]
    if u["absolute"] is None:
        if report["treated"]["households"] == 0:
            return "Nothing to measure yet: no treated household is registered."
        return "No holdout households: without a control group there is no uplift to measure."
    lo, hi = u["ci95"]
    relative = "" if u["relative"] is None else f"; relative {100 * u['relative']:+.0f} %"
    return (f"Uplift {_points(u['absolute'])} (95 % interval {_points(lo)} to {_points(hi)}){relative}; "
            f"incremental conversions {report['incremental_conversions']:.1f}.")


def _minute(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%m-%d %H:%M")


def allocation_series(history: list[dict[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """Each variant's share (%) at each Thompson decision; one series per wave and variant when
    several waves were decided."""
    several = len({d["wave"] for d in history}) > 1
    series: dict[str, list[tuple[str, float]]] = {}
    for decision in history:
        for variant, share in decision["shares"].items():
            name = f"w{decision['wave']} {variant}" if several else str(variant)
            series.setdefault(name, []).append((_minute(int(decision["decided_ms"])), 100 * float(share)))
    return series


def shares_text(shares: dict[str, float]) -> str:
    return ", ".join(f"{variant} {100 * share:.1f} %" for variant, share in shares.items())


def page_context(report: dict[str, Any]) -> dict[str, Any]:
    """What campaign.html draws: the report itself, its charts and its sentences."""
    funnel = [(state, int(n)) for state, n in report["funnel"].items()]
    series = allocation_series(report["allocation_history"])
    return {
        "report": report,
        "funnel": funnel,
        "funnel_chart": bars(funnel, title="Treated households by latest state") if any(n for _, n in funnel)
        else Markup(""),
        "uplift_sentence": uplift_sentence(report),
        "alloc_chart": lines(series, title="Variant share of sends, %, by decision") if series else Markup(""),
        "allocations": [(d["decided_ms"], d["wave"], shares_text(d["shares"]))
                        for d in report["allocation_history"][-20:]],
        "waves": [(w["wave"], w["sent"], shares_text(w["allocation"])) for w in report["waves"]],
    }
