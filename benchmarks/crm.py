"""`python -m benchmarks crm`: household profile + tag build at 100k and 1M households, and segment
count latency, on ClickHouse 18.16.

Synthetic world, generated inside ClickHouse (INSERT ... SELECT from system.numbers: Python never
holds the rows): a 40-channel guide of 2,000 programmes in 10 categories (every 20th a football
match; every 5th household watches football half the time), per household 8 views of 1-51 minutes
over the 28 days, each after a tune (so the idle cut keeps them), and a subscriber record; on the
last day, 30-minute airings on every channel and 6 more views per household (the ratings day).
Measured: `build_profiles` and `build_tags` for the last day (the real code path of
`python -m crm profile`), `compute_ratings` of the last day by programme, channel and daypart,
and `segments.count` of the issue's example
expression and of a bucket expression, 5 runs each. References in the same run: a bare per-household
aggregation of the same views (`sum(duration_s) ... GROUP BY household_id`, the least any profile
must read) and a bare `count()` of the day's profiles. Target: segment count <= 1 s at 1M households.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, cpu_seconds, format_row
from crm import segments
from crm.catalogue import load_catalogue
from crm.profiles import build_profiles
from crm.ratings import compute_ratings
from crm.settings import DAY_MS, CrmSettings
from crm.tags import build_tags
from stbcommon.localservers import ClickHouseServer
from warehouse import Warehouse, open_warehouse
from warehouse.columns import KIND_ENUM

DAY = dt.date(2026, 11, 30)
VIEWS = 8
RATING_VIEWS = 6
EXAMPLE = ("interest.football and value in (high, mid) and not lifecycle.dormant and minutes_28d >= 300 "
           "and region = 'north'")
BUCKET = "bucket('bench') < 1000 and minutes_28d > 0"


def generate(store: Warehouse, households: int) -> dict[str, Any]:
    db = store.database
    t_end = ((DAY - dt.date(1970, 1, 1)).days + 1) * DAY_MS
    t0 = t_end - 28 * DAY_MS
    started = time.monotonic()
    store.execute(f"""INSERT INTO {db}.channels (channel_id, xmltv_id, name, genre, updated_ms)
        SELECT toUInt32(101 + number), '', concat('Channel ', toString(number)), '', 1 FROM system.numbers LIMIT 40""")
    store.execute(f"""INSERT INTO {db}.programmes (programme_id, content_id, title, category, series_id, duration_s,
                                                  updated_ms)
        SELECT number + 1, intDiv(number, 10) + 1,
               if(modulo(number, 20) = 0, concat('Premier Football ', toString(number)),
                  concat('Programme ', toString(number))),
               if(modulo(number, 20) = 0, 'Sport',
                  arrayElement(['News', 'Drama', 'Comedy', 'Entertainment', 'Film', 'Sport', 'Children',
                                'Documentary', 'Music', 'Lifestyle'], toUInt32(modulo(number, 10) + 1))),
               '', 1800, 1
        FROM system.numbers LIMIT 2000""")
    n = households * VIEWS * 2
    store.execute(f"""INSERT INTO {db}.events (household_id, device_id, seq, kind, device_ts_ms, ts_ms, received_ms,
                                              region, firmware, channel_id, programme_id, duration_s)
        SELECT h, concat('stb-', toString(h)), number, CAST(if(is_view, 'view', 'tune') AS {KIND_ENUM}),
               ts, ts, ts, 'north', 'bench', toUInt32(101 + modulo(intHash64(v), 40)),
               if(is_view, if(modulo(h, 5) = 0 AND modulo(v, 2) = 0, 1 + 20 * modulo(intHash64(v + 7777777777), 100),
                              1 + modulo(intHash64(v + 7777777777), 2000)), 0),
               toUInt32(if(is_view, 60 + modulo(intHash64(v + 3333333333), 3000), 0))
        FROM (SELECT number, intDiv(number, 2) AS v, modulo(number, 2) = 1 AS is_view,
                     intDiv(v, {VIEWS}) + 1 AS h,
                     {t0} + toInt64(modulo(intHash64(v), {28 * 86400 - 3600})) * 1000 AS ts
              FROM system.numbers LIMIT {n})""")
    # The ratings day: 30-minute airings on every channel, and 6 more views per household on DAY itself.
    d0 = t_end - DAY_MS
    store.execute(f"""INSERT INTO {db}.airings (channel_id, start_ms, stop_ms, programme_id, updated_ms)
        SELECT toUInt32(101 + intDiv(number, 48)), {d0} + modulo(number, 48) * 1800000,
               {d0} + (modulo(number, 48) + 1) * 1800000, 1 + modulo(intHash64(number), 2000), 1
        FROM system.numbers LIMIT {40 * 48}""")
    m = households * RATING_VIEWS * 2
    store.execute(f"""INSERT INTO {db}.events (household_id, device_id, seq, kind, device_ts_ms, ts_ms, received_ms,
                                              region, firmware, channel_id, programme_id, duration_s)
        SELECT h, concat('stb-', toString(h)), {n} + number, CAST(if(is_view, 'view', 'tune') AS {KIND_ENUM}),
               ts, ts, ts, 'north', 'bench', toUInt32(101 + modulo(intHash64(v), 40)),
               if(is_view, 1 + modulo(intHash64(v + 7777777777), 2000), 0),
               toUInt32(if(is_view, 60 + modulo(intHash64(v + 3333333333), 3000), 0))
        FROM (SELECT number, intDiv(number, 2) AS v, modulo(number, 2) = 1 AS is_view,
                     intDiv(v, {RATING_VIEWS}) + 1 AS h,
                     {d0} + toInt64(modulo(intHash64(v + 99), 86400 - 3600)) * 1000 AS ts
              FROM system.numbers LIMIT {m})""")
    n += m
    store.execute(f"""INSERT INTO {db}.subscribers (household_id, status, activated, products, monthly_fee_cents,
                                                   region, imported_ms)
        SELECT number + 1, if(modulo(number, 25) = 0, 'suspended', 'active'),
               toDate('2020-01-01') + toUInt32(modulo(intHash64(number), 2000)),
               if(modulo(number, 3) = 0, 'basic;sports', 'basic'), toInt64(1499 + modulo(number, 5) * 1000),
               arrayElement(['north', 'south', 'east', 'west'], toUInt32(modulo(number, 4) + 1)), 1
        FROM system.numbers LIMIT {households}""")
    return {"events": n, "generate_s": round(time.monotonic() - started, 1)}


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def measure(server: ClickHouseServer, households: int) -> dict[str, Any]:
    store = open_warehouse(server.url(f"bench_crm_{households}"))
    store.migrate()
    try:
        row: dict[str, Any] = {"households": households, **generate(store, households)}
        db, settings, catalogue = store.database, CrmSettings(), load_catalogue()
        _, row["reference_aggregation_s"] = timed(lambda: store.query_rows(
            f"SELECT count() FROM (SELECT household_id, sum(duration_s) FROM {db}.events FINAL "
            f"WHERE kind = 'view' GROUP BY household_id)"))
        cpu0 = cpu_seconds(server.proc.pid) if server.proc else 0.0
        profiled, row["profiles_s"] = timed(lambda: build_profiles(store, DAY, settings, catalogue))
        tags, row["tags_s"] = timed(lambda: build_tags(store, DAY, catalogue))
        row["clickhouse_cpu_s"] = round((cpu_seconds(server.proc.pid) if server.proc else 0.0) - cpu0, 1)
        row["profiled"], row["tags"] = profiled, sum(tags.values())
        row["profile_build_s"] = row["profiles_s"] + row["tags_s"]
        row["ratio_to_reference"] = row["profile_build_s"] / row["reference_aggregation_s"]
        for by in ("programme", "channel", "daypart"):
            rated, row[f"ratings_{by}_s"] = timed(lambda b=by: compute_ratings(store, DAY, b, settings))
            row[f"ratings_{by}_rows"] = len(rated.rows)
        for name, expr in (("example", EXAMPLE), ("bucket", BUCKET)):
            times = []
            for _ in range(5):
                count, t = timed(lambda e=expr: segments.count(store, e, DAY))
                times.append(t)
            row[f"segment_{name}_count"] = count
            row[f"segment_{name}_median_s"] = statistics.median(times)
            row[f"segment_{name}_max_s"] = max(times)
        _, row["reference_count_s"] = timed(lambda: store.query_rows(
            f"SELECT count() FROM {db}.household_profiles FINAL WHERE day = toDate('{DAY}')"))
        return row
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


def run(args: argparse.Namespace) -> Result:
    sizes = [20_000] if args.quick else [100_000, 1_000_000]
    result = Result("crm", {"quick": args.quick, "households": sizes, "views_per_household": VIEWS,
                            "window_days": 28, "day": DAY.isoformat(), "segment_example": EXAMPLE,
                            "segment_bucket": BUCKET, "store": "clickhouse-server 18.16 (same machine)"})
    with tempfile.TemporaryDirectory(prefix="bench-crm-") as tmp:
        server = ClickHouseServer(Path(tmp) / "clickhouse")
        with server:
            for n in sizes:
                print(f"-- {n:,} households", flush=True)
                result.add(**measure(server, n))
    big = result.rows[-1]
    worst = max(big["segment_example_max_s"], big["segment_bucket_max_s"])
    result.headline = {
        "households": big["households"], "profile_build_s": round(big["profile_build_s"], 1),
        "profile_ratio_to_bare_aggregation": round(big["ratio_to_reference"], 2),
        "segment_count_median_s": round(max(big["segment_example_median_s"], big["segment_bucket_median_s"]), 3),
        "segment_count_max_s": round(worst, 3),
        "met": bool(worst <= 1.0), "targets": {"segment_count_s": 1.0, "at_households": 1_000_000},
    }
    print(format_row(result.headline))
    return result
