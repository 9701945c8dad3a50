"""The `--workers` supervisor: SIGTERM reaches every worker, including one being restarted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from collector.settings import CollectorSettings, MqttSettings
from collector.supervisor import worker_settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import random, sys
from collector.settings import CollectorSettings
from collector.supervisor import supervise
from stbcommon import logs
from tests.unit.supervised_workers import die_once_then_serve

random.uniform = lambda low, high: high   # the back-off takes its full length: 3 s
logs.configure("INFO", "text")
sys.exit(supervise(CollectorSettings(workers=1), worker_main=die_once_then_serve, restart_backoff=(3.0, 3.0)))
"""


def test_sigterm_during_the_restart_back_off_stops_the_supervisor(tmp_path: Path) -> None:
    env = {**os.environ, "SUPERVISOR_TEST_DIR": str(tmp_path)}
    starts = tmp_path / "starts-0"
    with subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # the supervisor has seen the death and begun its back-off
                if "worker died, restarting" in line:
                    break
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = proc.wait(timeout=15)  # before the fix: a worker started after the signal kept it waiting
            assert time.monotonic() - started < 5
            assert code == 3  # the worst exit code of its workers
            assert len(starts.read_text().split()) == 1  # no worker was started once stopping
        finally:
            proc.kill()
            for pid in starts.read_text().split() if starts.exists() else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_each_worker_gets_its_own_client_id() -> None:
    fixed = CollectorSettings(workers=3, mqtt=MqttSettings(client_id="headend-a"))
    ids = [worker_settings(fixed, i).mqtt.client_id_for(i) for i in range(3)]
    assert ids == ["headend-a-w0", "headend-a-w1", "headend-a-w2"]
    default = CollectorSettings(workers=2)
    assert len({worker_settings(default, i).mqtt.client_id_for(i) for i in range(2)}) == 2
