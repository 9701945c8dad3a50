"""The serving daemon: grpc.aio on uvloop, health and reflection, hot reload, store sync.

    run(settings) -> exit code

One immutable Snapshot (model version + schedule + fold-in overlay) is served at a time;
requests read the reference once. Two named background tasks, owned by one TaskGroup:

- `model-watch` polls the CURRENT pointer; a new version is loaded in a worker thread and
  swapped in with one assignment, so no request fails or waits during a reload. A version
  that fails to load is logged, counted and skipped until CURRENT changes again.
- `store-sync` refreshes the schedule from the store every `schedule_refresh_s` and folds
  fresh viewing in every `foldin_interval_s`. Store calls run on one dedicated thread (the
  stores are not thread-safe). An embedded chdb store held by another process
  (WarehouseLocked) or an unreachable server is logged once and retried; meanwhile (and at
  start, until the first refresh) the schedule snapshotted in the artifact is served.

SIGTERM/SIGINT: health NOT_SERVING, `server.stop(grace)` (in-flight RPCs finish), tasks
cancelled, store closed, exit 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from recommender import artifact, metrics
from recommender.auth import AuthConfigError, TokenAuth, load_auth
from recommender.dayparts import Dayparts
from recommender.engine import Engine, Snapshot
from recommender.errors import ModelError
from recommender.foldin import fold_in_fresh
from recommender.microbatch import Batcher
from recommender.schedule import Schedule
from recommender.servicer import RecommenderServicer
from recommender.settings import HOUR_MS, RecommenderSettings, ServeSettings
from stbcommon import logs
from stbcommon.metrics import metrics_endpoint
from stbcommon.settings import redact_url
from warehouse import WarehouseError, WarehouseLocked, open_warehouse
from warehouse.base import Warehouse

log = logging.getLogger("recommender.server")
SERVICE = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


class ServingState:
    """The one mutable reference of the process: the Snapshot being served."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._publish_metrics(None)

    def swap(self, snapshot: Snapshot) -> None:
        old = self.snapshot
        self.snapshot = snapshot
        self._publish_metrics(old)

    def _publish_metrics(self, old: Snapshot | None) -> None:
        s = self.snapshot
        if old is not None and old.version != s.version:
            metrics.MODEL_INFO.remove(old.version)
        metrics.MODEL_INFO.labels(s.version).set(1)
        metrics.MODEL_DATA_END.set(s.meta.get("data_window_ms", [0, 0])[1] / 1000)
        metrics.SCHEDULE_AIRINGS.set(len(s.schedule))
        metrics.FOLDIN_HOUSEHOLDS.set(s.overlay.size if s.overlay is not None else 0)


