"""Store URLs, parsed and checked before anything connects.

    clickhouse://user:pass@host:9000/db?connect_timeout=5   a ClickHouse server (native protocol)
    clickhouses://user:pass@host:9440/db                     the same over TLS (secure=1)
    clickhouse://user:pass@h1:9000,h2:9000/db?cluster=stb    a cluster (docs/DEPLOYMENT.md): the hosts
        are entry points tried in order (any may be down); `stb` is in the servers' remote_servers
    chdb:///abs/path  chdb:rel/path  chdb:./rel?database=x   an embedded chdb data folder

Defaults: port 9000 (9440 secure), user `default`, database `stb`. A cluster URL also takes
`insert_quorum` (replicas that must hold a block before an insert returns; default 2) and
`insert_quorum_timeout` (seconds, default 60). Query options are
checked here, so a typo in a settings file fails at startup rather than on first use;
`StoreURL.redacted` is what logs and the stores' `url` attribute show (no password).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from stbcommon.settings import redact_text
from warehouse.errors import WarehouseURLError

DEFAULT_DATABASE: Final = "stb"
DEFAULT_PORT: Final = 9000
DEFAULT_SECURE_PORT: Final = 9440
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXAMPLES = "clickhouse://user:pass@host:9000/db, chdb:///abs/path or chdb:rel/path"
DEFAULT_INSERT_QUORUM: Final = 2
DEFAULT_INSERT_QUORUM_TIMEOUT_S: Final = 60.0


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise ValueError("expected seconds in (0, 3600]")
    return value


def _compression(text: str) -> str | bool:
    return text.lower() if text.lower() in ("lz4", "lz4hc", "zstd") else _bool(text)


# Query options of clickhouse:// URLs: the clickhouse-driver Client keyword each becomes,
# and how to read its value. Anything else is an error, not silently ignored.
CLICKHOUSE_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "secure": _bool,
    "verify": _bool,
    "ca_certs": str,
    "compression": _compression,
    "connect_timeout": _seconds,
    "send_receive_timeout": _seconds,
    "sync_request_timeout": _seconds,
    "client_name": str,
    "tcp_keepalive": _bool,
}


def _quorum(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 16:
        raise ValueError("expected a number of replicas in 0..16 (0 or 1: no quorum)")
    return value


# Query options of cluster URLs (with `cluster=NAME`): server settings of every insert.
CLUSTER_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "insert_quorum": _quorum,
    "insert_quorum_timeout": _seconds,
}


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. `options` holds typed clickhouse-driver keywords (server only)."""

    scheme: Literal["clickhouse", "chdb"]
    database: str = DEFAULT_DATABASE
    host: str = ""
    port: int = DEFAULT_PORT
    user: str = "default"
    password: str = field(default="", repr=False)
    path: Path | None = None  # chdb data folder, absolute
    options: Mapping[str, Any] = field(default_factory=dict)
    cluster: str = ""  # a ClickHouse cluster name: tables are NAME (Distributed) over NAME_local
    alt_hosts: tuple[tuple[str, int], ...] = ()  # more entry points of a cluster, after host:port
    cluster_options: Mapping[str, Any] = field(default_factory=dict)  # CLUSTER_OPTIONS, typed

    @property
    def hosts(self) -> tuple[tuple[str, int], ...]:
        """Every entry point, in the order they are tried."""
        return ((self.host, self.port), *self.alt_hosts) if self.scheme == "clickhouse" else ()

    @property
    def redacted(self) -> str:
        """The URL without its password: safe for logs, metrics labels and error messages."""
        if self.scheme == "chdb":
            query = "" if self.database == DEFAULT_DATABASE else f"?database={self.database}"
            return f"chdb://{quote(str(self.path))}{query}"
        auth = f"{quote(self.user, safe='')}:***@" if self.password else f"{quote(self.user, safe='')}@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        shown = {k: _option_text(v) for k, v in self.options.items()}
        if self.cluster:
            shown["cluster"] = self.cluster
            shown.update({k: _option_text(v) for k, v in self.cluster_options.items()})
        query = urlencode(shown)
        return f"clickhouse://{auth}{hosts}/{self.database}" + (f"?{query}" if query else "")


