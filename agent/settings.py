"""The agent's settings: one frozen tree, defaults here and nowhere else.

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment
variables `STB_AGENT__SECTION__KEY` (e.g. `STB_AGENT__DEVICE__ID`,
`STB_AGENT__SPOOL__FSYNC`), command-line flags. `stbcommon.settings.load` builds the tree
and reports every problem at once, before the agent starts.

This module imports nothing heavy: firmware reads it before deciding to start an agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proto.telemetry import DEVICE_ID_RE, MAX_EVENTS_PER_BATCH, MAX_FIRMWARE_LEN, MAX_PAYLOAD_BYTES, REGION_RE, U64
from stbcommon.settings import LogSettings, MetricsSettings, tls_file_problems

ENV_PREFIX = "STB_AGENT"
FSYNC_POLICIES = ("batch", "event", "off")
_FSYNC_ALIASES = {"true": "batch", "on": "batch", "yes": "batch", "1": "batch",
                  "false": "off", "no": "off", "0": "off", "none": "off", "never": "off", "always": "event"}


@dataclass(frozen=True)
class DeviceSettings:
    """Who this box is: every batch carries these, the topic carries region and id."""

    id: str = ""                 # required: serial number or a stable hashed id; also the MQTT client id
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
        if len(self.firmware) > MAX_FIRMWARE_LEN:
            problems.append(f"firmware: at most {MAX_FIRMWARE_LEN} characters")
        return problems


@dataclass(frozen=True)
class AgentMqttSettings:
    url: str = "mqtt://localhost:1883"   # mqtt://user:pass@host:port, mqtts:// for TLS
    ca_file: str = ""                    # TLS: CA bundle; empty = the system's
    cert_file: str = ""                  # TLS client certificate (PEM; may hold the key too)
    key_file: str = ""
    tls_insecure: bool = False           # TLS without certificate checks (labs only)
    keepalive_s: int = 60
    reconnect_min_s: float = 1.0         # full-jitter backoff: a fleet must not stampede a broker
    reconnect_max_s: float = 300.0
    inflight: int = 8                    # batches published and awaiting PUBACK
    publish_timeout_s: float = 30.0      # a PUBACK later than this ends the connection

    def validate(self) -> list[str]:
        problems = []
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            problems.append(f"url: {self.url!r} is not mqtt://[user:pass@]host[:port] or mqtts://...")
        try:
            parts.port  # noqa: B018 (raises for a bad port)
        except ValueError:
            problems.append(f"url: {self.url!r} has an invalid port")
        problems.extend(tls_file_problems(self.url, self.ca_file, self.cert_file, self.key_file))
        if not 5 <= self.keepalive_s <= 65535:
            problems.append("keepalive_s: 5..65535")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            problems.append("reconnect_min_s/reconnect_max_s: need 0 < min <= max")
        if not 1 <= self.inflight <= 100:
            problems.append("inflight: 1..100")
        if self.publish_timeout_s <= 0:
            problems.append("publish_timeout_s: must be > 0")
        return problems


@dataclass(frozen=True)
class BatchPolicy:
    """A batch is sealed (and may be published) when any limit is reached."""

    max_events: int = 200
    max_bytes: int = 64 * 1024           # spooled bytes; the wire payload is a little smaller
    max_age_s: float = 5.0               # the oldest unsealed event waits at most this long

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.max_events <= MAX_EVENTS_PER_BATCH:
            problems.append(f"max_events: 1..{MAX_EVENTS_PER_BATCH}")
        # Half the wire limit leaves room for the envelope and any record-size estimate error.
        if not 1024 <= self.max_bytes <= MAX_PAYLOAD_BYTES // 2:
            problems.append(f"max_bytes: 1024..{MAX_PAYLOAD_BYTES // 2}")
        if not 0 < self.max_age_s <= 3600:
            problems.append("max_age_s: (0, 3600]")
        return problems


@dataclass(frozen=True)
class SpoolSettings:
    dir: str = "/var/lib/stb-agent/spool"
    max_bytes: int = 8 * 1024 * 1024     # on disk; beyond it the oldest events are dropped (counted)
    # "batch": fsync when a batch is sealed (and only synced events are published);
    # "event": fsync every event before record() returns (flash wear, blocks the caller);
    # "off": never fsync (a killed process loses nothing, a power cut may lose recent events).
    # true/false are accepted too: true = "batch", false = "off".
    fsync: str | bool = "batch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fsync", normalize_fsync(self.fsync))

    def validate(self) -> list[str]:
        problems = []
        if self.max_bytes < 64 * 1024:
            problems.append("max_bytes: at least 65536")
        if self.fsync not in FSYNC_POLICIES:
            problems.append(f"fsync: {self.fsync!r} is not one of {', '.join(FSYNC_POLICIES)}")
        if not self.dir:
            problems.append("dir: required")
        return problems


def normalize_fsync(value: str | bool) -> str:
    """The policy name for a bool or an alias; unknown strings pass through to validate()."""
    if isinstance(value, bool):
        return "batch" if value else "off"
    return _FSYNC_ALIASES.get(value.lower(), value.lower())


@dataclass(frozen=True)
class IngestSettings:
    """Local sockets of the standalone agent (`python -m agent`); a library Agent ignores them."""

    unix_path: str = "/run/stb-agent/events.sock"  # UNIX datagram socket; empty = off
    udp_port: int = 0                    # UDP on 127.0.0.1; 0 = off

    def validate(self) -> list[str]:
        problems = []
        if not 0 <= self.udp_port <= 65535:
            problems.append("udp_port: 0..65535")
        if len(self.unix_path.encode()) > 107:
            problems.append("unix_path: at most 107 bytes (sun_path)")
        return problems


@dataclass(frozen=True)
class MessagesSettings:
    """Messages for the box (campaigns): see agent/downlink.py and docs/AGENT.md."""

    enabled: bool = True                 # subscribe to stb/v1/{region}/{device}/messages
    socket: str = ""                     # UNIX stream socket for the UI (JSON lines); "" = off
    keep: int = 100                      # messages kept while nobody listens (newest)
    session_expiry_s: int = 7 * 24 * 3600  # the broker queues messages this long while the box is off

    def validate(self) -> list[str]:
        problems = []
        if len(self.socket.encode()) > 107:
            problems.append("socket: at most 107 bytes (sun_path)")
        if not 1 <= self.keep <= 10_000:
            problems.append("keep: 1..10000")
        if not 0 <= self.session_expiry_s <= 2**32 - 1:
            problems.append("session_expiry_s: 0..4294967295")
        return problems


@dataclass(frozen=True)
class AgentSettings:
    device: DeviceSettings = field(default_factory=DeviceSettings)
    mqtt: AgentMqttSettings = field(default_factory=AgentMqttSettings)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    messages: MessagesSettings = field(default_factory=MessagesSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    shutdown_grace_s: float = 5.0        # close/SIGTERM: time allowed to publish what is spooled

    def validate(self) -> list[str]:
        return [] if self.shutdown_grace_s >= 0 else ["shutdown_grace_s: must be >= 0"]
