"""Versioned churn model artifacts, published atomically behind a CURRENT pointer (the recommender's
pattern, recommender/artifact.py, without its heavy imports).

    DIR/CURRENT                         the live version's name, one line
    DIR/versions/<version>/
        booster.txt                     LightGBM model (text)
        model.json                      calibration and feature names
        meta.json                       version, training day, feature days, counts, importance, timings

A version is written into `DIR/.tmp-<version>-<pid>/`, every file and the folder fsynced, then
renamed into `versions/` (one atomic rename on one filesystem); only then is CURRENT replaced
(written beside it, fsynced, `os.replace`, the folder fsynced). A reader that follows CURRENT never
sees a half-written model. Versions beyond `keep` are pruned, never the current one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.churn.model import ChurnModel, ModelError

CURRENT = "CURRENT"
VERSIONS = "versions"


def new_version(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: ChurnModel
    meta: dict[str, Any]


def publish(model_dir: Path, version: str, files: dict[str, str], keep: int = 5) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    versions = model_dir / VERSIONS
    versions.mkdir(exist_ok=True)
    tmp = model_dir / f".tmp-{version}-{os.getpid()}"
    tmp.mkdir()
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
            _fsync(tmp / name)
        _fsync(tmp, directory=True)
        final = versions / version
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(versions, directory=True)
    pointer = model_dir / f"{CURRENT}.{os.getpid()}.tmp"
    pointer.write_text(version + "\n")
    _fsync(pointer)
    os.replace(pointer, model_dir / CURRENT)
    _fsync(model_dir, directory=True)
    names = sorted(p.name for p in versions.iterdir() if p.is_dir())
    for name in names[:-keep]:
        if name != version:
            shutil.rmtree(versions / name, ignore_errors=True)
    return final


def load_current(model_dir: Path) -> LoadedModel:
    try:
        version = (model_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        raise ModelError(f"no churn model in {model_dir}: run `python -m crm churn train` first") from None
    folder = model_dir / VERSIONS / version
    try:
        model = ChurnModel.from_files((folder / "booster.txt").read_text(), (folder / "model.json").read_text())
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"churn model {version} in {model_dir} cannot be read: {exc}") from None
    return LoadedModel(version, model, meta)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