class StoreLink:
    """The store, opened lazily and used from one dedicated thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: Warehouse | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        self._complained = False

    async def call(self, fn: Callable[[Warehouse], T]) -> T | None:
        """fn(store) on the store thread; None (logged) when the store cannot be used now."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._run, fn)
        except WarehouseError as exc:
            level = logging.DEBUG if self._complained else logging.WARNING
            reason = "locked by another process" if isinstance(exc, WarehouseLocked) else "unavailable"
            log.log(level, f"store {reason}; serving from the model artifact's schedule",
                    extra={"store": redact_url(self.url), "error": str(exc)})
            self._complained = True
            metrics.STORE_AVAILABLE.set(0)
            return None
        except Exception:
            log.exception("store task failed", extra={"store": redact_url(self.url)})
            return None

    def _run(self, fn: Callable[[Warehouse], T]) -> T:
        if self._store is None:
            self._store = open_warehouse(self.url)
        result = fn(self._store)
        if self._complained:
            log.info("store available again", extra={"store": redact_url(self.url)})
            self._complained = False
        metrics.STORE_AVAILABLE.set(1)
        return result

    def close(self) -> None:
        """Close the store on its thread; a call still running (a slow query) is not waited for long."""
        def close_store() -> None:
            if self._store is not None:
                self._store.close()
        try:
            self._pool.submit(close_store).result(timeout=10)
        except Exception as exc:
            log.warning("store did not close cleanly", extra={"error": str(exc)})
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class GrpcStack:
    """A started gRPC server with its health service (what `start_grpc` returns)."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    address: str

    async def stop(self, grace_s: float) -> None:
        log.info("stopping", extra={"grace_s": grace_s})
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


async def start_grpc(servicer: pb_grpc.RecommenderServicer, s: ServeSettings,
                     **log_extra: object) -> GrpcStack | None:
    """The gRPC stack every Recommender process serves on: grpc.aio with the concurrency cap,
    health (SERVING for "" and the service), reflection; logs "serving" (with `log_extra`),
    then writes `ready_file`. None (logged) when the address cannot be bound. Shared with the
    benchmark's null server so that its reference runs on exactly this stack."""
    auth = load_auth(s)  # AuthConfigError: the caller reports it (checked before start by the CLI)
    interceptors = [TokenAuth(auth.clients)] if auth.tokens else []
    server = grpc.aio.server(maximum_concurrent_rpcs=s.max_concurrent_rpcs, interceptors=interceptors)
    pb_grpc.add_RecommenderServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if auth.credentials is not None:
        port = server.add_secure_port(s.listen, auth.credentials)
    else:
        port = server.add_insecure_port(s.listen)
    if port == 0:
        log.error("cannot listen", extra={"listen": s.listen})
        return None
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"{s.listen.rpartition(':')[0]}:{port}"
    if auth.tokens and auth.credentials is None:
        log.warning("bearer tokens on a plaintext port: set serve.tls_cert and serve.tls_key "
                    "unless the network path is trusted", extra={"listen": address})
    log.info("serving", extra={"listen": address, "port": port, "tls": auth.credentials is not None,
                               "mtls": auth.mtls, "token_clients": len(auth.clients), **log_extra})
    if s.ready_file:
        await asyncio.to_thread(_write_atomically, s.ready_file, address + "\n")
    return GrpcStack(server, health_servicer, port, address)


