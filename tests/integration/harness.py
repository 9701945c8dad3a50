"""Drive the real collector as a subprocess and observe it through its metrics, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from collector.process import CollectorProcess as Collector  # noqa: F401  (re-exported)
from firmware_sim.loadgen import Traffic, publish  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[2]


def count_events(store_url: str, *, final: bool = True) -> int:
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        sql = f"SELECT count() FROM {wh.database}.events{' FINAL' if final else ''}"
        return int(wh.query_rows(sql)[0][0])
    finally:
        wh.close()


def differing_copies(store_url: str) -> int:
    """Events (device, seq) stored more than once with different content. Redeliveries are
    allowed after a fault, but only as identical copies (ReplacingMergeTree keeps any one)."""
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        return int(wh.query_rows(
            f"SELECT count() FROM (SELECT device_id, seq, uniqExact(household_id, kind, device_ts_ms, firmware, "
            f"region, channel_id, programme_id, duration_s, power_state) AS versions "
            f"FROM {wh.database}.events GROUP BY device_id, seq HAVING versions > 1)")[0][0])
    finally:
        wh.close()


def dead_letter_reasons(store_url: str) -> dict[str, int]:
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        return {str(r): int(c) for r, c in wh.query_rows(
            f"SELECT reason, count() FROM {wh.database}.dead_letters GROUP BY reason")}
    finally:
        wh.close()

