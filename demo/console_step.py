"""The demo's last step: the operator console on the demo data, until Ctrl-C.

Three documented demo users are created (`python -m console user add`, before the console opens
the embedded store: chdb is one process at a time), the console starts on a free local port, and
its URL and logins are printed. Ctrl-C (or SIGTERM) stops it cleanly.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stbcommon.localservers import free_port

# Demo logins, printed by the demo and listed in README.md: never use them beyond a demo.
USERS = (("ada", "admin", "demo-admin"), ("mia", "marketer", "demo-marketer"), ("vic", "viewer", "demo-viewer"))


def run_console(store_url: str, work: Path, *, stay: bool) -> None:
    for name, role, password in USERS:
        added = subprocess.run([sys.executable, "-m", "console", "user", "add", name, "--role", role,
                                "--store", store_url], input=password + "\n", capture_output=True, text=True,
                               timeout=120)
        if added.returncode != 0:
            print(f"   console user add failed: {added.stderr.strip()[-500:]}", flush=True)
            return
    config = work / "console.toml"
    config.write_text(f'[http]\nsecret_file = "{work / "console-secret"}"\n'
                      f'[sources]\nchurn_model_dir = "{work / "churn"}"\nrecommender_model_dir = "{work / "model"}"\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = (work / "console.log").open("wb")
    console = subprocess.Popen([sys.executable, "-m", "console", "--store", store_url, "--listen", f"127.0.0.1:{port}",
                                "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        if not _ready(url + "login", console):
            print(f"   the console did not start; see {work / 'console.log'}", flush=True)
            return
        print(f"\n== Console: {url}", flush=True)
        for name, role, password in USERS:
            print(f"   {role:<9} {name} / {password}", flush=True)
        if not stay:
            return
        print("   (Ctrl-C stops it)", flush=True)
        while console.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping the console", flush=True)
    finally:
        if console.poll() is None:
            console.send_signal(signal.SIGTERM)
            try:
                console.wait(30)
            except subprocess.TimeoutExpired:
                console.kill()
                console.wait(10)
        log.close()


def _ready(url: str, console: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and console.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            time.sleep(0.2)
    return False
