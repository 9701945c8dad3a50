"""Versioned model artifacts, published atomically behind a CURRENT pointer.

    DIR/CURRENT                       the live version's name, one line
    DIR/versions/<version>/
        meta.json                     version, format, data window, counts, timings, evaluation
        model.*.npy model.json        factors, ids, daypart sub-profiles, training settings
        index.faiss                   catalogue index (flat or HNSW)
        history.*.npy                 raw viewing sums (fold-in starts from them)
        seen.*.npy                    household x content sums over dayparts (reasons)
        watched.*.npy                 programmes each household watched (exclude_watched)
        popularity.npz                popular-now tables
        airings.npz                   the schedule around the data end (serving without a store)

A version is written into `DIR/.tmp-<version>-<pid>/`, every file and the folder fsynced,
then renamed into `versions/` (one atomic rename on one filesystem); only then is CURRENT
replaced (write `CURRENT.<pid>.tmp`, fsync, `os.replace`, fsync the folder). A reader that
follows CURRENT therefore never sees a half-written model. The big arrays are one .npy file
each, memory-mapped read-only by `load` (recommender/arrays.py): serving processes on a host
share one copy. Format 1 (.npz groups) still loads. Old versions beyond
`keep_versions` are pruned after a publish, never the one CURRENT names.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.arrays import load_arrays, save_arrays
from recommender.errors import ModelError
from recommender.model import ContentModel
from recommender.popularity import Popularity
from recommender.schedule import Schedule
from recommender.signal import Viewing, Watched

FORMAT = 2
READABLE_FORMATS = (1, 2)
CURRENT = "CURRENT"
VERSIONS = "versions"


def new_version(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


def read_current(model_dir: Path) -> str | None:
    try:
        name = (model_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def publish(model_dir: Path, version: str, write: Callable[[Path], None], keep_versions: int = 5) -> Path:
    """Write a version with `write(folder)` and make it current; returns its folder."""
    model_dir.mkdir(parents=True, exist_ok=True)
    versions = model_dir / VERSIONS
    versions.mkdir(exist_ok=True)
    tmp = model_dir / f".tmp-{version}-{os.getpid()}"
    tmp.mkdir()
    try:
        write(tmp)
        for path in tmp.iterdir():
            _fsync_file(path)
        _fsync_dir(tmp)
        final = versions / version
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(versions)
    pointer = model_dir / f"{CURRENT}.{os.getpid()}.tmp"
    pointer.write_text(version + "\n")
    _fsync_file(pointer)
    os.replace(pointer, model_dir / CURRENT)
    _fsync_dir(model_dir)
    prune(model_dir, keep_versions)
    return final


def prune(model_dir: Path, keep_versions: int) -> list[str]:
    current = read_current(model_dir)
    names = sorted(p.name for p in (model_dir / VERSIONS).iterdir() if p.is_dir())
    doomed = [n for n in names[:-keep_versions] if n != current] if keep_versions else []
    for name in doomed:
        shutil.rmtree(model_dir / VERSIONS / name, ignore_errors=True)
    return doomed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Artifact:
    """One model version, loaded: everything serving needs from it."""

    version: str
    meta: dict[str, Any]
    model: ContentModel
    popularity: Popularity
    schedule: Schedule
    watched: Watched
    history: Viewing
    seen: sp.csr_matrix | None = None  # history.household_raw(), stored so serving maps it

    def write(self, folder: Path) -> None:
        """Write every file of this version into `folder` (see `publish`)."""
        self.model.save(folder)
        self.popularity.save(folder / "popularity.npz")
        self.schedule.save(folder / "airings.npz")
        w = self.watched
        save_arrays(folder, "watched", {"household_ids": w.household_ids, "indptr": w.indptr,
                                        "programme_ids": w.programme_ids})
        h = self.history
        save_arrays(folder, "history", {"household_ids": h.household_ids, "content_ids": h.content_ids,
                                        "dayparts": np.asarray(h.dayparts), "ref_ms": np.asarray(h.ref_ms),
                                        **_csr("raw", h.raw), **_csr("zaps", h.zaps)})
        save_arrays(folder, "seen", _csr("m", self.seen if self.seen is not None else h.household_raw()))
        (folder / "meta.json").write_text(json.dumps({**self.meta, "format": FORMAT,
                                                      "version": self.version}, indent=2))


def _csr(name: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{name}_data": m.data, f"{name}_indices": m.indices, f"{name}_indptr": m.indptr,
            f"{name}_shape": np.asarray(m.shape)}


def _from_csr(z: Any, name: str) -> sp.csr_matrix:
    shape = tuple(int(n) for n in z[f"{name}_shape"])
    data, indices, indptr = z[f"{name}_data"], z[f"{name}_indices"], z[f"{name}_indptr"]
    m = sp.csr_matrix(shape, dtype=data.dtype)
    m.data, m.indices, m.indptr = data, indices, indptr  # as stored (mapped), not re-checked into copies
    return m


def load(model_dir: Path, version: str | None = None, *, blend: float | None = None) -> Artifact:
    """Load `version` (default: the one CURRENT names). ModelError if absent or unreadable."""
    version = version or read_current(model_dir)
    if version is None:
        raise ModelError(f"no model in {model_dir}: {CURRENT} is missing (run `train` first)",
                         path=str(model_dir))
    folder = model_dir / VERSIONS / version
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") not in READABLE_FORMATS:
            raise ModelError(f"{folder}: format {meta.get('format')} is not one of {READABLE_FORMATS}",
                             path=str(folder))
        model = ContentModel.load(folder, blend=blend)
        z = load_arrays(folder, "watched")
        watched = Watched(z["household_ids"], z["indptr"], z["programme_ids"])
        z = load_arrays(folder, "history")
        history = Viewing(z["household_ids"], z["content_ids"], int(z["dayparts"]),
                          _from_csr(z, "raw"), _from_csr(z, "zaps"), int(z["ref_ms"]))
        seen = _from_csr(load_arrays(folder, "seen"), "m") if meta["format"] >= 2 else None
        return Artifact(version, meta, model, Popularity.load(folder / "popularity.npz"),
                        Schedule.load(folder / "airings.npz", f"artifact {version}"), watched, history, seen)
    except ModelError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"cannot load model {version} from {folder}: {exc}", path=str(folder)) from exc