class RecommenderServer:
    def __init__(self, settings: RecommenderSettings) -> None:
        self.settings = settings
        self.model_dir = Path(settings.model.dir)
        self.dayparts = Dayparts.from_settings(settings.daypart)
        self.engine = Engine(settings.serve, self.dayparts)
        self.store = StoreLink(settings.store.url)
        self._foldin_now = asyncio.Event()
        self._failed_version = ""

    def _load(self, version: str | None) -> Snapshot:
        a = artifact.load(self.model_dir, version, blend=self.settings.daypart.blend)
        return Snapshot.from_artifact(a)

    async def run(self, stop: asyncio.Event) -> int:
        s = self.settings.serve
        try:
            first = await asyncio.to_thread(self._load, None)
        except ModelError as exc:
            log.error("no model to serve", extra={"error": str(exc), "model_dir": str(self.model_dir)})
            return 1
        self.state = ServingState(first)
        log.info("model loaded", extra={"version": first.version, "households": first.model.users.size,
                                        "contents": len(first.model.content_ids), "airings": len(first.schedule)})
        try:
            batcher = (Batcher(self.state, self.engine, s.batch_max, s.batch_max_wait_ms / 1000)
                       if s.batch_max > 1 else None)
            grpc_stack = await start_grpc(RecommenderServicer(self.state, self.engine, batcher), s,
                                          model_version=first.version, batch_max=s.batch_max)
        except AuthConfigError as exc:
            log.error("cannot start: TLS or tokens settings", extra={"problems": exc.problems})
            return 2
        if grpc_stack is None:
            return 1
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._watch_model(), name="model-watch"),
                         tg.create_task(self._sync_store(), name="store-sync")]
                await stop.wait()
                await grpc_stack.stop(s.shutdown_grace_s)
                for task in tasks:
                    task.cancel()
        finally:
            await asyncio.to_thread(self.store.close)
        log.info("recommender stopped")
        return 0

    # --- background tasks -----------------------------------------------------------------

    async def _watch_model(self) -> None:
        while True:
            await asyncio.sleep(self.settings.serve.reload_poll_s)
            version = await asyncio.to_thread(artifact.read_current, self.model_dir)
            if version is None or version == self.state.snapshot.version or version == self._failed_version:
                continue
            t = time.monotonic()
            try:
                snap = await asyncio.to_thread(self._load, version)
            except ModelError as exc:
                self._failed_version = version
                metrics.RELOADS.labels("failed").inc()
                log.error("new model version cannot be loaded; still serving the old one",
                          extra={"version": version, "serving": self.state.snapshot.version, "error": str(exc)})
                continue
            current = self.state.snapshot
            if current.schedule.source == "store":  # fresher than the new artifact's snapshot
                snap = snap.with_schedule(current.schedule)
            self.state.swap(snap)
            metrics.RELOADS.labels("ok").inc()
            log.info("model reloaded", extra={"version": version, "previous": current.version,
                                              "load_s": round(time.monotonic() - t, 3)})
            self._foldin_now.set()

    async def _sync_store(self) -> None:
        s = self.settings.serve
        next_schedule = time.monotonic()  # at once: the artifact's airings serve until the store answers
        next_foldin = time.monotonic() + (s.foldin_interval_s if s.foldin_interval_s else float("inf"))
        while True:
            wait = max(0.0, min(next_schedule, next_foldin) - time.monotonic())
            try:
                await asyncio.wait_for(self._foldin_now.wait(), wait)
            except TimeoutError:
                pass
            if self._foldin_now.is_set() and s.foldin_interval_s:
                next_foldin = time.monotonic()
            self._foldin_now.clear()
            if time.monotonic() >= next_schedule:
                await self._refresh_schedule()
                next_schedule = time.monotonic() + s.schedule_refresh_s
            if time.monotonic() >= next_foldin:
                await self._fold_in()
                next_foldin = time.monotonic() + s.foldin_interval_s

    async def _refresh_schedule(self) -> None:
        t = now_ms()
        horizon = int(self.settings.serve.schedule_horizon_hours * HOUR_MS)
        fresh = await self.store.call(lambda st: Schedule.fetch(st, t - 12 * HOUR_MS, t + horizon, t))
        if fresh is None:
            metrics.SCHEDULE_REFRESHES.labels("failed").inc()
            return
        current = self.state.snapshot
        if not len(fresh) and len(current.schedule):
            metrics.SCHEDULE_REFRESHES.labels("empty").inc()
            log.warning("the store has no airings around now; keeping the schedule in use",
                        extra={"source": current.schedule.source, "airings": len(current.schedule)})
            return
        self.state.swap(self.state.snapshot.with_schedule(fresh))
        metrics.SCHEDULE_REFRESHES.labels("ok").inc()
        log.info("schedule refreshed", extra={"airings": len(fresh), "span_ms": list(fresh.span)})

    async def _fold_in(self) -> None:
        snap = self.state.snapshot
        t = now_ms()
        started = time.monotonic()
        overlay = await self.store.call(lambda st: fold_in_fresh(
            snap.model, snap.history, st, t, self.settings.signal, self.dayparts))
        if self.state.snapshot.version != snap.version:
            return  # a new model arrived meanwhile; its own fold-in follows
        if overlay is None:
            metrics.FOLDINS.labels("none").inc()
            return
        self.state.swap(self.state.snapshot.with_overlay(overlay))
        metrics.FOLDINS.labels("ok").inc()
        log.info("fresh viewing folded in", extra={"households": overlay.size,
                                                   "took_s": round(time.monotonic() - started, 3)})


def _write_atomically(path: str, text: str) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _ProcessIndex(logging.Filter):
    """Adds `worker=i` to every record of a process started by `serve --processes N`."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def run(settings: RecommenderSettings, process_index: int | None = None) -> int:
    logs.configure(settings.log.level, settings.log.format)
    if process_index is not None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ProcessIndex(process_index))
    # clickhouse-driver logs every failed connect with a traceback; StoreLink logs it once.
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    import faiss

    faiss.omp_set_num_threads(1)  # one request = one small search; threads only add contention
    with metrics_endpoint(settings.metrics.host, settings.metrics.port):
        return uvloop.run(_main(settings))


async def _main(settings: RecommenderSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("recommender starting", extra={"store": redact_url(settings.store.url),
                                            "model_dir": settings.model.dir, "listen": settings.serve.listen})
    return await RecommenderServer(settings).run(stop)
