"""A small world for the console's tests, written straight into a migrated store: profiles and tags
of two days, ratings, churn scores and alerts, recommendation events, a channel and programmes.

Array columns are written by INSERT ... SELECT in the store (as the CRM does), never from Python.
"""

from __future__ import annotations

import numpy as np

from warehouse import Warehouse

DAYS = ("2026-11-30", "2026-12-01")
HOUSEHOLDS = 300
FOOTBALL = 100            # households 1, 4, 7, ... carry interest.football on both days
DAY_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def seed(store: Warehouse) -> None:
    db = store.database
    for i, day in enumerate(DAYS):
        run = 1000 + i
        store.execute(f"INSERT INTO {db}.household_profiles (household_id, day, minutes_7d, minutes_28d, "
                      f"active_days_28d, days_since_view, region, status, products, tenure_days, computed_ms) "
                      f"SELECT number + 1, toDate('{day}'), 300 + number % 50, 1200 + number, 20, number % 5, "
                      f"'north', 'active', 'basic', 400, {run} FROM system.numbers LIMIT {HOUSEHOLDS}")
        store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                      f"SELECT number * 3 + 1, 'interest.football', '', 1.0, toDate('{day}'), {run} "
                      f"FROM system.numbers LIMIT {FOOTBALL}")
    store.execute(f"INSERT INTO {db}.channels (channel_id, xmltv_id, name, genre, updated_ms) "
                  f"SELECT number + 1, '', concat('Channel ', toString(number + 1)), '', 1 FROM system.numbers LIMIT 5")
    store.execute(f"INSERT INTO {db}.programmes (programme_id, content_id, title, updated_ms) "
                  f"SELECT number + 1, number + 1, concat('Match ', toString(number + 1)), 1 "
                  f"FROM system.numbers LIMIT 20")
    for by, labels in (("channel", ""), ("daypart", "night morning daytime afternoon prime late"),
                       ("programme", "")):
        n = 6 if by == "daypart" else 5
        daypart = "arrayElement(splitByChar(' ', '" + labels + "'), number + 1)" if labels else "''"
        store.execute(f"INSERT INTO {db}.ratings_daily (day, by, segment, channel_id, start_ms, stop_ms, "
                      f"programme_id, daypart, title, rating, reach, share, avg_minutes, credited_minutes, reached, "
                      f"universe, computed_ms) SELECT toDate('{DAYS[1]}'), '{by}', '', "
                      f"{'0' if labels else 'number + 1'}, {DAY_MS} + number * 3600000, {DAY_MS} + number * 3600000 "
                      f"+ 1800000, number + 1, {daypart}, concat('Match ', toString(number + 1)), "
                      f"0.01 * (number + 1), 0.05 * (number + 1), 0.1 * (number + 1), 20, 1000, 15 * (number + 1), "
                      f"{HOUSEHOLDS}, 1 FROM system.numbers LIMIT {n}")
    store.execute(f"INSERT INTO {db}.churn_scores (household_id, day, score, band, reasons, model_version, "
                  f"computed_ms) SELECT number + 1, toDate('{DAYS[1]}'), (number % 100) / 100, "
                  f"multiIf(number % 100 >= 25, 'high', number % 100 >= 8, 'medium', 'low'), "
                  f"['watches 60 % less than usual', 'no viewing for 5 days'], 'churn-v1', 1 "
                  f"FROM system.numbers LIMIT {HOUSEHOLDS}")
    store.execute(f"INSERT INTO {db}.churn_alerts (household_id, day, score, reasons, model_version, created_ms) "
                  f"SELECT number + 1, toDate('{DAYS[1]}'), 0.99, ['no viewing for 5 days'], 'churn-v1', 1 "
                  f"FROM system.numbers LIMIT 3")
    # 200 impressions for each of two model versions; v2 gets twice v1's clicks
    store.execute(f"INSERT INTO {db}.events (household_id, device_id, seq, kind, device_ts_ms, ts_ms, received_ms, "
                  f"request_id, model_version, programme_id) SELECT number % {HOUSEHOLDS} + 1, 'stb', number, "
                  f"'rec_impression', {DAY_MS} + number * 1000, {DAY_MS} + number * 1000, {DAY_MS} + number * 1000, "
                  f"concat('r', toString(number)), if(number % 2 = 0, 'v1', 'v2'), number % 20 + 1 "
                  f"FROM system.numbers LIMIT 400")
    store.execute(f"INSERT INTO {db}.events (household_id, device_id, seq, kind, device_ts_ms, ts_ms, received_ms, "
                  f"request_id, programme_id) SELECT number % {HOUSEHOLDS} + 1, 'stb', 100000 + number, 'rec_click', "
                  f"{DAY_MS} + number * 1000 + 500, {DAY_MS} + number * 1000 + 500, {DAY_MS} + number * 1000 + 500, "
                  f"concat('r', toString(number)), number % 20 + 1 FROM system.numbers "
                  f"WHERE number % 10 = 1 OR number % 20 = 0 LIMIT 60")


def contacts(store: Warehouse, campaign: str, rows: list[tuple[int, int, str, str, int]]) -> None:
    """(household, holdout, state, variant, at_ms) rows of `contacts` (wave 1): simulated responses."""
    def text(values: list[str]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    store.insert_columns("contacts", {
        "campaign": text([campaign] * len(rows)), "household_id": np.array([r[0] for r in rows], dtype=np.uint64),
        "holdout": np.array([r[1] for r in rows], dtype=np.uint8), "wave": np.ones(len(rows), dtype=np.uint16),
        "state": text([r[2] for r in rows]), "variant": text([r[3] for r in rows]),
        "message_id": text([f"m{r[0]}" for r in rows]), "at_ms": np.array([r[4] for r in rows], dtype=np.int64)})


def sends(store: Warehouse, campaign: str, rows: list[tuple[int, int, str, int]]) -> None:
    """(household, wave, variant, decided_ms) rows of `deliveries` with status `sent`, and one Thompson
    decision of `allocations` per (wave, decided_ms) with the variants' shares as sent."""
    def text(values: list[str]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    n = len(rows)
    store.insert_columns("deliveries", {
        "campaign": text([campaign] * n), "household_id": np.array([r[0] for r in rows], dtype=np.uint64),
        "device_id": text([f"stb-{r[0]}" for r in rows]), "region": text(["north"] * n), "product": text([""] * n),
        "wave": np.array([r[1] for r in rows], dtype=np.uint16), "variant": text([r[2] for r in rows]),
        "occasion": text(["once"] * n), "message_id": text([f"m{r[0]}-{r[1]}" for r in rows]),
        "status": text(["sent"] * n), "reason": text([""] * n),
        "decided_ms": np.array([r[3] for r in rows], dtype=np.int64), "expires_ms": np.zeros(n, dtype=np.int64)})
    decisions: dict[tuple[int, int], dict[str, int]] = {}
    for _, wave, variant, at in rows:
        counts = decisions.setdefault((wave, at), {})
        counts[variant] = counts.get(variant, 0) + 1
    alloc = [(wave, at, v, k / sum(c.values())) for (wave, at), c in decisions.items() for v, k in c.items()]
    store.insert_columns("allocations", {
        "campaign": text([campaign] * len(alloc)), "wave": np.array([a[0] for a in alloc], dtype=np.uint16),
        "variant": text([a[2] for a in alloc]), "share": np.array([a[3] for a in alloc], dtype=np.float64),
        "sent": np.zeros(len(alloc), dtype=np.uint64), "converted": np.zeros(len(alloc), dtype=np.uint64),
        "decided_ms": np.array([a[1] for a in alloc], dtype=np.int64)})
