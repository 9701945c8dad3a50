"""Train: the recommender's whole training job against a real ClickHouse, vs bare implicit.

For each size (households x contents, ~30 views a household over 28 days) synthetic viewing
with planted tastes is generated with numpy and loaded columnar into a fresh database of a
real clickhouse-server 18.16 (events, programmes, airings, channels: what `fetch_viewing`,
popularity, watched and the schedule read). Loading is reported, not part of the job.

The job is `python -m recommender train --no-eval` in its own process, as an operator runs
it: extraction (query + matrix), ALS, daypart fold-in, index, popularity / watched /
schedule queries and the atomic publish, timed by the job itself (`timings_s` in the log),
the whole process timed from outside. The reference, in the same run: `implicit` ALS fitted
directly on the exact household x content matrix the job learnt from (rebuilt from the
artifact's history with the job's own code), same settings and threads, in its own process.
Peak RSS of each process is its VmHWM (/proc, sampled every 0.1 s); the ClickHouse server's
peak during the job likewise (VmHWM after resetting it, or sampled VmRSS where that is refused).

    python -m benchmarks train [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Result, proc_status_kib, table
from proto.telemetry import KIND_BY_NAME
from recommender.settings import DAY_MS, HOUR_MS
from stbcommon.localservers import ClickHouseServer
from warehouse import open_warehouse
from warehouse.base import Warehouse

DATA_END_MS = 1_772_323_200_000  # 2026-03-01 00:00 UTC: a fixed world, the same on every run
VIEW = KIND_BY_NAME["view"].code
# Share of views by local hour: quiet nights, a morning bump, prime time 19-23.
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 4, 6, 6, 4, 3, 3, 4, 4, 4, 5, 6, 8, 10, 14, 16, 14, 10, 5], float)
# "side_wait": the popularity and watched queries, as far as the job waited for them (on a
# ClickHouse server they run on a second connection during the viewing query and the fit;
# their own durations are in the row as popular_s and watched_s).
STEPS = ("query", "matrix", "confidences", "als", "dayparts", "index", "side_wait", "schedule", "publish", "other")


@dataclass(frozen=True)
class World:
    """Sizes of one synthetic viewing world."""

    households: int
    contents: int
    views_per_household: int = 30
    days: int = 28
    channels: int = 100
    episodes: int = 4        # programmes per content
    groups: int = 200        # planted taste groups
    favourites: int = 40     # contents a group mostly watches
    zap_share: float = 0.2   # views shorter than the zap threshold
    seed: int = 11

    @property
    def label(self) -> str:
        return f"{self.households // 1000}k"


# --- the synthetic world ------------------------------------------------------------------------

@dataclass(frozen=True)
class Epg:
    content_channel: np.ndarray   # channel id of each content (index = content id - 1)
    duration_s: np.ndarray        # running time of each content's programmes
    tables: dict[str, dict[str, np.ndarray]]


def programme_id(content_idx: np.ndarray, episode: np.ndarray) -> np.ndarray:
    return (content_idx.astype(np.uint64) + 1) * np.uint64(16) + episode.astype(np.uint64)


def make_epg(w: World, rng: np.random.Generator) -> Epg:
    channel = rng.integers(1, w.channels + 1, size=w.contents).astype(np.uint32)
    duration = rng.choice(np.array([1800, 2700, 3600, 5400], np.uint32), size=w.contents, p=[.4, .2, .3, .1])
    c_idx = np.repeat(np.arange(w.contents), w.episodes)
    ep = np.tile(np.arange(w.episodes), w.contents)
    updated = np.full(len(c_idx), DATA_END_MS - 40 * DAY_MS, np.int64)
    programmes = {"programme_id": programme_id(c_idx, ep), "content_id": (c_idx + 1).astype(np.uint64),
                  "title": np.array([f"content {i + 1}" for i in c_idx], dtype=object),
                  "duration_s": duration[c_idx], "updated_ms": updated}
    channels = {"channel_id": np.arange(1, w.channels + 1, dtype=np.uint32),
                "name": np.array([f"channel {i}" for i in range(1, w.channels + 1)], dtype=object),
                "updated_ms": np.full(w.channels, DATA_END_MS - 40 * DAY_MS, np.int64)}
    return Epg(channel, duration, {"programmes": programmes, "channels": channels,
                                   "airings": make_airings(w, channel, duration, rng)})


def make_airings(w: World, channel: np.ndarray, duration: np.ndarray,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Back-to-back programmes of each channel's own contents, from a day before the data to
    four days after it (the job snapshots 72 h past the data end)."""
    t0, t1 = DATA_END_MS - (w.days + 1) * DAY_MS, DATA_END_MS + 4 * DAY_MS
    slots = int((t1 - t0) // (1800 * 1000)) + 1  # enough of the shortest programmes to reach t1
    parts: list[dict[str, np.ndarray]] = []
    for ch in range(1, w.channels + 1):  # one vectorised draw per channel
        own = np.flatnonzero(channel == ch)
        if not len(own):
            continue
        pick = own[rng.integers(len(own), size=slots)]
        length = duration[pick].astype(np.int64) * 1000
        start = t0 + np.concatenate([[0], np.cumsum(length)[:-1]])
        keep = start < t1
        parts.append({"channel_id": np.full(int(keep.sum()), ch, np.uint32), "start_ms": start[keep],
                      "stop_ms": (start + length)[keep],
                      "programme_id": programme_id(pick[keep], rng.integers(w.episodes, size=int(keep.sum())))})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["updated_ms"] = np.full(len(out["start_ms"]), DATA_END_MS - 40 * DAY_MS, np.int64)
    return out


def make_views(w: World, epg: Epg, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """~views_per_household views a household: mostly its taste group's favourites (skewed),
    the rest from the global popularity curve; 20 % zaps. Sorted by day, then household."""
    h = w.households
    per = 1 + rng.poisson(w.views_per_household - 1, size=h)
    hh = np.repeat(np.arange(h, dtype=np.int64), per)
    n = len(hh)
    seq = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    popularity = 1.0 / np.arange(1, w.contents + 1) ** 0.8
    popularity /= popularity.sum()
    favourites = rng.choice(w.contents, size=(w.groups, w.favourites), p=popularity)
    group = rng.integers(w.groups, size=h)
    rank = (w.favourites * rng.random(n) ** 2).astype(np.int64)  # skewed within a group's favourites
    content = np.where(rng.random(n) < 0.75, favourites[group[hh], rank],
                       np.searchsorted(np.cumsum(popularity), rng.random(n)).clip(0, w.contents - 1))
    del rank
    day = rng.integers(w.days, size=n)
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    ts = DATA_END_MS - (w.days - day) * DAY_MS + hour * HOUR_MS + rng.integers(HOUR_MS, size=n)
    zap = rng.random(n) < w.zap_share
    watched = rng.uniform(0.2, 1.0, size=n) * epg.duration_s[content]
    duration = np.where(zap, rng.integers(5, 180, size=n), watched).astype(np.uint32)
    order = np.argsort(day, kind="stable")  # one block (one part) per daily partition; households stay sorted
    return {"household_id": (hh[order] + 1).astype(np.uint64), "seq": seq[order].astype(np.uint64),
            "device_ts_ms": ts[order], "channel_id": epg.content_channel[content[order]],
            "programme_id": programme_id(content[order], rng.integers(w.episodes, size=n)[order]),
            "duration_s": duration[order], "day": day[order]}


def day_blocks(views: dict[str, np.ndarray], households: int) -> Iterator[dict[str, np.ndarray]]:
    """Insert blocks of `events` columns, one per day."""
    devices = np.array([f"stb-{i:07d}" for i in range(households + 1)], dtype=object)
    bounds = np.searchsorted(views["day"], np.arange(views["day"].max() + 2))
    for lo, hi in itertools.pairwise(bounds.tolist()):
        cols = {k: v[lo:hi] for k, v in views.items() if k != "day"}
        ts = cols["device_ts_ms"]
        yield {"household_id": cols["household_id"], "device_id": devices[cols["household_id"].astype(np.int64)],
               "seq": cols["seq"], "kind": np.full(hi - lo, VIEW, np.int8), "device_ts_ms": ts, "ts_ms": ts,
               "received_ms": ts + 250, "channel_id": cols["channel_id"], "programme_id": cols["programme_id"],
               "duration_s": cols["duration_s"], "end_reason": np.zeros(hi - lo, np.uint8)}


def load(store: Warehouse, w: World) -> dict[str, float]:
    """Generate and insert one world; returns seconds and counts."""
    from tqdm import tqdm

    t = time.monotonic()
    rng = np.random.default_rng(w.seed)
    epg = make_epg(w, rng)
    views = make_views(w, epg, rng)
    generate_s = time.monotonic() - t
    t = time.monotonic()
    store.migrate()
    for name, cols in epg.tables.items():
        store.insert_columns(name, cols)
    events = len(views["day"])
    with tqdm(total=events, desc=f"load {w.label}", unit="row", unit_scale=True, mininterval=2) as bar:
        for block in day_blocks(views, w.households):
            store.insert_columns("events", block)
            bar.update(len(block["seq"]))
    return {"events": events, "airings": len(epg.tables["airings"]["start_ms"]),
            "generate_s": round(generate_s, 2), "insert_s": round(time.monotonic() - t, 2)}


# --- measured processes --------------------------------------------------------------------------

def run_measured(cmd: list[str], log: Path, label: str, watch_pid: int | None = None) -> dict[str, Any]:
    """Run `cmd` to completion; wall seconds, CPU seconds, its own peak RSS and the peak RSS of
    `watch_pid` (a server) while it ran. The child's peak is its VmHWM, sampled: wait4's
    ru_maxrss also counts the forking parent's memory (Linux keeps the pre-exec mm's peak),
    which here holds the generated world."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    reset = watch_pid is not None and _reset_hwm(watch_pid)
    sampled = own_peak = 0
    with log.open("w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        last_note = started
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            own_peak = max(own_peak, proc_status_kib(proc.pid).get("VmHWM", 0))  # the last sample is the peak
            if watch_pid is not None:
                sampled = max(sampled, proc_status_kib(watch_pid).get("VmRSS", 0))
            if time.monotonic() - last_note >= 15:
                last_note = time.monotonic()
                print(f"  {label}: {last_note - started:,.0f} s", flush=True)
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    figures: dict[str, Any] = {"seconds": round(elapsed, 2), "rss_mib": round(own_peak / 1024, 1),
                               "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}
    if watch_pid is not None:
        peak = proc_status_kib(watch_pid).get("VmHWM", 0) if reset else 0
        figures["server_rss_mib"] = round(max(peak, sampled) / 1024, 1)
    return figures


def _reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def job_timings(log: Path) -> dict[str, float]:
    """The job's own per-step seconds, from its "model published" JSON log line."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{") and '"model published"' in line:
            doc = json.loads(line)
            return {**doc["timings_s"], "publish": doc["publish_s"], "training": doc["training_s"]}
    raise RuntimeError(f"no 'model published' line in {log}")


def job_steps(t: dict[str, float], whole_s: float) -> dict[str, float]:
    steps = {"query": t["viewing.query"], "matrix": t["viewing.matrix"], "confidences": t["fit.confidences"],
             "als": t["fit.als"], "dayparts": t["fit.dayparts"], "index": t["fit.index"],
             "side_wait": t["popularity"], "schedule": t["schedule"], "publish": t["publish"]}
    # interpreter start, imports, data_end query, metadata: whatever the steps do not cover
    steps["other"] = round(whole_s - sum(steps.values()), 2)
    return {**steps, "popular_s": t["popularity.popular"], "watched_s": t["popularity.watched"],
            "side_overlapped": bool(t.get("popularity.overlapped"))}


def export_matrix(model_dir: Path, out: Path) -> dict[str, Any]:
    """The household x content confidences the job fitted, rebuilt from its artifact with the
    job's own code, and the ALS settings it used."""
    from recommender import artifact
    from recommender.settings import SignalSettings

    published = artifact.load(model_dir)
    meta = published.meta
    household, _ = published.history.confidences(SignalSettings(**meta["settings"]["signal"]))
    np.savez(out, data=household.data, indices=household.indices, indptr=household.indptr,
             shape=np.asarray(household.shape))
    return {"als": meta["settings"]["als"], "counts": meta["counts"], "nnz": int(household.nnz)}


def bare_fit(matrix: Path, als: dict[str, Any]) -> None:
    """The reference process: implicit ALS on the saved matrix, nothing else (timed inside)."""
    import scipy.sparse as sp
    import threadpoolctl
    from implicit.cpu.als import AlternatingLeastSquares

    threadpoolctl.threadpool_limits(1, user_api="blas")  # as the recommender does
    with np.load(matrix) as z:
        m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    model = AlternatingLeastSquares(factors=als["factors"], regularization=als["regularization"],
                                    alpha=als["alpha"], iterations=als["iterations"],
                                    num_threads=als["threads"], random_state=als["seed"])
    t, cpu = time.monotonic(), time.process_time()
    model.fit(m, show_progress=False)
    print(json.dumps({"fit_s": round(time.monotonic() - t, 3), "fit_cpu_s": round(time.process_time() - cpu, 2)}))


# --- the benchmark -------------------------------------------------------------------------------

def measure(w: World, clickhouse: ClickHouseServer, work: Path) -> dict[str, Any]:
    db = f"train{w.label}"
    with closing(open_warehouse(clickhouse.url(db))) as store:
        loaded = load(store, w)
    print(f"  loaded {loaded['events']:,} views in {loaded['generate_s'] + loaded['insert_s']:.0f} s", flush=True)
    model_dir = work / f"models-{w.label}"
    assert clickhouse.proc is not None
    job = run_measured([sys.executable, "-m", "recommender", "train", "--store", clickhouse.url(db),
                        "--model-dir", str(model_dir), "--no-eval", "--no-progress", "--log-format", "json"],
                       work / f"job-{w.label}.log", f"job {w.label}", watch_pid=clickhouse.proc.pid)
    steps = job_steps(job_timings(work / f"job-{w.label}.log"), job["seconds"])
    matrix = work / f"matrix-{w.label}.npz"
    exported = export_matrix(model_dir, matrix)
    bare_log = work / f"bare-{w.label}.log"
    bare = run_measured([sys.executable, "-m", "benchmarks.train", "bare-fit", str(matrix),
                         json.dumps(exported["als"])], bare_log, f"bare fit {w.label}")
    fitted = next(json.loads(line) for line in bare_log.read_text().splitlines() if line.startswith('{"fit_s"'))
    bare_fit_s = fitted["fit_s"]
    with closing(open_warehouse(clickhouse.url(db))) as store:
        store.execute(f"DROP DATABASE IF EXISTS {db}")  # free the disk before the next size
    counts = exported["counts"]
    return {"households": w.households, "contents": w.contents, "events": loaded["events"],
            "nnz": exported["nnz"], "dp_profiles": counts["daypart_profiles"],
            "generate_s": loaded["generate_s"], "insert_s": loaded["insert_s"], **steps,
            "job_s": job["seconds"], "bare_fit_s": bare_fit_s, "ratio": round(job["seconds"] / bare_fit_s, 2),
            "als_over_bare": round(steps["als"] / bare_fit_s, 2),
            # CPU seconds: less sensitive than wall time to other work on this shared machine
            "job_cpu_s": job["cpu_s"], "bare_fit_cpu_s": fitted["fit_cpu_s"],
            "cpu_ratio": round(job["cpu_s"] / max(fitted["fit_cpu_s"], 1e-3), 2), "job_rss_mib": job["rss_mib"],
            "bare_rss_mib": bare["rss_mib"], "clickhouse_rss_mib": job["server_rss_mib"]}


def run(args: argparse.Namespace) -> Result:
    worlds = ([World(20_000, 2_000, channels=40, groups=40)] if args.quick
              else [World(100_000, 20_000), World(1_000_000, 20_000)])
    result = Result("train", {"quick": args.quick, "job": "python -m recommender train --no-eval",
                              "worlds": [vars(w) for w in worlds], "blas_threads": 1,
                              "als": "recommender defaults (factors 64, iterations 15, threads = cores)"})
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        clickhouse = ClickHouseServer(work / "clickhouse")
        with clickhouse:
            for w in worlds:
                print(f"-- {w.households:,} households x {w.contents:,} contents", flush=True)
                result.add(**measure(w, clickhouse, work))
    big = result.rows[-1]
    result.headline = {
        "ratio_job_to_bare_fit": {str(r["households"]): r["ratio"] for r in result.rows},
        "cpu_ratio_job_to_bare_fit": {str(r["households"]): r["cpu_ratio"] for r in result.rows},
        "households": big["households"], "job_s": big["job_s"], "bare_fit_s": big["bare_fit_s"],
        "met": bool(big["ratio"] <= 2.0 and big["job_s"] < 600),
        "peak_rss_mib": {"job": big["job_rss_mib"], "bare_fit": big["bare_rss_mib"],
                         "clickhouse": big["clickhouse_rss_mib"]},
        "targets": {"ratio_job_to_bare_fit": 2.0, "job_s": 600, "at_households": 1_000_000},
    }
    print()
    print(table(result.rows, ["households", "events", "nnz", *STEPS, "job_s", "bare_fit_s", "ratio"]))
    print()
    print(table(result.rows, ["households", "generate_s", "insert_s", "dp_profiles", "job_cpu_s", "bare_fit_cpu_s",
                              "cpu_ratio", "job_rss_mib",
                              "bare_rss_mib", "clickhouse_rss_mib", "als_over_bare"]))
    return result


def plot(doc: dict[str, Any], out: Path) -> None:
    """Stacked job steps next to the bare fit per size; peak memory per process."""
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, step in enumerate(STEPS):
        values = np.array([max(float(r.get(step, 0.0)), 0.0) for r in rows])
        left.bar(x - 0.2, values, 0.4, bottom=bottom, label=step, color=colours[i % len(colours)])
        bottom += values
    left.bar(x + 0.2, [r["bare_fit_s"] for r in rows], 0.4, color="#999999", label="bare implicit fit")
    for xi, r in zip(x, rows, strict=True):
        left.annotate(f"{r['job_s']:,.0f} s ({r['ratio']:.2f}x)", (xi - 0.2, r["job_s"]), ha="center",
                      va="bottom", fontsize=8)
    labels = [f"{r['households']:,} hh" for r in rows]
    left.set_xticks(x, labels)
    left.set_ylabel("seconds")
    left.set_title("training job steps vs bare ALS fit", fontsize=10)
    left.legend(fontsize=7, ncol=2)
    for j, (key, name) in enumerate((("job_rss_mib", "job"), ("bare_rss_mib", "bare fit"),
                                     ("clickhouse_rss_mib", "clickhouse"))):
        right.bar(x + (j - 1) * 0.27, [r[key] for r in rows], 0.27, label=name,
                  color=("#3b7dd8", "#999999", "#e08a2c")[j])
    right.set_xticks(x, labels)
    right.set_ylabel("peak RSS, MiB")
    right.set_title("peak memory", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle("train: python -m recommender train vs implicit alone (same matrix, same run)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    """`python -m benchmarks.train bare-fit MATRIX ALS_JSON`: the reference process."""
    if len(argv) != 3 or argv[0] != "bare-fit":
        print("usage: python -m benchmarks.train bare-fit MATRIX.npz ALS_JSON  (use python -m benchmarks train)")
        return 2
    bare_fit(Path(argv[1]), json.loads(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
