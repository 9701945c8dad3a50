"""`serve --processes N`: several real serving processes on one port, each answering and hot-reloading."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from benchmarks import serve_model
from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc as pb_grpc
from stbcommon.localservers import free_port
from tests.integration.test_rec_auth import synthetic_model
from tests.integration.test_rec_grpc import start_server

pytestmark = pytest.mark.integration
PROCESSES = 2
CHANNELS = 16  # connections: the kernel spreads them over the processes (all on one: p = 2^-15)


def child_metrics(base_port: int, index: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{base_port + index}/metrics", timeout=5) as r:
        return str(r.read().decode())


def counter(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M))


async def test_processes_share_the_port_answer_and_reload(tmp_path: Path) -> None:
    model_dir, at = synthetic_model(tmp_path)
    down = f"clickhouse://default@127.0.0.1:{free_port()}/nowhere"
    server = start_server(down, model_dir, tmp_path, serve__processes=str(PROCESSES))
    channels = [grpc.aio.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(CHANNELS)]
    try:
        stubs = [pb_grpc.RecommenderStub(ch) for ch in channels]
        request = pb.RecommendRequest(household_id=11, k=5, at_unix_ms=at)
        first = await asyncio.gather(*(stub.Recommend(request, timeout=10) for stub in stubs))
        assert len({r.model_version for r in first}) == 1 and all(len(r.items) == 5 for r in first)
        texts = [await asyncio.to_thread(child_metrics, server.metrics_port, i) for i in range(PROCESSES)]
        served = [counter(t, 'recommender_requests_total{method="Recommend",status="OK"}') for t in texts]
        assert sum(served) == CHANNELS and all(n > 0 for n in served), served  # every process answered

        new = await asyncio.to_thread(serve_model.publish, model_dir, serve_model.users(
            np.random.default_rng(4), 500), 300, serve_model.Guide(at - at % 86_400_000 - 86_400_000, 3, 20), 6)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        pending = set(range(CHANNELS))
        while pending and loop.time() < deadline:  # every connection, so every process, switches
            answers = await asyncio.gather(*(stubs[i].Recommend(request, timeout=10) for i in sorted(pending)))
            pending = {i for i, r in zip(sorted(pending), answers, strict=True) if r.model_version != new}
        assert not pending
        for i in range(PROCESSES):
            text = await asyncio.to_thread(child_metrics, server.metrics_port, i)
            assert counter(text, 'recommender_model_reloads_total{result="ok"}') == 1
    finally:
        for ch in channels:
            await ch.close()
        assert server.stop() == 0, server.log.read_text()[-3000:]
    log = server.log.read_text()
    assert "all serving processes ready" in log and "serving processes stopped" in log
    assert "worker=0" in log and "worker=1" in log and "Traceback" not in log
