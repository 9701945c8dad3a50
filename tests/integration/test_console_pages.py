"""Every console page on both real stores (ClickHouse 18.16 and chdb), in-process through Starlette's
TestClient: 200 and a "nothing yet" note on an empty store; the seeded world's figures once seeded;
each page within the 1 s budget; roles, CSRF and the count API's contract; campaigns written through
marketing.store and shown from marketing.report; login rate limiting."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.campaign_view import uplift_sentence
from console.db import now_ms
from console.settings import ConsoleSettings, HttpSettings
from console.users import add_user
from marketing import store as campaigns
from marketing.report import build_report
from tests.integration.console_world import DAY_MS, contacts, seed, sends
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
    for cid, draft in (("quiet", True), ("loud", False)):  # planned, nothing sent: still 200, saying so
        campaigns.create(world[0], f'id = "{cid}"\nsegment = "interest.football"\n[[variants]]\nid = "a"\n'
                                   'title = "t"\nbody = "b"\n', draft=draft, actor="cli")
        page = client.get(f"/campaigns/{cid}")
        assert page.status_code == 200 and "No contacts yet" in page.text and "Nothing to measure yet" in page.text
    listing = client.get("/campaigns").text  # a draft has reached nobody; an active one is reported
    assert re.search(r'quiet</a>.*?<td>-</td><td>-</td></tr>', listing, re.S)
    assert re.search(r'loud</a>.*?<td>0</td><td>0</td></tr>', listing, re.S)
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


def test_campaigns_through_the_marketing_store_and_report(world: tuple[Warehouse, TestClient]) -> None:
    store, client = world
    seed(store)
    login(client, "mia")
    form = {"id": "quiz", "segment": "interest.football", "holdout": "0.1", "priority": "1", "waves": "2",
            "after_hours": "12", "daily": "", "title_a": "Quiz", "body_a": "Play", "action_a": "tune",
            "title_b": "Quiz!", "body_b": "Play now", "action_b": "info"}
    created = client.post("/campaigns/new", data=form | {"csrf_token": csrf(client)}, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/campaigns/quiz"
    assert campaigns.get(store, "quiz").status == "draft"
    approved = client.post("/campaigns/quiz/approve", data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert approved.status_code == 303 and campaigns.get(store, "quiz").status == "active"
    assert [(a, who) for _, a, who, _ in campaigns.history(store, "quiz")] == [("create", "mia"), ("approve", "mia")]
    audit = store.query_rows(f"SELECT user, action, target, detail FROM {store.database}.console_audit "
                             "WHERE target = 'campaign:quiz' ORDER BY at_ms")
    assert audit == [("mia", "campaign.create", "campaign:quiz", "draft"),
                     ("mia", "campaign.approve", "campaign:quiz", "-> active")]
    token = csrf(client)
    assert client.post("/campaigns/quiz/approve", data={"csrf_token": token}).status_code == 409
    assert client.post("/campaigns/quiz/explode", data={"csrf_token": token}).status_code == 404
    assert client.post("/campaigns/nope/pause", data={"csrf_token": token}).status_code == 404
    assert client.get("/campaigns/nope").status_code == 404
    again = client.post("/campaigns/new", data=form | {"csrf_token": token})
    assert again.status_code == 400 and "exists already" in again.text

    treated = list(range(1, 31, 3))
    contacts(store, "quiz", [(h, 0, "not_contacted", "", DAY_MS) for h in treated] +
             [(h, 1, "not_contacted", "", DAY_MS) for h in range(301, 305)])
    sends(store, "quiz", [(h, 1, "a" if h < 16 else "b", DAY_MS + 1000) for h in treated] +
          [(h, 2, "b", DAY_MS + 3_600_000) for h in treated[-2:]])
    contacts(store, "quiz", [(h, 0, "converted", "a", DAY_MS + 60_000) for h in (1, 4, 7)] +
             [(h, 0, "contacted", "b", DAY_MS + 60_000) for h in treated[3:]])
    report = build_report(store, campaigns.get(store, "quiz"))
    assert report["treated"] == {"households": 10, "converted": 3, "rate": 0.3}
    page = client.get("/campaigns/quiz").text
    funnel = dict(re.findall(r"<tr><td>([a-z_]+)</td><td>(\d+)</td></tr>", page.split('id="funnel"')[1]))
    assert {k: int(v) for k, v in funnel.items()} == report["funnel"]
    assert f'<p id="uplift">{uplift_sentence(report)}</p>' in page and "95 % interval" in page
    assert "<td>1</td><td>10</td><td>a 50.0 %, b 50.0 %</td>" in page
    assert "<td>2</td><td>2</td><td>b 100.0 %</td>" in page
    assert "<td>a</td><td>5</td><td>3</td>" in page and "<td>b</td><td>7</td><td>0</td>" in page
    assert page.count("<circle") == 3  # a and b at wave 1's decision, b at wave 2's
    listing = client.get("/campaigns").text
    assert re.search(r'href="/campaigns/quiz">quiz</a>.*?<td>10</td><td>3</td>', listing, re.S)


def test_failed_logins_are_rate_limited(world: tuple[Warehouse, TestClient]) -> None:
    _, client = world
    client.get("/login")
    for _ in range(5):
        wrong = client.post("/login", data={"username": "vic", "password": "wrong password!", "csrf_token": csrf(
            client, "/login")})
        assert wrong.status_code == 401 and "unknown user or wrong password" in wrong.text
    refused = client.post("/login", data={"username": "vic", "password": PASSWORD,
                                          "csrf_token": csrf(client, "/login")}, follow_redirects=False)
    assert refused.status_code == 429 and "Too many failed logins" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 300
    # the same client address is locked for every name
    other = client.post("/login", data={"username": "ada", "password": PASSWORD,
                                        "csrf_token": csrf(client, "/login")}, follow_redirects=False)
    assert other.status_code == 429
