"""Store URLs: `clickhouse://user:pass@host:9000/db?opt=v`, `chdb:///abs/path`, `chdb:rel/path`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from warehouse.errors import WarehouseURLError

DEFAULT_DATABASE = "stb"
_DB_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class StoreURL:
    scheme: str                       # "clickhouse" or "chdb"
    database: str = DEFAULT_DATABASE
    host: str = ""
    port: int = 9000
    user: str = "default"
    password: str = ""
    path: Path | None = None          # chdb data folder
    options: dict[str, str] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        if self.scheme == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        auth = f"{self.user}:***@" if self.password else f"{self.user}@"
        return f"clickhouse://{auth}{self.host}:{self.port}/{self.database}"


def parse_store_url(url: str) -> StoreURL:
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme == "clickhouse":
        if not parts.hostname:
            raise WarehouseURLError(f"{url!r}: a clickhouse:// URL needs a host", url=url)
        database = parts.path.lstrip("/") or DEFAULT_DATABASE
        try:
            port = parts.port or 9000
        except ValueError:
            raise WarehouseURLError(f"{url!r}: bad port", url=url) from None
        store = StoreURL("clickhouse", database, parts.hostname, port, unquote(parts.username or "default"),
                         unquote(parts.password or ""), None, options)
    elif parts.scheme == "chdb":
        # chdb:///abs/path → /abs/path; chdb:rel/path or chdb:./rel → relative to the cwd
        raw = parts.netloc + parts.path if parts.netloc else parts.path
        if not raw:
            raise WarehouseURLError(f"{url!r}: a chdb URL needs a folder (chdb:///abs/path)", url=url)
        database = options.pop("database", DEFAULT_DATABASE)
        store = StoreURL("chdb", database, path=Path(unquote(raw)).resolve(), options=options)
    else:
        raise WarehouseURLError(
            f"{url!r}: use clickhouse://user:pass@host:9000/db or chdb:///abs/path", url=url)
    if not store.database or set(store.database) - _DB_CHARS:
        raise WarehouseURLError(f"{url!r}: database name {store.database!r} must be [A-Za-z0-9_]+", url=url)
    return store
