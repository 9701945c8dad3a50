"""The segment command: count, members, save, list."""

from __future__ import annotations

import argparse

from crm import segments
from warehouse import Warehouse


def run_segment(args: argparse.Namespace, store: Warehouse) -> int:
    if args.action == "count":
        print(segments.count(store, args.expr, args.day))
    elif args.action == "members":
        for hid in segments.members(store, args.expr, args.day, args.limit).tolist():
            print(hid)
    elif args.action == "save":
        version = segments.save(store, args.name, args.expr)
        print(f"saved segment {args.name} version {version}")
    else:
        for name, version, expr in segments.saved(store):
            print(f"{name}\tv{version}\t{expr}")
    return 0
