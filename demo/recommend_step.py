"""The demo's recommender step: train on what was collected, serve it over gRPC, ask for picks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from firmware_sim.fleet import FleetPlan


def run_recommendations(store_url: str, work: Path, plan: FleetPlan, households: int = 3) -> None:
    """Train on what was collected, serve it over gRPC, ask for tomorrow evening's picks."""
    import datetime as dt
    import subprocess

    import grpc

    from proto import recommender_pb2 as pb
    from proto import recommender_pb2_grpc as pb_grpc
    from stbcommon.localservers import free_port
    from warehouse import open_warehouse

    model_dir = work / "model"
    print("\n== Recommendations (train, then serve over gRPC)", flush=True)
    train = subprocess.run([sys.executable, "-m", "recommender", "train", "--store", store_url, "--model-dir",
                            str(model_dir), "--no-eval"], capture_output=True, text=True, timeout=600)
    if train.returncode != 0:
        print("   training failed:\n" + train.stderr[-2000:], flush=True)
        return
    wh = open_warehouse(store_url)  # read names now: the server will hold the embedded store
    try:
        db = wh.database
        titles = dict(wh.query_rows(f"SELECT content_id, any(title) FROM {db}.programmes FINAL GROUP BY content_id"))
        channels = dict(wh.query_rows(f"SELECT channel_id, name FROM {db}.channels FINAL"))
        top = [r[0] for r in wh.query_rows(
            f"SELECT household_id, sum(duration_s) AS s FROM {db}.events FINAL WHERE kind = 'view' "
            f"GROUP BY household_id ORDER BY s DESC LIMIT {households}")]
    finally:
        wh.close()
    port, ready = free_port(), work / "recommender.ready"
    log = (work / "recommender.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "recommender", "serve", "--store", store_url, "--model-dir",
                               str(model_dir), "--listen", f"127.0.0.1:{port}", "--ready-file", str(ready)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                print("   the recommender did not start; see recommender.log", flush=True)
                return
            time.sleep(0.1)
        tomorrow = dt.datetime.combine(plan.start + dt.timedelta(days=plan.days), dt.time(20), dt.UTC)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RecommenderStub(channel)
            for household in top:
                answer = stub.Recommend(pb.RecommendRequest(household_id=household, k=5, window_minutes=180,
                                                            at_unix_ms=int(tomorrow.timestamp() * 1000)), timeout=10)
                print(f"   household {household}, {tomorrow:%a %d %b} 20:00-23:00 UTC "
                      f"(model {answer.model_version}):", flush=True)
                for item in answer.items:
                    start = dt.datetime.fromtimestamp(item.start_unix_ms / 1000, dt.UTC)
                    print(f"      {start:%H:%M}  {channels.get(item.channel_id, item.channel_id)!s:<16} "
                          f"{titles.get(item.content_id, item.content_id)!s:<34} {item.reason}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
