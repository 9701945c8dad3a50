"""Store URLs: defaults, options, chdb paths, redaction, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse import StoreURL, WarehouseURLError, parse_store_url


def test_clickhouse_defaults() -> None:
    store = parse_store_url("clickhouse://ch.example")
    assert (store.scheme, store.host, store.port, store.user, store.password, store.database) == (
        "clickhouse", "ch.example", 9000, "default", "", "stb")
    assert store.path is None and dict(store.options) == {}


def test_clickhouse_everything() -> None:
    store = parse_store_url("clickhouse://ingest:s%40cr%3At@10.0.0.5:19000/telemetry"
                            "?secure=1&connect_timeout=2.5&compression=lz4&client_name=c1")
    assert (store.host, store.port, store.user, store.password, store.database) == (
        "10.0.0.5", 19000, "ingest", "s@cr:t", "telemetry")
    assert dict(store.options) == {"secure": True, "connect_timeout": 2.5, "compression": "lz4",
                                   "client_name": "c1"}


def test_secure_scheme_and_default_secure_port() -> None:
    assert parse_store_url("clickhouses://h/db").port == 9440
    assert parse_store_url("clickhouses://h/db").options["secure"] is True
    assert parse_store_url("clickhouse://h?secure=true").port == 9440
    assert parse_store_url("clickhouse://h:9000?secure=1").port == 9000


def test_ipv6_host() -> None:
    store = parse_store_url("clickhouse://[::1]:9000/stb")
    assert store.host == "::1"
    assert store.redacted == "clickhouse://default@[::1]:9000/stb"


def test_password_is_redacted_everywhere() -> None:
    store = parse_store_url("clickhouse://u:hunter2@h:9000/stb?connect_timeout=5")
    assert store.redacted == "clickhouse://u:***@h:9000/stb?connect_timeout=5.0"
    assert "hunter2" not in repr(store)
    assert parse_store_url("clickhouse://u@h/stb").redacted == "clickhouse://u@h:9000/stb"


def test_redacted_url_parses_back_to_the_same_store() -> None:
    store = parse_store_url("clickhouse://u@h:9001/db?secure=0&send_receive_timeout=30")
    assert parse_store_url(store.redacted) == store


def test_chdb_absolute_path() -> None:
    store = parse_store_url("chdb:///var/lib/stb/chdb")
    assert (store.scheme, store.path, store.database) == ("chdb", Path("/var/lib/stb/chdb"), "stb")
    assert store.redacted == "chdb:///var/lib/stb/chdb"


@pytest.mark.parametrize("url", ["chdb:data/chdb", "chdb:./data/chdb", "chdb:data/x/../chdb"])
def test_chdb_relative_path_is_relative_to_cwd(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_store_url(url).path == tmp_path / "data" / "chdb"


def test_chdb_database_option() -> None:
    store = parse_store_url("chdb:///srv/chdb?database=lab")
    assert store.database == "lab"
    assert store.redacted == "chdb:///srv/chdb?database=lab"
    assert parse_store_url(store.redacted) == store


def test_chdb_percent_encoded_path() -> None:
    assert parse_store_url("chdb:///tmp/my%20data").path == Path("/tmp/my data")


@pytest.mark.parametrize(("url", "problem"), [
    ("", "unknown scheme"),
    ("/var/lib/chdb", "unknown scheme"),
    ("mysql://h/db", "unknown scheme"),
    ("clickhouse:///stb", "needs a host"),
    ("clickhouse://h:99999/stb", "port"),
    ("clickhouse://h:0/stb", "port"),
    ("clickhouse://h:port/stb", "port"),
    ("clickhouse://h/stb/extra", "one database"),
    ("clickhouse://h/my-db", "database name"),
    ("clickhouse://h/1db", "database name"),
    ("clickhouse://h/stb?timeout=5", "unknown option 'timeout'"),
    ("clickhouse://h/stb?secure=maybe", "secure='maybe'"),
    ("clickhouse://h/stb?connect_timeout=-1", "connect_timeout"),
    ("clickhouse://h/stb?connect_timeout=abc", "connect_timeout"),
    ("clickhouse://h/stb?secure=1&secure=0", "given twice"),
    ("chdb:", "needs a data folder"),
    ("chdb://", "needs a data folder"),
    ("chdb://data/chdb", "three slashes"),
    ("chdb:///x?db=lab", "only ?database="),
    ("chdb:///x?database=a.b", "database name"),
])
def test_bad_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(WarehouseURLError, match="store URL") as caught:
        parse_store_url(url)
    assert problem in str(caught.value)
    assert not caught.value.retryable


def test_error_messages_never_show_the_password() -> None:
    with pytest.raises(WarehouseURLError) as caught:
        parse_store_url("clickhouse://u:hunter2@h/stb?bogus=1")
    assert "hunter2" not in str(caught.value) and "hunter2" not in caught.value.url
    assert "u:***@h" in str(caught.value)


def test_store_url_is_a_value() -> None:
    assert parse_store_url("clickhouse://h") == StoreURL("clickhouse", host="h")


def test_cluster_url_lists_entry_points_in_order() -> None:
    store = parse_store_url("clickhouse://ingest:pw@ch1:9001,ch2,[::1]:9003/telemetry?cluster=stb&connect_timeout=2")
    assert (store.host, store.port, store.cluster, store.database) == ("ch1", 9001, "stb", "telemetry")
    assert store.alt_hosts == (("ch2", 9000), ("::1", 9003))
    assert store.hosts == (("ch1", 9001), ("ch2", 9000), ("::1", 9003))
    assert dict(store.options) == {"connect_timeout": 2.0}
    assert dict(store.cluster_options) == {"insert_quorum": 2, "insert_quorum_timeout": 60.0}
    assert store.redacted == ("clickhouse://ingest:***@ch1:9001,ch2:9000,[::1]:9003/telemetry"
                              "?connect_timeout=2.0&cluster=stb&insert_quorum=2&insert_quorum_timeout=60.0")
    assert parse_store_url(store.redacted.replace("***", "pw")) == store


def test_cluster_with_one_entry_point_and_quorum_options() -> None:
    store = parse_store_url("clickhouses://h/db?cluster=c_1&insert_quorum=0&insert_quorum_timeout=5")
    assert (store.hosts, store.cluster, store.port) == ((("h", 9440),), "c_1", 9440)
    assert dict(store.cluster_options) == {"insert_quorum": 0, "insert_quorum_timeout": 5.0}


def test_single_server_urls_have_no_cluster() -> None:
    store = parse_store_url("clickhouse://h:9000/db")
    assert (store.cluster, store.alt_hosts, dict(store.cluster_options)) == ("", (), {})
    assert store.redacted == "clickhouse://default@h:9000/db"
    assert parse_store_url("chdb:///x").hosts == ()


@pytest.mark.parametrize(("url", "message"), [
    ("clickhouse://h1:9000,h2:9000/stb", "add ?cluster=NAME"),
    ("clickhouse://h1,h2", "add ?cluster=NAME"),
    ("clickhouse://h1:9000,h2:x/stb?cluster=c", "port of 'h2:x'"),
    ("clickhouse://h1:9000,,h2/stb?cluster=c", "needs a host"),
    ("clickhouse://h1:9000,h2:0/stb?cluster=c", "1..65535"),
    ("clickhouse://h/stb?cluster=bad-name", "cluster name"),
    ("clickhouse://h/stb?insert_quorum=2", "need cluster=NAME"),
    ("clickhouse://h/stb?cluster=c&insert_quorum=99", "insert_quorum='99'"),
    ("clickhouse://h/stb?cluster=c&quorum=2", "unknown option 'quorum'"),
])
def test_cluster_url_errors(url: str, message: str) -> None:
    with pytest.raises(WarehouseURLError, match=message.replace("?", r"\?").replace("(", r"\(")):
        parse_store_url(url)
