"""The marketing daemon's settings: one frozen tree, defaults here (and in caps.py, mqtt_settings.py).

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment variables
`STB_MARKETING__SECTION__KEY` (e.g. `STB_MARKETING__CAPS__OVER_CAP=skip`), command-line flags.
../shared/CONTRACTS.md fixes `poll_s` and `[caps]`; docs/MARKETING.md lists the rest.
"""

from __future__ import annotations

import os
import zoneinfo
from dataclasses import dataclass, field

from marketing.caps import CapSettings
from marketing.mqtt_settings import MarketingMqttSettings
from stbcommon.settings import LogSettings, MetricsSettings
from warehouse.settings import StoreSettings

ENV_PREFIX = "STB_MARKETING"


@dataclass(frozen=True)
class DeliverySettings:
    """Who can be reached, and on which box."""

    timezone: str = "UTC"          # the boxes' local time: schedules, quiet hours, {start} in templates
    device_days: int = 30          # a household is reached on its most-watched box of these last days
    opt_in: str = "stb"            # contact only households whose contact_opt_in lists this ("" = everyone)
    max_messages: int = 2_000_000  # sends per cycle, all campaigns together (a guard, not a cap)
    id_key_file: str = ""          # a secret that keys message ids (else anyone with a campaign name can
                                   #   map an id back to its household); mode 0600

    def validate(self) -> list[str]:
        problems = []
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone: unknown time zone {self.timezone!r}")
        if not 1 <= self.device_days <= 365:
            problems.append("device_days: 1..365")
        if self.max_messages < 1:
            problems.append("max_messages: >= 1")
        if self.id_key_file:
            try:
                mode = os.stat(self.id_key_file).st_mode
            except OSError as exc:
                problems.append(f"id_key_file: {exc}")
            else:
                if mode & 0o077:
                    problems.append(f"id_key_file: {self.id_key_file} is readable by others; chmod 600 it")
        return problems

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True)
class AllocationSettings:
    """Thompson sampling of content variants."""

    floor: float = 0.05            # every variant keeps at least this share of a wave (exploration)

    def validate(self) -> list[str]:
        return [] if 0.0 <= self.floor <= 0.5 else ["floor: 0..0.5"]


@dataclass(frozen=True)
class MarketingSettings:
    poll_s: float = 30.0
    store: StoreSettings = field(default_factory=StoreSettings)
    mqtt: MarketingMqttSettings = field(default_factory=MarketingMqttSettings)
    caps: CapSettings = field(default_factory=CapSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    allocation: AllocationSettings = field(default_factory=AllocationSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> list[str]:
        return [] if 0.5 <= self.poll_s <= 86_400 else ["poll_s: 0.5 .. 86400 seconds"]
