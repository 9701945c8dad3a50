"""The console's settings: one frozen tree, defaults here and nowhere else (docs/CONSOLE.md lists them).

Sources, lowest to highest: these defaults, the TOML file (`--config`), environment variables
`STB_CONSOLE__SECTION__KEY` (e.g. `STB_CONSOLE__HTTP__LISTEN`), command-line flags. A file that
other users can read and holds a secret is refused (stbcommon.settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stbcommon.settings import LogSettings
from warehouse.settings import StoreSettings

ENV_PREFIX = "STB_CONSOLE"


def _host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) <= 65535)


@dataclass(frozen=True)
class HttpSettings:
    listen: str = "127.0.0.1:8480"         # HOST:PORT
    tls_cert: str = ""                     # PEM chain; with tls_key the console speaks HTTPS only
    tls_key: str = ""
    secret_file: str = "console-secret"    # signs cookies; generated (mode 0600) at first start
    session_hours: float = 12.0            # a login lasts this long
    proxy_headers: bool = False            # trust X-Forwarded-Proto (behind a TLS proxy: Secure cookies)

    def validate(self) -> list[str]:
        problems = [] if _host_port(self.listen) else [f"listen: {self.listen!r} is not HOST:PORT"]
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("tls_cert and tls_key: both or neither")
        if not 0.1 <= self.session_hours <= 24 * 30:
            problems.append("session_hours: must be 0.1..720")
        if not self.secret_file:
            problems.append("secret_file: a path is needed")
        return problems


@dataclass(frozen=True)
class RecommenderSettings:
    address: str = ""                      # HOST:PORT of the gRPC service; "" = no live recommendations
    token_file: str = ""                   # one line: the bearer token (mode 0600)
    tls_ca: str = ""                       # CA of the service's certificate; "" = plaintext
    timeout_s: float = 0.5

    def validate(self) -> list[str]:
        problems = [] if not self.address or _host_port(self.address) else \
            [f"address: {self.address!r} is not HOST:PORT"]
        if not 0 < self.timeout_s <= 10:
            problems.append("timeout_s: must be in (0, 10]")
        return problems


@dataclass(frozen=True)
class SourceSettings:
    """Where the overview looks besides the store."""

    collector_metrics_url: str = ""        # e.g. http://127.0.0.1:9464/metrics; "" = not shown
    recommender_model_dir: str = ""        # versions/ + CURRENT; "" = not shown
    churn_model_dir: str = ""

    def validate(self) -> list[str]:
        url = self.collector_metrics_url
        return [] if not url or url.startswith(("http://", "https://")) else \
            ["collector_metrics_url: an http(s) URL"]


@dataclass(frozen=True)
class PrivacySettings:
    """Households are shown pseudonymised to roles without personal-data access (viewers)."""

    key_file: str = ""                     # pseudonym key; "" = derived from the cookie secret

    def validate(self) -> list[str]:
        return []


@dataclass(frozen=True)
class ConsoleSettings:
    store: StoreSettings = field(default_factory=StoreSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    recommender: RecommenderSettings = field(default_factory=RecommenderSettings)
    sources: SourceSettings = field(default_factory=SourceSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    log: LogSettings = field(default_factory=LogSettings)
