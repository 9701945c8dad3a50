"""Artifacts: atomic publish behind CURRENT, pruning, loading; settings; evaluation arithmetic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from recommender import artifact
from recommender.errors import ModelError
from recommender.evalsets import EvalViews, sessions
from recommender.evaluate import Tally
from recommender.feedback import parse_time
from recommender.settings import ENV_PREFIX, EvaluateSettings, RecommenderSettings
from stbcommon.settings import SettingsError, load
from tests.unit.test_rec_engine import snapshot_of
from tests.unit.test_rec_planted import planted_world


@pytest.fixture(scope="module")
def bundle() -> artifact.Artifact:
    snap = snapshot_of(planted_world(households=24, days=5, seed=2))
    return artifact.Artifact("", {"data_window_ms": [0, 1]}, snap.model, snap.popularity, snap.schedule,
                             snap.watched, snap.history)


def test_publish_load_and_current(bundle: artifact.Artifact, tmp_path: Path) -> None:
    assert artifact.read_current(tmp_path) is None
    with pytest.raises(ModelError, match="CURRENT"):
        artifact.load(tmp_path)
    v1 = artifact.new_version()
    folder = artifact.publish(tmp_path, v1, dataclasses.replace(bundle, version=v1).write)
    assert folder == tmp_path / "versions" / v1 and artifact.read_current(tmp_path) == v1
    loaded = artifact.load(tmp_path)
    assert loaded.version == v1 and loaded.meta["format"] == artifact.FORMAT
    assert np.array_equal(loaded.model.item_factors, bundle.model.item_factors)
    assert np.array_equal(loaded.schedule.start_ms, bundle.schedule.start_ms)
    assert (loaded.history.raw != bundle.history.raw).nnz == 0
    assert np.array_equal(loaded.watched.programme_ids, bundle.watched.programme_ids)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp") or p.name.endswith(".tmp")]


def test_failed_write_leaves_current_alone(bundle: artifact.Artifact, tmp_path: Path) -> None:
    v1 = artifact.new_version()
    artifact.publish(tmp_path, v1, dataclasses.replace(bundle, version=v1).write)

    def broken(folder: Path) -> None:
        (folder / "model.npz").write_bytes(b"half a model")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        artifact.publish(tmp_path, artifact.new_version(), broken)
    assert artifact.read_current(tmp_path) == v1
    assert [p.name for p in (tmp_path / "versions").iterdir()] == [v1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_prune_keeps_the_current_version(bundle: artifact.Artifact, tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        (folder / "meta.json").write_text("{}")

    versions = [f"2026010{i}T000000000Z-abcd" for i in range(1, 5)]
    for v in versions:
        artifact.publish(tmp_path, v, write, keep_versions=2)
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == versions[-2:]
    (tmp_path / "CURRENT").write_text(versions[-2] + "\n")   # an operator rolled back
    artifact.publish(tmp_path, "20260109T000000000Z-abcd", write, keep_versions=1)
    assert artifact.read_current(tmp_path) == "20260109T000000000Z-abcd"


def test_unreadable_version_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "versions" / "v1").mkdir(parents=True)
    (tmp_path / "versions" / "v1" / "meta.json").write_text('{"format": 1}')
    (tmp_path / "CURRENT").write_text("v1\n")
    with pytest.raises(ModelError, match="cannot"):
        artifact.load(tmp_path)


def test_versions_sort_by_time() -> None:
    import datetime as dt

    a = artifact.new_version(dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC))
    b = artifact.new_version(dt.datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=dt.UTC))
    assert a.startswith("20260102T030405006Z-") and a < b


def test_settings_defaults_env_and_all_errors_at_once() -> None:
    assert load(RecommenderSettings).daypart.hour_table()[20] == 4
    s = load(RecommenderSettings, env={f"{ENV_PREFIX}__ALS__FACTORS": "32", f"{ENV_PREFIX}__SERVE__LISTEN": "[::]:0",
                                       "OTHER": "x"}, env_prefix=ENV_PREFIX)
    assert s.als.factors == 32
    with pytest.raises(SettingsError) as err:
        load(RecommenderSettings, overrides={"als.factors": 0, "serve.max_k": 5000, "store.url": "mysql://x",
                                             "daypart.blend": 2.0})
    text = str(err.value)
    for key in ("als.factors", "serve.default_k/max_k", "store.url", "daypart.blend"):
        assert key in text
    with pytest.raises(SettingsError, match="unknown setting"):
        load(RecommenderSettings, overrides={"als.factor": 3})


def test_tally_metrics() -> None:
    t = Tally()
    t.add(np.array([5, 6, 7, 8, 9, 10, 11]), np.array([7]), reachable=1)        # hit at rank 3
    t.add(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), np.array([11]), 1)   # rank 11: a miss
    f = t.figures()
    assert f["hr@5"] == 0.5 and f["hr@10"] == 0.5
    assert f["ndcg@10"] == pytest.approx(0.5 * (1 / np.log2(4)))
    t2 = Tally()
    t2.add(np.array([1, 2]), np.array([1, 2]), reachable=2)
    assert t2.figures()["ndcg@10"] == pytest.approx(1.0)


def test_sessions_split_on_gaps() -> None:
    m = 60_000
    ts = np.array([0, 10 * m, 100 * m, 0, 5 * m], dtype=np.int64)
    hh = np.array([1, 1, 1, 2, 2], dtype=np.uint64)
    dur = np.array([300, 600, 60, 60, 60], dtype=np.int64)
    v = EvalViews(hh, ts, np.zeros(5, np.uint32), np.zeros(5, np.uint64), np.array([1, 2, 3, 4, 5], np.uint64),
                  dur, np.zeros(5, np.int64), np.ones(5))
    ses = sessions(v, EvaluateSettings(session_gap_minutes=30))
    assert ses.start_ms.tolist() == [0, 100 * m, 0] and ses.household_id.tolist() == [1, 1, 2]
    assert ses.relevant(v, 0, 180 * m, 180).tolist() == [1, 2]      # the 60 s view is a zap
    assert ses.relevant(v, 2, 180 * m, 30).tolist() == [4, 5]


def test_parse_time() -> None:
    now = 1_800_000_000_000
    assert parse_time("1767225600000", now) == 1767225600000
    assert parse_time("7d", now) == now - 7 * 86_400_000
    assert parse_time("36h", now) == now - 36 * 3_600_000
    assert parse_time("2026-01-01", now) == 1_767_225_600_000
    assert parse_time("2026-01-01T01:00:00+01:00", now) == 1_767_225_600_000
    with pytest.raises(ValueError):
        parse_time("yesterday", now)


def _file_mapped(array: object) -> bool:
    """A view of a file mapping (plain ndarray views keep the np.memmap / mmap as their base)."""
    import mmap

    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return isinstance(array, mmap.mmap)


def test_served_arrays_are_memory_mapped(bundle: artifact.Artifact, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving processes share one copy of a version: the big arrays are views of the files."""
    from recommender import arrays

    monkeypatch.setattr(arrays, "MMAP_MIN_BYTES", 0)
    v = artifact.new_version()
    artifact.publish(tmp_path, v, dataclasses.replace(bundle, version=v).write)
    a = artifact.load(tmp_path)
    mapped = [a.model.item_factors, a.model.users.factors, a.model.users.dp_factors, a.history.raw.data,
              a.history.raw.indices, a.watched.programme_ids, a.seen.data if a.seen is not None else None]
    assert all(_file_mapped(m) for m in mapped)
    # ...as plain ndarrays: np.memmap's Python-level indexing hooks cost serving CPU on every call
    assert all(type(m) is np.ndarray for m in mapped)
    assert (a.seen != bundle.history.household_raw()).nnz == 0 if a.seen is not None else False
    assert np.array_equal(a.model.users.factors, bundle.model.users.factors)
