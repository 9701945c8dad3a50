"""The generated users file (`python -m warehouse.users`) on a real clickhouse-server 18.16.

The server runs with the package's users.xml and our file in its users.d, as installed:
readers read and nothing else, writers write their database only, wrong passwords and the
`default` user from anywhere but the server itself are refused.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recommender.signal import data_end_ms, household_shards
from stbcommon.localservers import ClickHouseServer
from tests.integration.test_warehouse_contract import event_block
from warehouse import WarehouseError, open_warehouse

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
READONLY_REFUSED = 164       # "... in readonly mode" (the store calls it retryable: a server switched read-only)
DATABASE_DENIED = 291        # "Access denied to database"
PASSWORD_REFUSED = {193, 194, 516}  # wrong, required (none sent) on 18.16; modern servers: 516
IP_NOT_ALLOWED = 195


@dataclass(frozen=True)
class Site:
    server: ClickHouseServer
    passwords: dict[str, str]

    def url(self, user: str, database: str = "stb", password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"clickhouse://{user}:{secret}@{self.server.host}:{self.server.tcp_port}/{database}"

    def http_status(self, user: str, source: str) -> tuple[int, str]:
        """SELECT 1 over HTTP from the loopback address `source` (all of 127/8 is this host)."""
        conn = http.client.HTTPConnection(self.server.host, self.server.http_port, timeout=10,
                                          source_address=(source, 0))
        try:
            conn.request("POST", "/", body=b"SELECT 1",
                         headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": self.passwords[user]})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("ch-users")
    conf = work / "conf"
    (conf / "users.d").mkdir(parents=True)
    shutil.copy("/etc/clickhouse-server/users.xml", conf / "users.xml")
    # 10.0.0.0/8 written as a prefix would admit every IPv4 client on 18.16: the generator
    # writes a netmask, and 127.0.0.2 must stay out.
    run = subprocess.run([sys.executable, "-m", "warehouse.users", "--secrets-dir", str(work / "secrets"),
                          "--out", str(conf / "users.d" / "stb-users.xml"),
                          "--network", "127.0.0.1", "--network", "10.0.0.0/8"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    passwords = {p.stem: p.read_text().splitlines()[0] for p in (work / "secrets").glob("*.password")}
    server = ClickHouseServer(work / "server", users_xml=conf / "users.xml")
    server.start()
    try:
        admin = open_warehouse(Site(server, passwords).url("default"))
        admin.migrate()
        admin.execute("CREATE DATABASE IF NOT EXISTS other")
        admin.execute("CREATE TABLE IF NOT EXISTS other.secrets (a UInt8) ENGINE = Memory")
        admin.close()
        yield Site(server, passwords)
    finally:
        server.kill()


def refused_code(url: str, sql: str) -> int | None:
    wh = open_warehouse(url)
    try:
        wh.execute(sql)
    except WarehouseError as exc:
        return exc.code
    finally:
        wh.close()
    return None


def test_collector_migrates_and_inserts_events(site: Site) -> None:
    collector = open_warehouse(site.url("collector"))
    try:
        collector.migrate()  # as the collector does at start: CREATE ... IF NOT EXISTS needs DDL rights
        collector.insert_columns("events", event_block(50))
        assert collector.query_rows("SELECT count() FROM stb.events")[0][0] >= 50
    finally:
        collector.close()
    assert refused_code(site.url("collector", "other"), "SELECT * FROM other.secrets") == DATABASE_DENIED


@pytest.mark.parametrize("user", ["recommender", "reader"])
def test_readers_read_and_change_nothing(site: Site, user: str) -> None:
    writer = open_warehouse(site.url("collector"))
    writer.insert_columns("events", event_block(20, seq0=1000))
    writer.close()
    reader = open_warehouse(site.url(user))
    try:
        # The recommender's own queries (its training extract starts with these) run as is.
        assert data_end_ms(reader) >= 0
        assert household_shards(reader, 0, 2**62) == [None]
        assert reader.query_rows("SELECT count() FROM stb.events")[0][0] >= 20
        for sql in ("INSERT INTO stb.events (household_id) SELECT 1",
                    "ALTER TABLE stb.events DELETE WHERE household_id = 1",
                    "DROP TABLE stb.events",
                    "CREATE TABLE IF NOT EXISTS stb.events (a UInt8) ENGINE = Memory",
                    "CREATE TABLE stb.sneaky (a UInt8) ENGINE = Memory"):
            with pytest.raises(WarehouseError) as refused:  # 164 counts as retryable: a maintenance switch
                reader.execute(sql)
            assert refused.value.code == READONLY_REFUSED, sql
        # readonly = 2 lets a query carry settings, but not lower `readonly` itself.
        assert reader.query_rows("SELECT count() FROM stb.events SETTINGS max_threads = 1")[0][0] >= 20
        with pytest.raises(WarehouseError) as refused:
            reader.query_rows("SELECT 1 SETTINGS readonly = 0")
        assert refused.value.code == READONLY_REFUSED
    finally:
        reader.close()
    assert refused_code(site.url(user, "other"), "SELECT * FROM other.secrets") == DATABASE_DENIED


def test_wrong_password_and_unknown_users_are_refused(site: Site) -> None:
    assert refused_code(site.url("reader", password="not-it"), "SELECT 1") in PASSWORD_REFUSED
    assert refused_code(site.url("collector", password=""), "SELECT 1") in PASSWORD_REFUSED
    site.passwords.setdefault("readonly", "")  # the package's passwordless example user is removed
    assert refused_code(site.url("readonly"), "SELECT 1") == 192  # UNKNOWN_USER


def test_default_user_only_from_the_server_itself(site: Site) -> None:
    assert site.http_status("default", "127.0.0.1")[0] == 200
    status, body = site.http_status("default", "127.0.0.2")
    assert status != 200 and f"Code: {IP_NOT_ALLOWED}" in body
    assert refused_code(site.url("default", password=""), "SELECT 1") in PASSWORD_REFUSED


def test_component_users_only_from_their_networks(site: Site) -> None:
    assert site.http_status("reader", "127.0.0.1")[0] == 200
    status, body = site.http_status("reader", "127.0.0.2")  # in neither 127.0.0.1 nor 10.0.0.0/8
    assert status != 200 and f"Code: {IP_NOT_ALLOWED}" in body
