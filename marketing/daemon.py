"""`python -m marketing run`: cycles until SIGTERM, with metrics and structured logs.

Shutdown: the signal handler only sets a flag; the cycle in progress finishes (its messages
acknowledged by the broker and recorded), then the daemon exits 0. Between cycles it sleeps
in short steps so a signal is honoured within a second. A cycle that fails on a retryable
error (store or broker away) is logged and tried again at the next poll; nothing is recorded
as sent that the broker did not acknowledge.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import time
from collections.abc import Sequence
from types import FrameType

from prometheus_client import Counter, Gauge, Histogram

from marketing.engine import CycleResult, Engine
from marketing.errors import MarketingError
from marketing.publisher import Outgoing, PublishIncomplete, publish_blocking
from marketing.settings import MarketingSettings
from stbcommon.metrics import metrics_endpoint
from stbcommon.settings import redacted
from warehouse import WarehouseError, open_warehouse

log = logging.getLogger(__name__)
CYCLES = Counter("marketing_cycles_total", "Cycles run, by outcome", ["outcome"])
DECISIONS = Counter("marketing_decisions_total", "Send decisions recorded in deliveries, by status", ["status"])
CYCLE_SECONDS = Histogram("marketing_cycle_seconds", "Duration of a cycle",
                          buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
ACTIVE = Gauge("marketing_active_campaigns", "Campaigns active at the last cycle")


def run_daemon(settings: MarketingSettings, *, once: bool = False, check_config: bool = False) -> int:
    if check_config:
        print(json.dumps(_as_dict(redacted(settings)), indent=2, default=str))
        return 0
    stop = {"now": False}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    warehouse = open_warehouse(settings.store.url)
    try:
        warehouse.migrate()
        engine = Engine(settings, warehouse, lambda msgs: _publish(settings, msgs))
        with metrics_endpoint(settings.metrics.host, settings.metrics.port):
            log.info("marketing daemon started", extra={"store": settings.store.url.split("@")[-1],
                                                        "poll_s": settings.poll_s, "once": once})
            while not stop["now"]:
                result = _one_cycle(engine)
                if once:
                    if result is not None:
                        print(summary_line(result), flush=True)
                    return 0 if result is not None else 1
                deadline = time.monotonic() + settings.poll_s
                while not stop["now"] and time.monotonic() < deadline:
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        log.info("marketing daemon stopped")
        return 0
    finally:
        warehouse.close()


def _one_cycle(engine: Engine) -> CycleResult | None:
    started = time.monotonic()
    try:
        result = engine.cycle(dt.datetime.now(dt.UTC))
    except (MarketingError, WarehouseError) as exc:
        retry = getattr(exc, "retryable", False)
        CYCLES.labels("failed").inc()
        log.error("cycle failed%s: %s", " (will retry)" if retry else "", exc)
        return None
    CYCLE_SECONDS.observe(time.monotonic() - started)
    CYCLES.labels("ok").inc()
    ACTIVE.set(result.campaigns)
    for status, n in result.statuses.items():
        DECISIONS.labels(status).inc(n)
    return result


def summary_line(result: CycleResult) -> str:
    """What `run --once` prints: campaigns, occasions, decisions by status, state changes."""
    decisions = ", ".join(f"{n:,} {s}" for s, n in sorted(result.statuses.items())) or "no messages due"
    changes = ", ".join(f"{n:,} {s}" for s, n in sorted(result.state_changes.items())) or "none"
    return (f"cycle: {result.campaigns} active campaign(s), {result.occasions} occasion(s); {decisions}; "
            f"state changes: {changes} ({result.seconds:.1f} s)")


def _publish(settings: MarketingSettings, messages: Sequence[Outgoing]) -> list[int]:
    """PUBACK codes per message; when the broker stays away, what was acknowledged and -1 for the rest
    (the engine records those as failed and tries them again next cycle)."""
    try:
        result = publish_blocking(settings.mqtt, messages)
    except PublishIncomplete as exc:
        log.error("publish incomplete: %s", exc)
        return list(exc.reason_codes)
    log.info("published %d messages in %.1f s (%d refused)", len(messages), result.seconds, result.refused)
    return list(result.reason_codes)


def _as_dict(obj: object) -> object:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj
