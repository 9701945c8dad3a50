"""The agent's settings: one frozen tree, defaults here and nowhere else.

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment
variables `STB_AGENT__SECTION__KEY` (e.g. `STB_AGENT__DEVICE__ID`), command-line flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proto.telemetry import DEVICE_ID_RE, MAX_EVENTS_PER_BATCH, MAX_PAYLOAD_BYTES, REGION_RE, U64

ENV_PREFIX = "STB_AGENT"


@dataclass(frozen=True)
class DeviceSettings:
    id: str = ""                 # required: serial number or stable hashed id
    household_id: int = 0
    region: str = "default"
    firmware: str = "unknown"

    def validate(self) -> list[str]:
        problems = []
        if not DEVICE_ID_RE.fullmatch(self.id):
            problems.append(f"id: {self.id!r} must match [A-Za-z0-9._-]{{1,64}} (set --device-id)")
        if not REGION_RE.fullmatch(self.region):
            problems.append(f"region: {self.region!r} must match [a-z0-9-]{{1,32}}")
        if not 0 <= self.household_id <= U64:
            problems.append("household_id: must be a uint64")
        if len(self.firmware) > 64:
            problems.append("firmware: at most 64 characters")
        return problems


@dataclass(frozen=True)
class AgentMqttSettings:
    url: str = "mqtt://localhost:1883"   # mqtt://user:pass@host:port, mqtts:// for TLS
    ca_file: str = ""
    cert_file: str = ""                  # TLS client certificate (optional)
    key_file: str = ""
    tls_insecure: bool = False
    keepalive_s: int = 60
    reconnect_min_s: float = 1.0         # full-jitter backoff: a fleet must not stampede a broker
    reconnect_max_s: float = 300.0
    inflight: int = 8                    # batches published and awaiting PUBACK
    publish_timeout_s: float = 30.0

    def validate(self) -> list[str]:
        problems = []
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            problems.append(f"url: {self.url!r} is not mqtt://[user:pass@]host[:port] or mqtts://...")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                problems.append(f"{name}: {path} does not exist")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            problems.append("reconnect_min_s/reconnect_max_s: need 0 < min <= max")
        if not 1 <= self.inflight <= 100:
            problems.append("inflight: 1..100")
        return problems


@dataclass(frozen=True)
class BatchPolicy:
    max_events: int = 200
    max_bytes: int = 64 * 1024
    max_age_s: float = 5.0

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.max_events <= MAX_EVENTS_PER_BATCH:
            problems.append(f"max_events: 1..{MAX_EVENTS_PER_BATCH}")
        if not 1024 <= self.max_bytes <= MAX_PAYLOAD_BYTES // 2:
            problems.append(f"max_bytes: 1024..{MAX_PAYLOAD_BYTES // 2}")
        if not 0 < self.max_age_s <= 3600:
            problems.append("max_age_s: (0, 3600]")
        return problems


@dataclass(frozen=True)
class SpoolSettings:
    dir: str = "/var/lib/stb-agent/spool"
    max_bytes: int = 8 * 1024 * 1024
    fsync: bool = True                   # fsync every event: survives power cuts, costs flash wear

    def validate(self) -> list[str]:
        return [] if self.max_bytes >= 64 * 1024 else ["max_bytes: at least 65536"]


@dataclass(frozen=True)
class IngestSettings:
    unix_path: str = ""                  # UNIX datagram socket for C firmware; empty = off
    udp_port: int = 0                    # UDP on 127.0.0.1; 0 = off

    def validate(self) -> list[str]:
        return [] if 0 <= self.udp_port <= 65535 else ["udp_port: 0..65535"]


@dataclass(frozen=True)
class AgentSettings:
    device: DeviceSettings = field(default_factory=DeviceSettings)
    mqtt: AgentMqttSettings = field(default_factory=AgentMqttSettings)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    metrics_port: int = 0                # Prometheus /metrics on 127.0.0.1; 0 = off (an STB rarely wants it)
    log_level: str = "INFO"
    log_format: str = "json"
    shutdown_grace_s: float = 5.0

    def validate(self) -> list[str]:
        problems = []
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append("log_level: one of DEBUG, INFO, WARNING, ERROR")
        if self.log_format not in ("json", "text"):
            problems.append("log_format: json or text")
        return problems
