"""The real serving process (`python -m recommender serve`) called over a real gRPC channel."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from recommender import artifact
from recommender.train import train
from stbcommon.localservers import ClickHouseServer, free_port
from stbcommon.ports import free_ports
from tests.integration.test_rec_store import small_settings
from tests.unit.test_rec_planted import DAY_MS, HOUR_MS, PlantedWorld, event_columns, planted_world
from warehouse import open_warehouse

pytestmark = pytest.mark.integration
DAYS = 10
SMALL_ALS_ENV = {"STB_RECOMMENDER__ALS__FACTORS": "8", "STB_RECOMMENDER__ALS__REGULARIZATION": "5",
                 "STB_RECOMMENDER__ALS__ALPHA": "2", "STB_RECOMMENDER__ALS__ITERATIONS": "10"}


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    address: str
    metrics_port: int
    log: Path

    def wait_log(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.log.read_text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


def start_server(store_url: str, model_dir: Path, folder: Path, **env_settings: str) -> Served:
    ready = folder / f"ready-{uuid.uuid4().hex[:6]}"
    log = folder / f"serve-{uuid.uuid4().hex[:6]}.log"
    metrics_port = free_ports(int(env_settings.get("serve__processes", "1")))[0]  # process i: metrics_port + i
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "STB_RECOMMENDER__SERVE__RELOAD_POLL_S": "0.2",
           **{f"STB_RECOMMENDER__{k.upper()}": v for k, v in env_settings.items()}}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "recommender", "serve", "--store", store_url,
                                 "--model-dir", str(model_dir), "--listen", "127.0.0.1:0", "--ready-file", str(ready),
                                 "--metrics-port", str(metrics_port), "--log-format", "text"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return Served(proc, ready.read_text().strip(), metrics_port, log)


def recent_world() -> PlantedWorld:
    """A world whose data ends yesterday, so 'now' is inside its schedule."""
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    return planted_world(households=72, days=DAYS, seed=9, start_ms=today - DAYS * DAY_MS)


@pytest.fixture(scope="module")
def world() -> PlantedWorld:
    return recent_world()


@pytest.fixture(scope="module")
def served(clickhouse_server: ClickHouseServer, world: PlantedWorld,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str, Path]]:
    if not clickhouse_server.is_running():
        clickhouse_server.start()
    url = clickhouse_server.url(f"rec_{uuid.uuid4().hex[:10]}")
    st = open_warehouse(url)
    st.migrate()
    world.insert(st)
    st.close()
    folder = tmp_path_factory.mktemp("rec-serve")
    model_dir = folder / "models"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **SMALL_ALS_ENV}
    done = subprocess.run([sys.executable, "-m", "recommender", "train", "--store", url, "--model-dir",
                           str(model_dir), "--no-eval", "--no-progress", "--log-format", "text"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(artifact.read_current(model_dir)) in done.stdout
    server = start_server(url, model_dir, folder, serve__foldin_interval_s="0.5")
    yield server, url, model_dir
    assert server.stop() == 0, server.log.read_text()
    assert "recommender stopped" in server.log.read_text()


@pytest.fixture
async def stub(served: tuple[Served, str, Path]) -> AsyncIterator[pb_grpc.RecommenderStub]:
    channel = grpc.aio.insecure_channel(served[0].address)
    yield pb_grpc.RecommenderStub(channel)
    await channel.close()


def prime(world: PlantedWorld) -> int:
    return world.end_ms + 19 * HOUR_MS


async def test_recommend_personal(stub: pb_grpc.RecommenderStub, world: PlantedWorld) -> None:
    hh = int(world.households[3])
    r = await stub.Recommend(pb.RecommendRequest(household_id=hh, k=5, at_unix_ms=prime(world), window_minutes=120))
    assert len(r.items) == 5 and r.request_id and r.model_version
    assert r.items[0].content_id == world.favourite[hh] and r.items[0].reason.startswith("personal")
    assert len({i.content_id for i in r.items}) == 5
    assert all(i.programme_id // 1000 == i.content_id and i.stop_unix_ms > prime(world) for i in r.items)
    now = await stub.Recommend(pb.RecommendRequest(household_id=hh))   # defaults: now, 180 minutes, k 10
    assert len(now.items) == 10
    assert all(i.start_unix_ms < time.time() * 1000 + 181 * 60_000 for i in now.items)


async def test_entitlements_and_window(stub: pb_grpc.RecommenderStub, world: PlantedWorld) -> None:
    at = prime(world)
    r = await stub.Recommend(pb.RecommendRequest(household_id=int(world.households[0]), k=20, at_unix_ms=at,
                                                 window_minutes=45, channel_ids=[103, 105]))
    assert r.items and {i.channel_id for i in r.items} <= {103, 105}
    assert all(i.start_unix_ms < at + 45 * 60_000 and i.stop_unix_ms > at for i in r.items)


async def test_similar_and_popular(stub: pb_grpc.RecommenderStub, world: PlantedWorld) -> None:
    fav = world.favourite[int(world.households[0])]
    s = await stub.SimilarProgrammes(pb.SimilarRequest(content_id=fav, k=4, at_unix_ms=prime(world)))
    assert len(s.items) == 4 and fav not in [i.content_id for i in s.items]
    assert all(i.reason == "similar" for i in s.items)
    p = await stub.Popular(pb.PopularRequest(at_unix_ms=prime(world), window_minutes=60, k=5))
    assert len(p.items) == 5 and all(i.reason == "popular" for i in p.items)


async def test_cold_start_then_fold_in(stub: pb_grpc.RecommenderStub, world: PlantedWorld,
                                       served: tuple[Served, str, Path]) -> None:
    newcomer = 777_000
    req = pb.RecommendRequest(household_id=newcomer, k=5, at_unix_ms=prime(world), window_minutes=120)
    cold = await stub.Recommend(req)
    assert [i.reason for i in cold.items] == ["cold_start:popular"] * 5
    # the newcomer watches series 1004 three times after the model's data end
    st = open_warehouse(served[1])
    now = int(time.time() * 1000)
    views = [(newcomer, now - (k + 1) * HOUR_MS, 101, 1004001 + k, 1700) for k in range(3)]
    st.insert_columns("events", event_columns(views, seq0=0))
    st.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        warm = await stub.Recommend(req)
        if warm.items[0].reason == "personal":
            break
        await asyncio.sleep(0.2)
    assert warm.items[0].reason == "personal" and warm.items[0].content_id == 1004


@pytest.mark.parametrize(("method", "request_", "code"), [
    ("Recommend", pb.RecommendRequest(household_id=0), grpc.StatusCode.INVALID_ARGUMENT),
    ("Recommend", pb.RecommendRequest(household_id=5001, k=5000), grpc.StatusCode.INVALID_ARGUMENT),
    ("Recommend", pb.RecommendRequest(household_id=5001, at_unix_ms=1_767_225_600), grpc.StatusCode.INVALID_ARGUMENT),
    ("Recommend", pb.RecommendRequest(household_id=5001, window_minutes=100_000), grpc.StatusCode.INVALID_ARGUMENT),
    ("Popular", pb.PopularRequest(at_unix_ms=-1), grpc.StatusCode.INVALID_ARGUMENT),
    ("SimilarProgrammes", pb.SimilarRequest(content_id=0), grpc.StatusCode.INVALID_ARGUMENT),
    ("SimilarProgrammes", pb.SimilarRequest(content_id=31337), grpc.StatusCode.NOT_FOUND),
])
async def test_invalid_arguments(stub: pb_grpc.RecommenderStub, method: str, request_: object,
                                 code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(getattr(stub, method)(request_), 5)
    assert err.value.code() == code and err.value.details()


async def test_health_reflection_metrics(served: tuple[Served, str, Path]) -> None:
    async with grpc.aio.insecure_channel(served[0].address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        r = await health.Check(health_pb2.HealthCheckRequest(service="stb.recommender.v1.Recommender"))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        names: list[str] = []
        async for resp in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            names += [s.name for s in resp.list_services_response.service]
        assert "stb.recommender.v1.Recommender" in names and "grpc.health.v1.Health" in names
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{served[0].metrics_port}/metrics", timeout=5).read().decode())
    assert 'recommender_requests_total{method="Recommend",status="OK"}' in text
    assert "recommender_model_info{version=" in text


async def test_hot_reload_under_load(stub: pb_grpc.RecommenderStub, world: PlantedWorld,
                                     served: tuple[Served, str, Path]) -> None:
    _, url, model_dir = served
    before = artifact.read_current(model_dir)
    households = world.households[:16].tolist()
    failures: list[BaseException] = []
    versions: list[str] = []
    stop, switched = asyncio.Event(), asyncio.Event()
    new_version = ""

    async def client(hh: int) -> None:
        while not stop.is_set():
            try:
                r = await stub.Recommend(pb.RecommendRequest(household_id=hh, k=5, at_unix_ms=prime(world)),
                                         timeout=5)
                assert len(r.items) == 5
                versions.append(r.model_version)
                if r.model_version == new_version:
                    switched.set()
            except BaseException as exc:
                failures.append(exc)

    def retrain() -> str:
        st = open_warehouse(url)
        try:
            return str(train(small_settings(url, model_dir), st, evaluate=False)["version"])
        finally:
            st.close()

    tasks = [asyncio.create_task(client(hh), name=f"client-{hh}") for hh in households]
    await asyncio.sleep(0.5)
    new_version = await asyncio.to_thread(retrain)
    await asyncio.wait_for(switched.wait(), 15)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    assert not failures, failures[:3]
    assert versions[0] == before and versions[-1] == new_version
    switch = versions.index(new_version)
    assert len(versions) > 100 and before not in versions[switch + 64:]  # at most the in-flight ones after


def test_serves_from_the_artifact_when_chdb_is_locked(world: PlantedWorld, tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'chdb'}"
    st = open_warehouse(url)            # this process holds the chdb folder (as a collector would)
    try:
        st.migrate()
        world.insert(st)
        train(small_settings(url, tmp_path / "models"), st, evaluate=False)
        server = start_server(url, tmp_path / "models", tmp_path)
        try:
            with grpc.insecure_channel(server.address) as channel:
                r = pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(
                    household_id=int(world.households[0]), k=3, at_unix_ms=prime(world)), timeout=5)
            assert len(r.items) == 3 and r.items[0].content_id == world.favourite[int(world.households[0])]
            server.wait_log("store locked by another process; serving from the model artifact's schedule")
        finally:
            assert server.stop() == 0
        assert "Traceback" not in server.log.read_text()
    finally:
        st.close()


def test_serves_from_the_artifact_when_the_store_is_down(world: PlantedWorld, served: tuple[Served, str, Path],
                                                         tmp_path: Path) -> None:
    down = f"clickhouse://default@127.0.0.1:{free_port()}/nowhere"
    server = start_server(down, served[2], tmp_path)
    try:
        with grpc.insecure_channel(server.address) as channel:
            hh = int(world.households[5])
            r = pb_grpc.RecommenderStub(channel).Recommend(
                pb.RecommendRequest(household_id=hh, k=3, at_unix_ms=prime(world)), timeout=5)
        assert len(r.items) == 3 and r.items[0].content_id == world.favourite[hh]
        server.wait_log("store unavailable; serving from the model artifact's schedule")
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()
