"""The ratings command: compute, store, print the top rows, optionally write JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from crm.ratings import Ratings, compute_ratings, store_ratings
from crm.settings import CrmSettings
from warehouse import Warehouse


def run_ratings(args: argparse.Namespace, settings: CrmSettings, store: Warehouse) -> int:
    households, segment = None, ""
    if args.segment:
        from crm.segments import household_filter

        # membership on the newest profiled day up to the ratings day
        households, segment = household_filter(store, args.segment, args.day), args.segment
    result = compute_ratings(store, args.day, args.by, settings, households=households, segment=segment)
    store_ratings(store, result)
    print(table(result, args.top))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result.to_json(), fh, indent=2)
    return 0


def table(r: Ratings, top: int) -> str:
    head = f"{r.by} ratings for {r.day.isoformat()}, universe {r.universe:,} households" + (
        f", segment {r.segment}" if r.segment else "")
    lines = [head]
    if r.by == "programme":
        lines.append(f"{'rating %':>9} {'reach %':>8} {'share %':>8}  {'start':<5} {'channel':<18} title")
        for row in r.rows[:top]:
            start = dt.datetime.fromtimestamp(row["start_ms"] / 1000, dt.UTC).strftime("%H:%M")
            lines.append(f"{row['rating']:9.2f} {row['reach']:8.2f} {row['share']:8.2f}  {start:<5} "
                         f"{_cut(row['channel'], 18):<18} {row['title']}")
    else:
        label = "channel" if r.by == "channel" else "daypart"
        lines.append(f"{'rating %':>9} {'reach %':>8} {'share %':>8} {'avg min':>8}  {label}")
        for row in r.rows[:top]:
            name: Any = f"{row['channel_id']} {row['channel']}" if r.by == "channel" else row["daypart"]
            lines.append(f"{row['rating']:9.2f} {row['reach']:8.2f} {row['share']:8.2f} "
                         f"{row['avg_minutes']:8.1f}  {name}")
    return "\n".join(lines)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
