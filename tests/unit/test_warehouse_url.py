from __future__ import annotations

from pathlib import Path

import pytest

from warehouse import WarehouseURLError, parse_store_url


def test_clickhouse_url_defaults_and_options() -> None:
    u = parse_store_url("clickhouse://writer:s%40cret@ch.headend:9440/telemetry?secure=1")
    assert (u.scheme, u.host, u.port, u.user, u.password, u.database) == (
        "clickhouse", "ch.headend", 9440, "writer", "s@cret", "telemetry")
    assert u.options == {"secure": "1"}
    assert "s@cret" not in u.redacted and "***" in u.redacted
    d = parse_store_url("clickhouse://localhost")
    assert (d.port, d.user, d.database) == (9000, "default", "stb")


def test_chdb_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_store_url(f"chdb://{tmp_path}/data").path == tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    assert parse_store_url("chdb:./stb-data").path == tmp_path / "stb-data"
    assert parse_store_url("chdb:rel/dir?database=lab").database == "lab"


@pytest.mark.parametrize("url", ["postgres://x/y", "clickhouse:///nohost", "chdb:", "clickhouse://h/bad-name",
                                 "clickhouse://h:notaport/stb"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(WarehouseURLError):
        parse_store_url(url)
