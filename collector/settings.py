"""The collector's settings: one frozen tree, defaults here and nowhere else.

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment
variables `STB_COLLECTOR__SECTION__KEY` (e.g. `STB_COLLECTOR__MQTT__URL`,
`STB_COLLECTOR__WORKERS`), command-line flags.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proto.telemetry import MAX_EVENTS_PER_BATCH, MAX_PAYLOAD_BYTES, TOPIC_FILTER
from stbcommon.settings import LogSettings, MetricsSettings, tls_file_problems
from warehouse.errors import WarehouseURLError
from warehouse.url import parse_store_url

ENV_PREFIX = "STB_COLLECTOR"
_GROUP_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class MqttSettings:
    url: str = "mqtt://localhost:1883"  # mqtt://user:pass@host:port, or mqtts:// for TLS
    group: str = "stb-collectors"       # shared-subscription group: members split one stream
    # "shared" ($share/<group>/<topic>): collectors split the stream. "exclusive": one plain
    # persistent subscription for a single collector; mosquitto 2.0.11 restores only these
    # across a broker restart (a shared one is lost until the collector resubscribes).
    subscription: str = "shared"
    topic: str = TOPIC_FILTER
    # Default <group>-<hostname>-w<worker>; must stay stable across restarts. With workers > 1
    # the supervisor gives each worker a fixed id + "-w<worker>" (one connection per client id).
    client_id: str = ""
    session_expiry_s: int = 7 * 24 * 3600  # the broker keeps our queue this long while we are away
    receive_maximum: int = 65535        # un-acked messages the broker may send us (MQTT 5)
    keepalive_s: int = 30
    ca_file: str = ""                   # TLS: CA bundle; empty = system default
    cert_file: str = ""                 # TLS client certificate (PEM): the collector's identity
    key_file: str = ""                  # its private key (PEM), when not in cert_file
    tls_insecure: bool = False          # TLS without hostname check (labs only)
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    max_buffered_bytes: int = 512 * 1024 * 1024  # stop reading the socket beyond this

    def validate(self) -> list[str]:
        problems = []
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            problems.append(f"url: {self.url!r} is not mqtt://[user:pass@]host[:port] or mqtts://...")
        if not _GROUP_RE.fullmatch(self.group):
            problems.append(f"group: {self.group!r} must match [A-Za-z0-9_-]{{1,64}}")
        if self.subscription not in ("shared", "exclusive"):
            problems.append(f"subscription: {self.subscription!r} is not shared or exclusive")
        if not 1 <= self.receive_maximum <= 65535:
            problems.append("receive_maximum: must be 1..65535")
        if self.session_expiry_s < 0:
            problems.append("session_expiry_s: must be >= 0")
        if self.keepalive_s < 5:
            problems.append("keepalive_s: must be >= 5")
        problems.extend(tls_file_problems(self.url, self.ca_file, self.cert_file, self.key_file))
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            problems.append("reconnect_min_s/reconnect_max_s: need 0 < min <= max")
        if self.max_buffered_bytes < 4 * MAX_PAYLOAD_BYTES:
            problems.append(f"max_buffered_bytes: must be >= {4 * MAX_PAYLOAD_BYTES}")
        return problems

    def client_id_for(self, worker: int) -> str:
        return self.client_id or f"{self.group}-{socket.gethostname()}-w{worker}"[:128]


@dataclass(frozen=True)
class BatchSettings:
    """A batch is flushed when any limit is reached. Its messages are acked after commit."""

    # 100k rows an insert: ClickHouse 18.16 spent ~25 % less CPU per row than at 50k (measured,
    # 2M events of 50-event messages: 2.9 vs 3.95 CPU-s), and the collector ~15 % less.
    max_rows: int = 100_000
    max_messages: int = 16_000
    max_bytes: int = 64 * 1024 * 1024   # payload bytes: bounds a batch of large messages in memory
    max_age_s: float = 0.5

    def validate(self) -> list[str]:
        problems = []
        if self.max_rows < 1:
            problems.append("max_rows: must be >= 1")
        if self.max_bytes < MAX_PAYLOAD_BYTES:
            problems.append(f"max_bytes: must be >= {MAX_PAYLOAD_BYTES} (one maximal message)")
        if self.max_messages < 1:
            problems.append("max_messages: must be >= 1")
        if not 0 < self.max_age_s <= 60:
            problems.append("max_age_s: must be in (0, 60]")
        return problems


@dataclass(frozen=True)
class StoreSettings:
    url: str = "chdb:./stb-data"        # clickhouse://user:pass@host:9000/db or chdb:///abs/path
    retry_min_s: float = 0.2
    retry_max_s: float = 10.0
    writers: int = 2                    # batches written at once, one connection each (chdb: 1)

    def validate(self) -> list[str]:
        problems = []
        if urlsplit(self.url).scheme != "null":
            try:
                parse_store_url(self.url)  # the store's own check: host, port, options, database
            except WarehouseURLError as exc:
                problems.append(f"url: {exc} (or null:// for no store)")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            problems.append("retry_min_s/retry_max_s: need 0 < min <= max")
        if not 1 <= self.writers <= 16:
            problems.append("writers: 1..16")
        return problems


@dataclass(frozen=True)
class ValidationSettings:
    clock_tolerance_s: float = 2.0      # |received - sent| below this is latency, not clock error
    max_future_s: int = 400 * 24 * 3600  # corrected times beyond now + this are impossible
    dead_letter_payload_bytes: int = 64 * 1024  # raw bytes kept per dead letter

    def validate(self) -> list[str]:
        problems = []
        if self.clock_tolerance_s < 0:
            problems.append("clock_tolerance_s: must be >= 0")
        if self.max_future_s < 0:
            problems.append("max_future_s: must be >= 0")
        if not 0 <= self.dead_letter_payload_bytes <= MAX_PAYLOAD_BYTES * 4:
            problems.append(f"dead_letter_payload_bytes: must be 0..{MAX_PAYLOAD_BYTES * 4}")
        return problems




@dataclass(frozen=True)
class CollectorSettings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    metrics: MetricsSettings = field(default_factory=lambda: MetricsSettings(host="0.0.0.0", port=9464))
    log: LogSettings = field(default_factory=LogSettings)
    workers: int = 1                     # processes, each a shared-subscription member
    shutdown_grace_s: float = 30.0       # SIGTERM: time allowed to flush and acknowledge

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.workers <= 64:
            problems.append("workers: must be 1..64")
        if self.workers > 1 and self.mqtt.subscription == "exclusive":
            problems.append("workers: an exclusive subscription delivers everything to every worker; "
                            "use mqtt.subscription = shared for workers > 1")
        if self.workers > 1 and urlsplit(self.store.url).scheme == "chdb":
            problems.append("workers: an embedded chdb store is opened by one process only; "
                            "use a ClickHouse server (store.url = clickhouse://...) for workers > 1")
        # Withheld acks must never fill the broker's in-flight window, or delivery stalls
        # while the batch waits for more messages that cannot come.
        # store.writers batches are written while one more waits and the next fills, so that
        # many batches' acks can be pending.
        pending = self.store.writers + 2
        if pending * self.batch.max_messages > self.mqtt.receive_maximum:
            problems.append(f"batch.max_messages ({self.batch.max_messages}) must be at most 1/{pending} "
                            f"of mqtt.receive_maximum ({self.mqtt.receive_maximum}) with store.writers = "
                            f"{self.store.writers}")
        if self.batch.max_rows < MAX_EVENTS_PER_BATCH:
            problems.append(f"batch.max_rows must be >= {MAX_EVENTS_PER_BATCH} (one full message)")
        if self.shutdown_grace_s <= 0:
            problems.append("shutdown_grace_s: must be > 0")
        return problems