def _option_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL; raises WarehouseURLError saying what is wrong and how to fix it."""
    try:
        parts = urlsplit(url.strip())
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise _error(url, f"not a URL ({exc})") from None
    duplicates = {k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i])}
    if duplicates:
        raise _error(url, f"option {sorted(duplicates)[0]!r} given twice")
    query = dict(pairs)
    if parts.scheme in ("clickhouse", "clickhouses"):
        store = _parse_clickhouse(url, parts, query)
    elif parts.scheme == "chdb":
        store = _parse_chdb(url, parts, query)
    else:
        raise _error(url, f"unknown scheme {parts.scheme!r}: use {_EXAMPLES}")
    if not _IDENTIFIER.fullmatch(store.database):
        raise _error(url, f"database name {store.database!r} must match [A-Za-z_][A-Za-z0-9_]*")
    return store


def _parse_clickhouse(url: str, parts: SplitResult, query: dict[str, str]) -> StoreURL:
    if parts.fragment:
        raise _error(url, "a ClickHouse URL takes no #fragment")
    cluster = query.pop("cluster", None)
    if cluster is not None and not _IDENTIFIER.fullmatch(cluster):
        raise _error(url, f"cluster name {cluster!r} must match [A-Za-z_][A-Za-z0-9_]*")
    options: dict[str, Any] = {"secure": True} if parts.scheme == "clickhouses" else {}
    cluster_options: dict[str, Any] = {}
    for name, text in query.items():
        reader = CLICKHOUSE_OPTIONS.get(name)
        into = options
        if reader is None and cluster is not None:
            reader, into = CLUSTER_OPTIONS.get(name), cluster_options
        if reader is None:
            known = sorted({*CLICKHOUSE_OPTIONS, "cluster", *(CLUSTER_OPTIONS if cluster is not None else ())})
            hint = " (insert_quorum... need cluster=NAME)" if name in CLUSTER_OPTIONS else ""
            raise _error(url, f"unknown option {name!r}{hint}; known: {', '.join(known)}")
        try:
            into[name] = reader(text)
        except ValueError as exc:
            raise _error(url, f"option {name}={text!r}: {exc}") from None
    default_port = DEFAULT_SECURE_PORT if options.get("secure") else DEFAULT_PORT
    hosts = [_host_port(url, item, default_port) for item in parts.netloc.rpartition("@")[2].split(",")]
    if len(hosts) > 1 and cluster is None:
        raise _error(url, "several hosts name the entry points of a cluster: add ?cluster=NAME "
                          "(the cluster in the servers' remote_servers), or give one host")
    path = unquote(parts.path).strip("/")
    if "/" in path:
        raise _error(url, f"the path names one database, got {path!r}")
    if cluster is not None:
        cluster_options.setdefault("insert_quorum", DEFAULT_INSERT_QUORUM)
        cluster_options.setdefault("insert_quorum_timeout", DEFAULT_INSERT_QUORUM_TIMEOUT_S)
    (host, port), *alt_hosts = hosts
    return StoreURL("clickhouse", path or DEFAULT_DATABASE, host, port,
                    unquote(parts.username or "") or "default", unquote(parts.password or ""),
                    None, options, cluster or "", tuple(alt_hosts), cluster_options)


def _host_port(url: str, item: str, default_port: int) -> tuple[str, int]:
    """One `host[:port]` of the netloc (IPv6 in brackets), checked like urlsplit would."""
    try:
        parts = urlsplit(f"//{item}")
        port = parts.port
    except ValueError:
        raise _error(url, f"the port of {item!r} must be a number in 1..65535") from None
    if not parts.hostname:
        raise _error(url, f"a ClickHouse URL needs a host: {_EXAMPLES}")
    if port == 0:
        raise _error(url, "the port must be a number in 1..65535")
    return parts.hostname, port or default_port


def _parse_chdb(url: str, parts: SplitResult, query: dict[str, str]) -> StoreURL:
    if parts.netloc:
        # chdb://name/x would make `name` a host; say which spelling was probably meant.
        raise _error(url, "use chdb:///abs/path (three slashes) or chdb:relative/path")
    unknown = set(query) - {"database"}
    if unknown:
        raise _error(url, f"unknown option {sorted(unknown)[0]!r}; a chdb URL takes only ?database=")
    raw = unquote(parts.path)
    if not raw or raw in (".", "/"):
        raise _error(url, "a chdb URL needs a data folder: chdb:///abs/path or chdb:relative/path")
    if "\0" in raw:
        raise _error(url, "the path contains a NUL byte")
    return StoreURL("chdb", query.get("database", DEFAULT_DATABASE),
                    path=Path(os.path.abspath(os.path.expanduser(raw))))


def _error(url: str, problem: str) -> WarehouseURLError:
    shown = _redact_text(url)
    return WarehouseURLError(f"store URL {shown!r}: {problem}", url=shown)


def _redact_text(url: str) -> str:
    """Hide the password of a URL that may not even parse."""
    return redact_text(url)
