"""The segment command: count, members (pseudonymised unless --identified), save, list."""

from __future__ import annotations

import argparse

from crm import segments
from crm.export_ids import household_labeller
from crm.settings import CrmSettings
from warehouse import Warehouse


def run_segment(args: argparse.Namespace, settings: CrmSettings, store: Warehouse) -> int:
    if args.action == "count":
        print(segments.count(store, args.expr, args.day))
    elif args.action == "members":
        label = household_labeller(settings.privacy, args.identified)  # refused before any query
        for hid in segments.members(store, args.expr, args.day, args.limit).tolist():
            print(label(hid))
    elif args.action == "save":
        version = segments.save(store, args.name, args.expr)
        print(f"saved segment {args.name} version {version}")
    else:
        for name, version, expr in segments.saved(store):
            print(f"{name}\tv{version}\t{expr}")
    return 0
