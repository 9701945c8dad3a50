"""Long reports as background jobs, on both real stores (ClickHouse 18.16 and chdb), in-process through
Starlette's TestClient: a long audience range, a long CSV export and the recommender over all its
history answer at once with a progress page ("step k of n", refreshing itself), then show the
finished result at /jobs/{id}; another user gets 404 for the job; a short range answers directly;
a user past the running-jobs limit is told so (429)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.db import now_ms
from console.jobs import JobLimits
from console.settings import ConsoleSettings, HttpSettings
from console.users import add_user
from tests.integration.console_world import DAY_MS, seed
from tests.integration.crm_support import close_and_drop, open_migrated, store_url  # noqa: F401 (fixture)
from warehouse import Warehouse

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
LONG_DAYS = 40          # more than every report's direct limit (31, 14, 28 days)
FIRST, LAST = "2026-10-01", "2026-11-09"
PROFILED_FROM, PROFILED_DAYS = "2026-11-10", 20   # then the world's 2026-11-30 and 2026-12-01


def seed_history(store: Warehouse) -> None:
    """40 days of channel ratings (channel k rates k %), 40 days of v3 impressions (one a day, every
    fourth clicked) and 20 more profiled days (50 football fans a day) before the small world's days."""
    db = store.database
    store.execute(f"INSERT INTO {db}.household_profiles (household_id, day, minutes_7d, minutes_28d, active_days_28d, "
                  f"days_since_view, region, status, products, tenure_days, computed_ms) SELECT number % 300 + 1, "
                  f"toDate('{PROFILED_FROM}') + intDiv(number, 300), 300, 1200, 20, 0, 'north', 'active', 'basic', "
                  f"400, 900 FROM system.numbers LIMIT {300 * PROFILED_DAYS}")
    store.execute(f"INSERT INTO {db}.household_tags (household_id, tag, level, score, day, computed_ms) "
                  f"SELECT (number % 50) * 3 + 1, 'interest.football', '', 1.0, toDate('{PROFILED_FROM}') + "
                  f"intDiv(number, 50), 900 FROM system.numbers LIMIT {50 * PROFILED_DAYS}")
    store.execute(f"INSERT INTO {db}.ratings_daily (day, by, segment, channel_id, start_ms, stop_ms, programme_id, "
                  f"daypart, title, rating, reach, share, avg_minutes, credited_minutes, reached, universe, "
                  f"computed_ms) SELECT toDate('{FIRST}') + intDiv(number, 5), 'channel', '', number % 5 + 1, 0, 0, 0, "
                  f"'', '', 0.01 * (number % 5 + 1), 0.1, 0.2, 30, 100, 30, 300, 1 "
                  f"FROM system.numbers LIMIT {5 * LONG_DAYS}")
    for kind, where in (("rec_impression", ""), ("rec_click", "WHERE number % 4 = 0")):
        version = "'v3'" if kind == "rec_impression" else "''"
        store.execute(f"INSERT INTO {db}.events (household_id, device_id, seq, kind, device_ts_ms, ts_ms, "
                      f"received_ms, request_id, model_version, programme_id) SELECT number + 1, 'stb-old', "
                      f"{500_000 if kind == 'rec_click' else 400_000} + number, '{kind}', "
                      f"{DAY_MS} - (number + 1) * 86400000 + {60_000 if kind == 'rec_click' else 0}, "
                      f"{DAY_MS} - (number + 1) * 86400000, {DAY_MS}, "
                      f"concat('old', toString(number)), {version}, 1 FROM system.numbers {where} LIMIT {LONG_DAYS}")


@pytest.fixture
def client(store_url: str, tmp_path: Path) -> Iterator[TestClient]:  # noqa: F811
    store = open_migrated(store_url)
    for name, role in (("mia", "marketer"), ("vic", "viewer")):
        add_user(store, name, role, PASSWORD, now_ms())
    seed(store)
    seed_history(store)
    settings = ConsoleSettings(http=HttpSettings(secret_file=str(tmp_path / "secret")))
    try:
        app = create_app(settings, store, JobLimits(per_user=2, running=3, ttl_s=120))
        with TestClient(app, base_url="http://console.test") as test_client:
            yield test_client
    finally:
        close_and_drop(store, store_url)


def login(client: TestClient, name: str) -> None:
    client.cookies.clear()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    reply = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token.group(1)},
                        follow_redirects=False)
    assert reply.status_code == 303, reply.text


def started(client: TestClient, path: str) -> str:
    """Ask for a long report: the progress page at once; the job's id."""
    reply = client.get(path)
    assert reply.status_code == 202, (path, reply.status_code, reply.text[:400])
    assert re.search(r"step \d+ of \d+", reply.text), reply.text
    job = re.search(r'<meta http-equiv="refresh" content="1; url=/jobs/([\w-]+)">', reply.text)
    assert job, reply.text
    return job.group(1)


