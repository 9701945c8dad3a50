"""`python -m benchmarks marketing`: campaigns on the simulator (quality) and at 1M households (scale).

Quality (benchmarks/marketing_loop.py): the engine in a closed loop with the simulator's
households on ClickHouse 18.16 — targeted vs random conversion, the uplift interval against the
planted uplift, the last wave's share for the best variant. Scale (benchmarks/marketing_scale.py):
one cycle for a 1M-household audience resolved, capped and published to mosquitto.

Targets (issue 11): targeted conversion >= 3x a random audience of the same size; the 95 % uplift
interval holds the planted uplift; >= 80 % of the last wave to the best variant; 1M households
in <= 60 s.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.churn import simulate
from benchmarks.common import Result, format_row
from benchmarks.marketing_loop import TARGETED, VARIANTS, load_world, run_campaign
from benchmarks.marketing_scale import measure
from stbcommon.localservers import ClickHouseServer
from warehouse import open_warehouse

SEED = 7
WORLD_TABLES = ("events", "channels", "programmes", "airings", "subscribers", "subscriber_history",
                "household_profiles", "household_tags")


def quality(tmp: Path, households: int, days: int) -> dict[str, Any]:
    world = simulate(households, days, SEED)
    out: dict[str, Any] = {"households": households, "days": days}
    with ClickHouseServer(tmp / "clickhouse") as server:
        runs: dict[str, dict[str, Any]] = {}
        stores = {name: open_warehouse(server.url(f"bench_mkt_{name}")) for name in ("targeted", "random")}
        try:
            for store in stores.values():
                store.migrate()
            load_world(stores["targeted"], world, tmp)
            for table in WORLD_TABLES:  # the same world for the random audience, copied rather than simulated again
                stores["random"].execute(f"INSERT INTO {stores['random'].database}.{table} "
                                         f"SELECT * FROM {stores['targeted'].database}.{table}")
            from crm import segments

            size = segments.count(stores["targeted"], TARGETED)
            total = segments.count(stores["targeted"], "minutes_28d >= 0")
            # the same number of households, drawn by a stable hash
            random_segment = f"bucket('random') < {max(1, round(10_000 * size / max(total, 1)))}"
            runs["targeted"] = run_campaign(stores["targeted"], world, TARGETED, SEED)
            runs["random"] = run_campaign(stores["random"], world, random_segment, SEED)
        finally:
            for store in stores.values():
                store.execute(f"DROP DATABASE IF EXISTS {store.database}")
                store.close()
    for name, run in runs.items():
        report = run["report"]
        out[f"{name}_audience"] = run["audience"]
        out[f"{name}_treated"] = report["treated"]["households"]
        out[f"{name}_conversion"] = report["treated"]["rate"]
        out[f"{name}_holdout_conversion"] = report["holdout"]["rate"]
        out[f"{name}_first_message_conversion"] = run["first_message_conversion"]
    target = runs["targeted"]
    report = target["report"]
    lo, hi = report["uplift"]["ci95"] or (None, None)
    out.update({"uplift": report["uplift"]["absolute"], "uplift_ci95": [lo, hi],
                "planted_uplift": round(target["planted_uplift"], 5),
                "ci_holds_planted": bool(lo is not None and lo <= target["planted_uplift"] <= hi),
                "ratio_targeted_to_random": (out["targeted_conversion"] / out["random_conversion"]
                                             if out["random_conversion"] else None),
                "first_message_ratio": (out["targeted_first_message_conversion"] /
                                        out["random_first_message_conversion"]
                                        if out["random_first_message_conversion"] else None),
                "appeal": target["appeal"], "waves": report["waves"], "funnel": report["funnel"],
                "wave_allocation": [{"wave": w["wave"], "sent": w["sent"],
                                     "allocation": {k: round(v, 3) for k, v in w["allocation"].items()}}
                                    for w in report["waves"]]})
    best = max(VARIANTS, key=lambda v: target["appeal"][v])
    last = report["waves"][-1] if report["waves"] else {"allocation": {}}
    out["best_variant"] = best
    out["last_wave"] = last.get("wave")
    out["last_wave_best_share"] = last["allocation"].get(best, 0.0)
    return out


def run(args: argparse.Namespace) -> Result:
    households, days = (1_500, 21) if args.quick else (20_000, 28)
    scale = 20_000 if args.quick else 1_000_000
    result = Result("marketing", {"quick": args.quick, "quality_households": households, "quality_days": days,
                                  "scale_households": scale, "seed": SEED,
                                  "store": "clickhouse-server 18.16, mosquitto 2.0 (same machine)"})
    with tempfile.TemporaryDirectory(prefix="bench-mkt-") as tmp:
        print(f"-- quality: {households:,} simulated households, {days} days", flush=True)
        q = quality(Path(tmp) / "q", households, days)
        result.add(part="quality", **{k: v for k, v in q.items() if k not in ("waves", "funnel")})
        print(f"-- scale: {scale:,} households", flush=True)
        s = measure(Path(tmp) / "s", scale)
        result.add(part="scale", **s)
    ratio = q["ratio_targeted_to_random"]
    result.headline = {
        "targeted_to_random": round(ratio, 2) if ratio else None,
        "targeted_to_random_first_message": round(q["first_message_ratio"], 2) if q["first_message_ratio"] else None,
        "uplift": q["uplift"],
        "uplift_ci95": q["uplift_ci95"], "planted_uplift": q["planted_uplift"],
        "ci_holds_planted": q["ci_holds_planted"], "last_wave_best_share": round(q["last_wave_best_share"], 3),
        "households_1m_cycle_s": s["cycle_s"], "sent": s.get("status_sent", 0),
        "met": {"targeted_3x": bool(ratio and ratio >= 3),
                "targeted_3x_first_message": bool(q["first_message_ratio"] and q["first_message_ratio"] >= 3),
                "ci_holds_planted": q["ci_holds_planted"],
                "best_variant_80pct": q["last_wave_best_share"] >= 0.8,
                "cycle_60s": bool(s["households"] >= 1_000_000 and s["cycle_s"] <= 60)},
    }
    print(format_row(result.headline))
    return result
