"""A simulated world written straight into a store (no broker): guide via the XMLTV importer,
events as the collector would store them, the subscriber extract via the CRM importer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware_sim.behaviour import Simulator
from firmware_sim.epg import Epg
from firmware_sim.households import Households, football_fan_households
from firmware_sim.subscribers import write_subscribers
from firmware_sim.xmltv import write_xmltv
from proto.telemetry import KINDS
from warehouse import Warehouse
from warehouse.columns import EVENT_COLUMNS
from warehouse.xmltv_import import import_xmltv


@dataclass
class World:
    epg: Epg
    households: Households
    events: dict[str, np.ndarray]
    start: dt.date
    days: int

    @property
    def last_day(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def football_fans(self) -> set[int]:
        fans = football_fan_households(self.households)
        return {int(h) for h in self.households.household_id[fans]}

    def load(self, store: Warehouse, tmp: Path) -> None:
        write_xmltv(self.epg, tmp / "guide.xml")
        import_xmltv(tmp / "guide.xml", store, progress=False)
        store.insert_columns("events", self.events)
        from crm.importer import import_extract
        from crm.settings import ImportSettings
        from crm.subscribers import read_extract

        write_subscribers(tmp / "subscribers.csv", self.households, self.last_day, start=self.start)
        import_extract(store, read_extract(tmp / "subscribers.csv", ImportSettings()), as_of=self.last_day)


def simulate(households: int, days: int, seed: int, start: dt.date = dt.date(2025, 3, 3)) -> World:
    epg = Epg.generate(start, days + 1, seed, "medium")
    homes = Households.generate(epg, households, seed)
    sim = Simulator(epg, homes)
    rows: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    for dd in sim.iter_days(range(days)):
        for seq, event in enumerate(dd.events):
            spec = KINDS[event[0]]
            values = dict(zip((f.column for f in spec.fields), event[2:], strict=False))
            for name in EVENT_COLUMNS:
                rows[name].append(values.get(name, 0 if EVENT_COLUMNS[name] != "String" else ""))
            rows["household_id"][-1], rows["device_id"][-1] = dd.household_id, dd.device_id
            rows["seq"][-1] = dd.day * 100_000 + seq
            rows["kind"][-1] = event[0]
            rows["device_ts_ms"][-1] = rows["ts_ms"][-1] = rows["received_ms"][-1] = event[1]
            rows["region"][-1], rows["firmware"][-1] = dd.region, "sim"
    cols: dict[str, np.ndarray] = {}
    for name, ch_type in EVENT_COLUMNS.items():
        if ch_type == "String":
            cols[name] = np.empty(len(rows[name]), dtype=object)
            cols[name][:] = rows[name]
        elif ch_type.startswith("Enum8"):
            cols[name] = np.asarray(rows[name], dtype=np.int8)
        else:
            cols[name] = np.asarray(rows[name], dtype=np.dtype(ch_type.lower()))
    return World(epg, homes, cols, start, days)
