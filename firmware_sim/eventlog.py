"""Columnar event buffer for a block of devices, turned into wire events at the end.

The step loop appends events as numpy columns (device, step, order, kind, ts, emit, fields);
`assemble` sorts them by (device, emit time, step, order) — the order in which a box records
them; a view is recorded when it ends — and
builds the positional wire arrays (`proto.telemetry`) per device. Events that carry strings
made per event (recommendation ids) are passed prebuilt.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from proto.telemetry import KIND_BY_NAME

VIEW: Final = KIND_BY_NAME["view"].code
TUNE: Final = KIND_BY_NAME["tune"].code
EPG_CLICK: Final = KIND_BY_NAME["epg_click"].code
VOD_PLAY: Final = KIND_BY_NAME["vod_play"].code
POWER: Final = KIND_BY_NAME["power"].code
PREBUILT: Final = 100

# epg_click (screen, action) pairs, by code.
CLICKS: Final = (("guide", "open"), ("guide", "scroll"), ("guide", "select"), ("guide", "close"),
                 ("vod", "open"), ("rec", "remind"))
GUIDE_OPEN, GUIDE_SCROLL, GUIDE_SELECT, GUIDE_CLOSE, VOD_OPEN, REC_REMIND = range(len(CLICKS))

# Order of events recorded at the same time by one device within one step.
O_POWER_ON: Final = 0
O_GUIDE_OPEN: Final = 10
O_REC: Final = 11          # impressions 11.., then click, remind
O_GUIDE_SCROLL: Final = 42
O_GUIDE_END: Final = 43
O_PENDING_VIEW: Final = 50
O_LANDING_VIEW: Final = 52
O_VOD: Final = 53
O_POWER_OFF: Final = 54
O_TUNES: Final = 100       # tune j at 100 + 2j, zap view j at 101 + 2j

_COLS: Final = ("dev", "step", "order", "kind", "ts", "emit", "f1", "f2", "f3", "f4")


@dataclass(frozen=True, slots=True)
class DeviceEvents:
    events: list[list[Any]]
    emit_ms: list[int]   # when the box records each event (a view: when it ends)


class EventLog:
    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._prebuilt: list[list[Any]] = []
        self._prebuilt_keys: list[tuple[int, int, int, int]] = []  # dev, step, order, emit

    def add(self, kind: int, dev: np.ndarray, step: int, order: int | np.ndarray, ts: np.ndarray,
            emit: np.ndarray | None = None, f1: Any = 0, f2: Any = 0, f3: Any = 0, f4: Any = 0) -> None:
        n = len(dev)
        if n == 0:
            return

        def col(v: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=np.int64), (n,))

        self._parts.append((col(dev), col(step), col(order), col(kind), col(ts),
                            col(ts if emit is None else emit), col(f1), col(f2), col(f3), col(f4)))

    def add_prebuilt(self, dev: int, step: int, order: int, event: list[Any], emit: int) -> None:
        self._prebuilt_keys.append((dev, step, order, emit))
        self._prebuilt.append(event)

    def assemble(self, n_devices: int) -> list[DeviceEvents]:
        if self._prebuilt:
            dev, step, order, emit = (np.array(c, dtype=np.int64) for c in zip(*self._prebuilt_keys,
                                                                                strict=True))
            self.add(PREBUILT, dev, 0, order, emit, emit, np.arange(len(self._prebuilt)))
            self._parts[-1] = (dev, step, *self._parts[-1][2:])
            self._prebuilt_keys = []
        if not self._parts:
            return [DeviceEvents([], []) for _ in range(n_devices)]
        cols = dict(zip(_COLS, (np.concatenate(c) for c in zip(*self._parts, strict=True)), strict=True))
        idx = np.lexsort((cols["order"], cols["step"], cols["emit"], cols["dev"]))
        c = {name: a[idx] for name, a in cols.items()}
        kind, ts, f1, f2, f3, f4 = c["kind"], c["ts"], c["f1"], c["f2"], c["f3"], c["f4"]
        out: list[Any] = [None] * len(kind)

        def place(mask: np.ndarray, rows: list[list[Any]]) -> None:
            for p, e in zip(np.flatnonzero(mask).tolist(), rows, strict=True):
                out[p] = e

        for code, fields in ((VIEW, 4), (TUNE, 3), (POWER, 1)):
            m = kind == code
            cols_ = [ts[m].tolist()] + [f[m].tolist() for f in (f1, f2, f3, f4)[:fields]]
            place(m, [[code, *r] for r in zip(*cols_, strict=True)])
        m = kind == EPG_CLICK
        place(m, [[EPG_CLICK, t, *CLICKS[a], p] for t, a, p in zip(ts[m].tolist(), f1[m].tolist(),
                                                                     f2[m].tolist(), strict=True)])
        m = kind == VOD_PLAY
        place(m, [[VOD_PLAY, t, f"vod-{a}", p, d] for t, a, p, d in zip(
            ts[m].tolist(), f1[m].tolist(), f2[m].tolist(), f3[m].tolist(), strict=True)])
        m = kind == PREBUILT
        place(m, [self._prebuilt[i] for i in f1[m].tolist()])

        bounds = np.searchsorted(c["dev"], np.arange(n_devices + 1)).tolist()
        emit = c["emit"].tolist()
        return [DeviceEvents(out[a:b], emit[a:b]) for a, b in itertools.pairwise(bounds)]
