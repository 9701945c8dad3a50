"""Artifact arrays as plain .npy files, memory-mapped read-only when served.

    save_arrays(folder, "model", {"item_factors": ..., ...})  # model.item_factors.npy, ...
    arrays = load_arrays(folder, "model")                      # np.memmap views (format 2)

A .npz is a zip: loading it copies every array into the process. As separate .npy files the
big arrays (household vectors, daypart sub-profiles, viewing history, watched programmes)
are mapped from the page cache: every serving process on a host shares one physical copy of
a model version (`serve --processes N`), and loading a version reads nothing until it is
used. Small arrays (< MMAP_MIN_BYTES) are read into memory. Version-1 artifacts (one .npz
per group) still load, by copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MMAP_MIN_BYTES = 1 << 16


def save_arrays(folder: Path, group: str, arrays: dict[str, Any]) -> list[Path]:
    paths = []
    for name, value in arrays.items():
        path = folder / f"{group}.{name}.npy"
        np.save(path, np.asarray(value), allow_pickle=False)
        paths.append(path)
    return paths


def load_arrays(folder: Path, group: str, mmap: bool = True) -> dict[str, np.ndarray]:
    """The arrays of `group` in `folder` (KeyError when the group is absent)."""
    npz = folder / f"{group}.npz"
    if npz.exists():  # format 1
        with np.load(npz, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    out: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob(f"{group}.*.npy")):
        name = path.name[len(group) + 1:-len(".npy")]
        big = mmap and path.stat().st_size >= MMAP_MIN_BYTES
        # A plain ndarray view of the mapping: np.memmap's Python-level __getitem__ and
        # __array_finalize__ ran on every index and ufunc result (measured: ~15 % of a batched
        # Recommend's CPU); the view keeps the mapping alive and shares its pages as before.
        out[name] = np.asarray(np.load(path, mmap_mode="r" if big else None, allow_pickle=False))
    if not out:
        raise KeyError(f"{group}: no arrays in {folder}")
    return out
