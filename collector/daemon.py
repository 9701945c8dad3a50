"""Process lifecycle: one worker in-process, or a supervisor of N worker processes."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable
from typing import Any

import uvloop

from collector.decoder import Decoder
from collector.mqtt_source import MqttSource
from collector.pipeline import Pipeline
from collector.settings import CollectorSettings
from collector.sink import open_sink
from stbcommon import logs
from stbcommon.metrics import metrics_endpoint
from stbcommon.settings import redact_url
from warehouse.errors import WarehouseError

log = logging.getLogger("collector")


def run(settings: CollectorSettings) -> int:
    logs.configure(settings.log.level, settings.log.format)
    if settings.workers > 1:
        from collector.supervisor import supervise

        return supervise(settings)
    return run_worker(settings, 0)


def run_worker(settings: CollectorSettings, worker: int) -> int:
    # Decoding allocates millions of short-lived lists without cycles; default GC
    # thresholds make the collector walk them over and over (measured: 2x slower decode).
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
    port = settings.metrics.port + worker if settings.metrics.port else 0
    with metrics_endpoint(settings.metrics.host, port):
        return uvloop.run(_worker(settings, worker))


async def _worker(settings: CollectorSettings, worker: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    v = settings.validation
    decoder = Decoder(clock_tolerance_ms=int(v.clock_tolerance_s * 1000), max_future_ms=v.max_future_s * 1000,
                      dead_letter_bytes=v.dead_letter_payload_bytes)
    sink = open_sink(settings.store.url, retry_min_s=settings.store.retry_min_s,
                     retry_max_s=settings.store.retry_max_s, writers=settings.store.writers)
    log.info("collector starting", extra={
        "worker": worker, "mqtt": redact_url(settings.mqtt.url), "store": redact_url(settings.store.url),
        "group": settings.mqtt.group, "client_id": settings.mqtt.client_id_for(worker)})
    try:
        try:
            if not await _until_stopped(sink.start(), stop):
                return 0
        except WarehouseError as exc:  # retryable ones are retried inside start()
            log.error("store unusable", extra={"store": redact_url(settings.store.url), "error": str(exc)})
            return 2
        source = MqttSource(settings.mqtt, worker=worker)
        try:
            return await _serve(source, Pipeline(source, sink, decoder, settings.batch), stop,
                                settings.shutdown_grace_s)
        finally:
            await source.aclose()
    finally:
        await sink.aclose()


async def _until_stopped(start: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Run a start-up step that may retry for a long time; False if SIGTERM came first."""
    step = asyncio.ensure_future(start)
    stopper = asyncio.create_task(stop.wait(), name="stop-wait")
    done, _ = await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if step in done:
        step.result()
        return True
    step.cancel()
    await asyncio.gather(step, return_exceptions=True)
    log.info("stopped during start-up")
    return False


async def _serve(source: MqttSource, pipeline: Pipeline, stop: asyncio.Event, grace_s: float) -> int:
    # The pipeline runs while the source connects: a broker pushes a session's whole backlog
    # right behind the CONNACK and only then answers the SUBSCRIBE (measured with mosquitto:
    # 1M queued messages, 6-8 s), so waiting for the SUBACK first would leave it all idle.
    running = asyncio.create_task(pipeline.run(), name="pipeline")
    connecting = asyncio.create_task(source.__aenter__(), name="mqtt-connect")
    stopper = asyncio.create_task(stop.wait(), name="stop-wait")
    await asyncio.wait({running, stopper, connecting}, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
        await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if connecting.done() and (error := connecting.exception()) is not None:  # it retries all it can: a bug
        log.error("mqtt source failed to start", exc_info=error)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        return 1
    try:
        if running.done():  # the pipeline only ends by itself on an unrecoverable error
            log.error("pipeline failed; exiting (unacknowledged messages stay with the broker)",
                      exc_info=running.exception())
            return 1
        log.info("SIGTERM: draining", extra={"grace_s": grace_s})
        await source.stop_receiving()
        pipeline.drain()
        try:
            await asyncio.wait_for(running, grace_s)
        except TimeoutError:
            log.error("shutdown grace period over with batches uncommitted; the broker keeps and "
                      "redelivers every unacknowledged message", extra={"grace_s": grace_s})
            return 1
    finally:
        if not connecting.done():  # SIGTERM before the SUBACK: drained on the connection as it was
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
    log.info("collector stopped", extra={"messages": pipeline.committed_messages,
                                         "rows": pipeline.committed_rows})
    return 0
