"""`python -m marketing campaign ...`: the registry's commands, printed for a terminal."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from marketing import store as registry
from marketing.campaign import parse_campaign
from marketing.report import build_report, format_report, write_json
from marketing.settings import MarketingSettings
from warehouse import Warehouse, open_warehouse


def run_campaign_command(args: argparse.Namespace, settings: MarketingSettings) -> int:
    text = Path(args.file).read_text(encoding="utf-8") if args.action == "create" else ""
    if args.action == "create":
        parse_campaign(text)  # a refused file never touches the store
    warehouse = open_warehouse(settings.store.url)
    try:
        warehouse.migrate()
        if args.action == "create":
            campaign = registry.create(warehouse, text, draft=args.draft)
            print(f"campaign {campaign.id}: registered, {'draft (approve to start)' if args.draft else 'active'}")
        elif args.action == "list":
            _list(warehouse)
        elif args.action == "show":
            _show(warehouse, args.id)
        elif args.action in registry.TRANSITIONS:
            record = registry.change_status(warehouse, args.id, args.action)
            print(f"campaign {record.id}: {record.status}")
        elif args.action == "report":
            report = build_report(warehouse, registry.get(warehouse, args.id))
            if args.json:
                write_json(report, args.json)
            print(format_report(report))
        return 0
    finally:
        warehouse.close()


def _list(warehouse: Warehouse) -> None:
    sent = dict(warehouse.query_rows(f"SELECT campaign, count() FROM {warehouse.database}.deliveries "
                                     "WHERE status = 'sent' GROUP BY campaign"))
    records = registry.list_all(warehouse)
    if not records:
        print("no campaigns (create one: python -m marketing campaign create FILE.toml)")
        return
    print(f"{'id':<28} {'status':<8} {'priority':>8} {'sent':>10}  trigger")
    for r in records:
        c = r.campaign
        how = c.trigger.kind if c.trigger else (f"daily {c.schedule.daily}" if c.schedule else "once")
        print(f"{c.id:<28} {r.status:<8} {c.priority:>8} {int(sent.get(c.id, 0)):>10,}  {how}")


def _show(warehouse: Warehouse, campaign_id: str) -> None:
    record = registry.get(warehouse, campaign_id)
    print(f"# campaign {record.id}: {record.status}")
    for at_ms, action, actor, detail in registry.history(warehouse, campaign_id):
        when = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
        print(f"# {when:%Y-%m-%d %H:%M:%S}Z {action} by {actor}: {detail}")
    print(record.campaign.source.rstrip())
