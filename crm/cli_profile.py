"""The profile command: profiles, then tags, of one day."""

from __future__ import annotations

import argparse
import datetime as dt
import time

from tqdm import tqdm

from crm.catalogue import load_catalogue
from crm.errors import NoData
from crm.profiles import build_profiles
from crm.settings import DAY_MS, MINUTE_MS, CrmSettings
from crm.tags import build_tags
from warehouse import Warehouse


def last_day(store: Warehouse, settings: CrmSettings) -> dt.date:
    """The last complete local day: the day before the newest event's (which may still be filling)."""
    newest = int(store.query_rows(f"SELECT max(ts_ms) FROM {store.database}.events")[0][0] or 0)
    if newest <= 0:
        raise NoData("no events in the store")
    local = newest + settings.credit.utc_offset_minutes * MINUTE_MS
    return dt.date(1970, 1, 1) + dt.timedelta(days=local // DAY_MS - 1)


def run_profile(args: argparse.Namespace, settings: CrmSettings, store: Warehouse) -> int:
    catalogue = load_catalogue(settings.profile.catalogue or None)   # refuse a bad catalogue before any work
    day = args.day or last_day(store, settings)
    with tqdm(unit="step", disable=args.no_progress, desc=f"profiles {day}") as bar:
        started = time.monotonic()

        def shard_done(done: int, shards: int) -> None:
            bar.total = shards + 1      # the shards of households, then the tags
            bar.update(1)

        households = build_profiles(store, day, settings, catalogue, on_shard=shard_done)
        bar.set_description(f"tags {day}")
        counts = build_tags(store, day, catalogue)
        bar.update(1)
    print(f"{households:,} household profiles and {sum(counts.values()):,} tags for {day.isoformat()} "
          f"in {time.monotonic() - started:.1f}s")
    for tag, n in counts.items():
        print(f"  {tag:<32} {n:>9,}")
    return 0
