"""A settings file that other users can read and that holds a secret is refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import AgentSettings
from collector.settings import CollectorSettings
from stbcommon.settings import SettingsError, load

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o666])
def test_a_url_password_in_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    toml = write(tmp_path / "collector.toml", '[mqtt]\nurl = "mqtts://collector:hunter2@broker:8883"\n', mode)
    with pytest.raises(SettingsError) as caught:
        load(CollectorSettings, toml_path=toml)
    text = str(caught.value)
    assert str(toml) in text and "chmod 600" in text and "mqtt.url" in text
    assert "hunter2" not in text                               # the message names, never quotes


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_the_same_file_private_to_its_owner_loads(tmp_path: Path, mode: int) -> None:
    toml = write(tmp_path / "collector.toml", '[mqtt]\nurl = "mqtts://collector:hunter2@broker:8883"\n', mode)
    assert load(CollectorSettings, toml_path=toml).mqtt.url.endswith("@broker:8883")


@pytest.mark.parametrize("text", [
    '[mqtt]\nurl = "mqtt://broker:1883"\n',                        # no credentials at all
    '[mqtt]\nurl = "mqtt://collector@broker:1883"\n',              # a user, no password
    '[store]\nurl = "clickhouse://default:@h:9000/stb"\n',         # an empty password
    'workers = 1\n[mqtt]\nkeepalive_s = 30\n',                     # "key" inside a word is no key
])
def test_a_readable_file_without_secrets_loads(tmp_path: Path, text: str) -> None:
    load(CollectorSettings, toml_path=write(tmp_path / "c.toml", text, 0o644))


def test_key_and_certificate_paths_are_not_secrets(tmp_path: Path) -> None:
    for name in ("ca.crt", "dev.crt", "dev.key"):
        (tmp_path / name).write_text("x")
    toml = write(tmp_path / "agent.toml", f'[device]\nid = "stb-1"\n[mqtt]\nurl = "mqtts://broker:8883"\n'
                 f'ca_file = "{tmp_path}/ca.crt"\ncert_file = "{tmp_path}/dev.crt"\nkey_file = "{tmp_path}/dev.key"\n',
                 0o644)
    assert load(AgentSettings, toml_path=toml).mqtt.key_file == f"{tmp_path}/dev.key"


@pytest.mark.parametrize(("line", "secret"), [
    ('password = "s3cret"', True),
    ('db_password = "s3cret"', True),
    ('api_token = "abc"', True),
    ('client-secret = "abc"', True),
    ('hmac_key = "c2VjcmV0/a2V5+=="', True),                       # base64 with a slash: still a key
    ('tls_key = "relative/missing.key"', True),                    # not an existing file: could be a key
    ('tls_key = "k.pem"', False),                                  # an existing file next to the config
    ('tokens_file = "/etc/stb/tokens"', False),                    # the last word says: a path
    ('key_file = "/nowhere.key"', False),
    ('password = ""', False),                                      # empty: holds nothing
    ('note = "-----BEGIN PRIVATE KEY-----\\nMIG..."', True),       # an inline private key, any name
    ('endpoints = ["mqtt://a:1883", "mqtt://u:pw@b:1883"]', True),  # inside a list
    ('keepalive = "60"', False),
])
def test_which_settings_count_as_secrets(tmp_path: Path, line: str, secret: bool) -> None:
    (tmp_path / "k.pem").write_text("x")
    toml = write(tmp_path / "x.toml", f"[extra]\n{line}\n", 0o644)
    with pytest.raises(SettingsError) as caught:                   # `extra` is unknown anyway
        load(CollectorSettings, toml_path=toml)
    problems = caught.value.problems
    refused = [p for p in problems if "chmod 600" in p]
    assert bool(refused) == secret, problems
    if secret:
        assert f"extra.{line.split(' ')[0]}" in refused[0]
        assert any("unknown setting" in p for p in problems)       # every problem at once


def test_the_agent_refuses_to_start_with_a_readable_secret(tmp_path: Path) -> None:
    toml = write(tmp_path / "agent.toml", '[device]\nid = "stb-1"\n[mqtt]\nurl = "mqtts://stb:pw@broker:8883"\n',
                 0o644)
    done = subprocess.run([sys.executable, "-m", "agent", "--config", str(toml), "--check-config"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode != 0
    assert f"chmod 600 {toml}" in done.stderr and "stb:pw" not in done.stderr + done.stdout
