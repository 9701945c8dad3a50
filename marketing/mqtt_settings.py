"""The marketing service's `[mqtt]` section: where messages for the boxes are published.

../shared/CONTRACTS.md ("Security"): an `mqtt://` URL, or `mqtts://` with `ca_file`, `cert_file`
and `key_file`; behind deploy/mosquitto/secure.conf the certificate's CN is the identity, and
`marketing` may write `stb/v1/+/+/messages`. The publisher (`publisher.py`) opens one clean
connection per batch; nothing here survives between batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from stbcommon.settings import tls_file_problems

MAX_WINDOW = 65_534  # PUBLISHes in flight: below the 65,535 packet ids, so none is reused in flight


@dataclass(frozen=True)
class MarketingMqttSettings:
    url: str = "mqtt://localhost:1883"   # mqtt://[user:pass@]host[:port], or mqtts:// for TLS
    client_id: str = "marketing"         # one publisher per client id: a second one takes the connection over
    ca_file: str = ""                    # TLS: CA bundle (the fleet CA); empty = the system's
    cert_file: str = ""                  # TLS client certificate (PEM): the `marketing` identity
    key_file: str = ""                   # its private key (PEM), when not in cert_file
    connect_timeout_s: float = 10.0      # TCP + TLS + CONNACK
    ack_timeout_s: float = 60.0          # no PUBACK (and no connection) for this long: PublishError
    window: int = 20_000                 # PUBLISHes awaiting PUBACK; the broker's Receive Maximum caps it
    reconnect_min_s: float = 0.2         # full-jitter backoff between connection attempts
    reconnect_max_s: float = 10.0

    def validate(self) -> list[str]:
        problems = []
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            problems.append(f"url: {self.url!r} is not mqtt://[user:pass@]host[:port] or mqtts://...")
        else:
            try:
                parts.port  # noqa: B018 - urlsplit checks the port only when asked
            except ValueError:
                problems.append(f"url: {self.url!r} has an invalid port")
        if not 1 <= len(self.client_id.encode()) <= 128:
            problems.append("client_id: 1..128 bytes")
        problems.extend(tls_file_problems(self.url, self.ca_file, self.cert_file, self.key_file))
        if not 0 < self.connect_timeout_s <= 600:
            problems.append("connect_timeout_s: (0, 600] seconds")
        if not 0 < self.ack_timeout_s <= 3600:
            problems.append("ack_timeout_s: (0, 3600] seconds")
        if not 1 <= self.window <= MAX_WINDOW:
            problems.append(f"window: 1..{MAX_WINDOW}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            problems.append("reconnect_min_s/reconnect_max_s: need 0 < min <= max")
        return problems
