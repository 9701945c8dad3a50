"""The `[store]` settings section shared by the store's readers (crm, recommender)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class StoreSettings:
    url: str = "chdb:./stb-data"  # clickhouse://user:pass@host:9000/db or chdb:///abs/path

    def validate(self) -> list[str]:
        if urlsplit(self.url).scheme not in ("clickhouse", "chdb"):
            return [f"url: {self.url!r} is not clickhouse://host:9000/db or chdb:///path"]
        return []