def finished(client: TestClient, job_id: str) -> str:
    """The job's page once it is done (polled as the page's refresh would)."""
    deadline = time.monotonic() + 60
    while True:
        reply = client.get(f"/jobs/{job_id}")
        if reply.status_code != 202:
            assert reply.status_code == 200, reply.text[:400]
            return reply.text
        progress = client.get(f"/jobs/{job_id}.json").json()
        assert progress["state"] in ("running", "done") and 0 <= progress["step"] <= progress["steps"]
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)


def test_a_long_audience_range_runs_as_a_job_only_its_owner_sees(client: TestClient) -> None:
    login(client, "mia")
    job = started(client, f"/audience?from={FIRST}&to={LAST}&by=channel")
    assert client.get(f"/jobs/{job}.json").json()["steps"] == LONG_DAYS
    page = finished(client, job)
    assert f"Mean of {LONG_DAYS} days with ratings, {FIRST} to {LAST}" in page
    assert re.search(r"<td>Channel 5</td><td>5.0 %</td><td>10.0 %</td><td>20.0 %</td>", page), page
    assert "<svg" in page and f"/audience.csv?from={FIRST}&amp;to={LAST}&amp;by=channel" in page
    login(client, "vic")
    for path in (f"/jobs/{job}", f"/jobs/{job}.json", f"/jobs/{job}.csv"):
        assert client.get(path).status_code == 404, path
    short = client.get(f"/audience?from=2026-11-01&to={LAST}&by=channel")  # 9 days: answered directly
    assert short.status_code == 200 and "Mean of 9 days with ratings" in short.text


def test_a_long_csv_export_and_the_recommender_over_all_history(client: TestClient) -> None:
    login(client, "mia")
    export = started(client, f"/audience.csv?from={FIRST}&to={LAST}&by=channel")
    assert f"ratings-{FIRST}-to-{LAST}-channel.csv" in finished(client, export)
    csv = client.get(f"/jobs/{export}.csv")
    lines = csv.text.strip().splitlines()
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert lines[0] == "day,label,rating,reach,share,avg_minutes,reached,universe" and len(lines) == 1 + 5 * LONG_DAYS
    assert f"{FIRST},Channel 5,0.05,0.1,0.2,30.0,30,300" in lines

    assert "Impressions of the last 28 days" in client.get("/recommender").text  # the default: one statement
    ctr = started(client, "/recommender?days=all")
    page = finished(client, ctr)
    for version, imps, clicks in (("v1", 200, 20), ("v2", 200, 40), ("v3", LONG_DAYS, LONG_DAYS // 4)):
        assert re.search(rf"<td>{version}</td><td>{imps}</td><td>{clicks}</td>", page), (version, page)


def test_a_saved_segments_long_size_history(client: TestClient) -> None:
    login(client, "mia")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/segments").text)
    assert token
    assert client.post("/segments/save", data={"name": "fans", "expr": "interest.football"}).status_code == 403
    saved = client.post("/segments/save", data={"name": "fans", "expr": "interest.football",
                                                "csrf_token": token.group(1)}, follow_redirects=False)
    assert saved.status_code == 303
    page = client.get("/segments?name=fans&days=30").text  # 22 profiled days: not on the page itself
    assert "30 days is a long report" in page and "/segments/history?name=fans&amp;days=30" in page
    short = client.get("/segments/history?name=fans&days=14", follow_redirects=False)
    assert short.status_code == 303 and short.headers["location"] == "/segments?name=fans&expr=%40fans&days=14"
    history = finished(client, started(client, "/segments/history?name=fans&days=30"))
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td><td>(\d+)</td></tr>", history)
    assert len(rows) == PROFILED_DAYS + 2 and rows[0] == (PROFILED_FROM, "50") and rows[-1] == ("2026-12-01", "100")
    assert "<svg" in history and "Back to @fans" in history


def test_running_reports_are_limited_per_user(client: TestClient) -> None:
    login(client, "mia")
    release = threading.Event()
    registry = client.app.state.console.jobs  # type: ignore[attr-defined]
    held = [registry.start("mia", key, "held", "csv_ready.html", [lambda: release.wait(10)], lambda _: {})
            for key in ("a", "b")]
    try:
        refused = client.get(f"/audience?from={FIRST}&to={LAST}")
        assert refused.status_code == 429 and "you are already running 2 long reports" in refused.text
        login(client, "vic")  # the limit is per user: another one still gets their report
        assert client.get(f"/audience?from={FIRST}&to={LAST}").status_code == 202
    finally:
        release.set()
    assert all(job.running or job.state == "done" for job in held)
