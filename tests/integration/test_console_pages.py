"""Every console page on both real stores (ClickHouse 18.16 and chdb), in-process through Starlette's
TestClient: 200 and a "nothing yet" note on an empty store; the seeded world's figures once seeded;
each page within the 1 s budget; roles, CSRF and the count API's contract."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.db import now_ms
from console.settings import ConsoleSettings, HttpSettings
from console.users import add_user
from tests.integration.console_world import seed
from tests.integration.crm_support import close_and_drop, open_migrated, store_url  # noqa: F401 (fixture)
from warehouse import Warehouse

pytestmark = pytest.mark.integration

PAGES = ("/", "/audience", "/households", "/households/4", "/segments", "/segments?expr=interest.football",
         "/campaigns", "/campaigns/new", "/churn", "/recommender", "/audit")
PASSWORD = "correct horse battery"


@pytest.fixture
def world(store_url: str, tmp_path: Path) -> Iterator[tuple[Warehouse, TestClient]]:  # noqa: F811
    store = open_migrated(store_url)
    for name, role in (("ada", "admin"), ("mia", "marketer"), ("vic", "viewer")):
        add_user(store, name, role, PASSWORD, now_ms())
    settings = ConsoleSettings(http=HttpSettings(secret_file=str(tmp_path / "secret")))
    try:
        with TestClient(create_app(settings, store), base_url="http://console.test") as client:
            yield store, client
    finally:
        close_and_drop(store, store_url)


def login(client: TestClient, name: str) -> None:
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    reply = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token.group(1)},
                        follow_redirects=False)
    assert reply.status_code == 303, reply.text


def csrf(client: TestClient, path: str = "/segments") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def test_empty_store_every_page_answers_and_says_so(world: tuple[Warehouse, TestClient]) -> None:
    _, client = world
    assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
    login(client, "ada")
    for path in PAGES:
        reply = client.get(path.replace("/households/4", "/households/42"))
        assert reply.status_code == 200, (path, reply.text[:500])
    assert "No ratings computed yet" in client.get("/audience").text
    assert "No churn scores yet" in client.get("/churn").text
    assert "No recommendation impressions yet" in client.get("/recommender").text
    assert "No campaigns planned yet" in client.get("/campaigns").text
    assert "Nothing is known about this household" in client.get("/households/42").text
    assert client.get("/api/segments/count", params={"expr": "interest.football"}).json()["count"] == 0


def test_seeded_pages_show_the_world_within_a_second(world: tuple[Warehouse, TestClient]) -> None:
    store, client = world
    seed(store)
    login(client, "mia")
    for path in PAGES[:-1]:
        started = time.perf_counter()
        reply = client.get(path)
        took = time.perf_counter() - started
        assert reply.status_code == 200, (path, reply.text[:500])
        assert took < 1.0, (path, took)
    assert client.get("/api/segments/count", params={"expr": "interest.football"}).json() == {"count": 100}
    bad = client.get("/api/segments/count", params={"expr": "interest.football and ("})
    assert bad.status_code == 400 and "error" in bad.json()
    audience = client.get("/audience?by=daypart").text
    assert "Channel 5" in client.get("/audience").text and "prime" in audience and "<svg" in audience
    assert "ratings-2026-12-01-channel.csv" in client.get("/audience.csv?day=2026-12-01&by=channel").headers[
        "content-disposition"]
    churn = client.get("/churn").text
    assert "watches 60 % less than usual" in churn and "2026-12-01" in churn
    rec = client.get("/recommender").text
    assert re.search(r"<td>v1</td><td>200</td><td>20</td><td>10.0 %</td>", rec), rec
    assert re.search(r"<td>v2</td><td>200</td><td>40</td><td>20.0 %</td>", rec), rec
    household = client.get("/households/4").text
    assert "interest.football" in household and "Not scored yet" not in household


def test_roles_pseudonyms_and_csrf(world: tuple[Warehouse, TestClient]) -> None:
    store, client = world
    seed(store)
    login(client, "vic")
    assert client.get("/campaigns/new").status_code == 403
    assert client.get("/audit").status_code == 403
    assert client.get("/households/4").status_code == 403  # a viewer never names households by id
    churn = client.get("/churn").text
    pseudonym = re.search(r'href="/households/(h[0-9a-f]{16})"', churn)
    assert pseudonym and 'href="/households/1"' not in churn
    assert client.get(f"/households/{pseudonym.group(1)}").status_code == 200
    token = csrf(client)
    saved = client.post("/segments/save", data={"name": "fans", "expr": "interest.football", "csrf_token": token})
    assert saved.status_code == 403
    login(client, "mia")
    token = csrf(client)
    assert client.post("/segments/save", data={"name": "fans", "expr": "interest.football"}).status_code == 403
    saved = client.post("/segments/save", data={"name": "fans", "expr": "interest.football", "csrf_token": token},
                        follow_redirects=False)
    assert saved.status_code == 303
    page = client.get("/segments?name=fans").text
    assert "@fans" in page and "<svg" in page
    audit = store.query_rows(f"SELECT user, action, target FROM {store.database}.console_audit "
                             "WHERE action = 'segment.save'")
    assert audit == [("mia", "segment.save", "segment:fans")]
