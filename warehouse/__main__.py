"""Store maintenance commands.

    python -m warehouse retention --keep-days N --store URL [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from warehouse import WarehouseError, open_warehouse
from warehouse.retention import drop, expired_partitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse", description="Store maintenance.")
    commands = parser.add_subparsers(dest="command", required=True)
    retention = commands.add_parser(
        "retention", help="drop whole days of events older than N days",
        description="Drop the partitions of `events` (by the device's day) and `dead_letters` (by month "
                    "received) whose every day is older than today - N days, and say what was dropped. "
                    "ClickHouse 18.16 has no TTL: run this daily (cron, a systemd timer).")
    retention.add_argument("--keep-days", type=int, required=True, metavar="N", help="days to keep (>= 1)")
    retention.add_argument("--store", required=True, metavar="URL",
                           help="clickhouse://user:pass@host:9000/db or chdb:///path")
    retention.add_argument("--dry-run", action="store_true", help="say what would be dropped, drop nothing")
    retention.add_argument("--today", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                           help="the day to count back from (default: today, UTC)")
    args = parser.parse_args(argv)
    if args.keep_days < 1:
        parser.error("--keep-days must be at least 1")
    today = args.today or dt.datetime.now(dt.UTC).date()
    try:
        warehouse = open_warehouse(args.store)
        try:
            expired = expired_partitions(warehouse, args.keep_days, today)
            if not args.dry_run:
                drop(warehouse, expired)
        finally:
            warehouse.close()
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "would drop" if args.dry_run else "dropped"
    for p in expired:
        print(f"{verb} {p.table} partition {p.partition} ({p.rows:,} rows)")
    rows = sum(p.rows for p in expired)
    print(f"{verb} {len(expired)} partitions, {rows:,} rows older than {today - dt.timedelta(days=args.keep_days)}"
          if expired else f"nothing older than {args.keep_days} days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
