"""The console in a real browser: Debian's chromium driven through chromium-driver (Selenium), the
console as its own process (`python -m console`) on a free port over a real ClickHouse 18.16.

Log in, build a segment and see its live count, create and approve a campaign, see its funnel move
after simulated responses, refuse a form posted without a CSRF token, keep a viewer out of campaign
editing, stop on SIGTERM. Screenshots of every page go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx  # the HTTP client Starlette 1.x tests use (pyproject dev extra)
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from stbcommon.localservers import free_port
from tests.integration.console_world import DAY_MS, contacts, seed, sends
from warehouse import Warehouse, open_warehouse

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "correct horse battery"


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    pytest.fail(f"{' or '.join(names)} is missing: run scripts/install-servers.sh (make servers)", pytrace=False)


@pytest.fixture
def store(clickhouse_url: str) -> Iterator[Warehouse]:
    wh = open_warehouse(clickhouse_url)
    wh.migrate()
    seed(wh)
    try:
        yield wh
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {wh.database}")
        wh.close()


@pytest.fixture
def console(store: Warehouse, clickhouse_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    for name, role in (("mia", "marketer"), ("vic", "viewer")):
        subprocess.run([sys.executable, "-m", "console", "user", "add", name, "--role", role,
                        "--store", clickhouse_url], input=f"{PASSWORD}\n".encode(), check=True, cwd=ROOT,
                       capture_output=True, timeout=60)
    port = free_port()
    env = {**os.environ, "STB_CONSOLE__HTTP__SECRET_FILE": str(tmp_path / "secret")}
    log = (tmp_path / "console.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "console", "--store", clickhouse_url,
                             "--listen", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/login", timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"console did not start: {(tmp_path / 'console.log').read_text()}", pytrace=False)
            time.sleep(0.2)
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,860", f"--user-data-dir={tmp_path / 'chromium'}", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.min(document.body.scrollHeight, 1000)")
    driver.set_window_size(1200, max(600, int(height) + 100))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1200, 860)


def log_in(driver: WebDriver, url: str, name: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/login")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "form.who")))


def test_console_in_a_real_browser(console: tuple[str, subprocess.Popen[bytes]], browser: WebDriver,
                                   store: Warehouse) -> None:
    url, proc = console
    wait = WebDriverWait(browser, 15)
    browser.get(f"{url}/")
    assert "/login" in browser.current_url
    shot(browser, "login")
    log_in(browser, url, "mia")
    shot(browser, "overview")

    # a segment and its live count (fetch to /api/segments/count as the expression is typed)
    browser.get(f"{url}/segments")
    browser.find_element(By.ID, "expr").send_keys("interest.football")
    wait.until(ec.text_to_be_present_in_element((By.ID, "live-count"), "100 households"))
    browser.find_element(By.NAME, "name").send_keys("football-fans")
    browser.find_element(By.CSS_SELECTOR, "form[action='/segments/save'] button").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "@football-fans over time"))
    assert "100 households" in browser.find_element(By.ID, "live-count").text  # the saved one, counted
    shot(browser, "segments")

    # a campaign: created as a draft from the form, then approved
    browser.get(f"{url}/campaigns/new?template=quiz")
    browser.find_element(By.NAME, "id").send_keys("quiz-night")
    browser.find_element(By.NAME, "segment").send_keys("@football-fans")
    browser.find_element(By.NAME, "product").send_keys("sports")
    shot(browser, "campaign-new")
    browser.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "draft"))
    browser.find_element(By.ID, "approve").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "active"))
    assert store.query_rows(f"SELECT argMax(status, updated_ms) FROM {store.database}.campaigns "
                            "WHERE id = 'quiz-night'") == [("active",)]
    assert store.query_rows(f"SELECT action, actor FROM {store.database}.campaign_log WHERE id = 'quiz-night' "
                            "ORDER BY at_ms") == [("create", "mia"), ("approve", "mia")]

    # simulated responses: the funnel moves
    def funnel() -> dict[str, int]:
        browser.get(f"{url}/campaigns/quiz-night")
        cells = browser.find_elements(By.CSS_SELECTOR, "#funnel td")
        return {cells[i].text: int(cells[i + 1].text) for i in range(0, len(cells), 2)}

    assert funnel()["converted"] == 0
    t = DAY_MS
    contacts(store, "quiz-night", [(h, 0, "contacted", "a", t) for h in range(1, 31, 3)] +
             [(h, 1, "not_contacted", "", t) for h in range(301, 305)])
    sends(store, "quiz-night", [(h, 1, "a", t + (h % 2) * 3_600_000) for h in range(1, 31, 3)])
    contacts(store, "quiz-night", [(h, 0, "converted", "a", t + 60_000) for h in (1, 4, 7)] +
             [(h, 0, "interested", "a", t + 60_000) for h in (10, 13)])
    moved = funnel()
    assert moved["converted"] == 3 and moved["interested"] == 2 and moved["contacted"] == 5
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "30.0 %" in main and "95 % interval" in main  # treated conversion 3 of 10, uplift from the report
    assert browser.find_element(By.CSS_SELECTOR, "#variants").text.split("\n")[1] == "a 10 3"
    shot(browser, "campaign")
    browser.get(f"{url}/campaigns")
    shot(browser, "campaigns")
    for path, name in (("/audience", "audience"), ("/households/4", "household"), ("/churn", "churn"),
                       ("/recommender", "recommender")):
        browser.get(url + path)
        assert "Traceback" not in browser.page_source
        shot(browser, name)

    # a form posted without its CSRF token, with the browser's own session: refused
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    plain = httpx.post(f"{url}/campaigns/quiz-night/pause", cookies=cookies, data={"x": "1"})
    assert plain.status_code == 403
    token = re.search(r'name="csrf_token" value="([^"]+)"', httpx.get(f"{url}/campaigns/quiz-night",
                                                                      cookies=cookies).text)
    assert token
    paused = httpx.post(f"{url}/campaigns/quiz-night/pause", cookies=cookies, data={"csrf_token": token.group(1)})
    assert paused.status_code == 303

    # a viewer reads, but is kept out of campaign editing
    log_in(browser, url, "vic")
    browser.get(f"{url}/campaigns/new")
    assert "403 forbidden" in browser.title
    browser.get(f"{url}/campaigns/quiz-night")
    assert not browser.find_elements(By.ID, "resume")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.page_source)
    assert token
    refused = httpx.post(f"{url}/campaigns/quiz-night/resume", cookies=cookies, data={"csrf_token": token.group(1)})
    assert refused.status_code == 403
    browser.get(f"{url}/churn")
    assert re.search(r"h[0-9a-f]{16}", browser.find_element(By.TAG_NAME, "main").text)
    shot(browser, "churn-viewer")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
