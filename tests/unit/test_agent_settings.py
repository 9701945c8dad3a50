"""The agent's settings tree and command line: sources, validation (all errors at once), help."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.__main__ import main
from agent.settings import ENV_PREFIX, AgentSettings, SpoolSettings
from stbcommon.settings import SettingsError, load


def test_sources_in_order_of_precedence(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[device]\nid = "from-file"\nregion = "north"\n[batch]\nmax_age_s = 2.0\n'
                      '[spool]\nfsync = "event"\n')
    env = {f"{ENV_PREFIX}__DEVICE__ID": "from-env", f"{ENV_PREFIX}__SPOOL__FSYNC": "false",
           f"{ENV_PREFIX}__BATCH__MAX_EVENTS": "50", "OTHER__DEVICE__ID": "ignored"}
    s = load(AgentSettings, toml_path=config, env=env, env_prefix=ENV_PREFIX,
             overrides={"device.id": "from-flag", "mqtt.url": None})
    assert s.device.id == "from-flag" and s.device.region == "north"
    assert s.batch.max_age_s == 2.0 and s.batch.max_events == 50
    assert s.spool.fsync == "off"  # environment beats the file; "false" means off
    assert s.mqtt.url == "mqtt://localhost:1883"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('colour = "blue"\n[device]\nregion = "North Side"\n[mqtt]\nurl = "http://x"\ninflight = 0\n'
                      '[batch]\nmax_events = 5000\n[spool]\nfsync = "sometimes"\nmax_bytes = 10\n')
    with pytest.raises(SettingsError) as caught:
        load(AgentSettings, toml_path=config)
    assert any("colour: unknown setting" in p for p in caught.value.problems)
    config.write_text('[device]\nregion = "North Side"\n[mqtt]\nurl = "http://x"\ninflight = 0\n'
                      'ca_file = "/nope.pem"\n[batch]\nmax_events = 5000\n'
                      '[spool]\nfsync = "sometimes"\nmax_bytes = 10\n')
    with pytest.raises(SettingsError) as caught:
        load(AgentSettings, toml_path=config)
    text = "\n".join(caught.value.problems)
    for expected in ("device.id", "device.region", "mqtt.url", "mqtt.inflight", "mqtt.ca_file",
                     "batch.max_events", "spool.fsync", "spool.max_bytes"):
        assert expected in text, expected


@pytest.mark.parametrize(("given", "policy"), [(True, "batch"), (False, "off"), ("batch", "batch"),
                                               ("OFF", "off"), ("always", "event"), ("never", "off")])
def test_fsync_spellings(given: str | bool, policy: str) -> None:
    assert SpoolSettings(fsync=given).fsync == policy


def test_check_config_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(f"{ENV_PREFIX}__DEVICE__ID", raising=False)
    assert main(["--device-id", "stb-1", "--spool", str(tmp_path), "--fsync", "off", "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "stb-1" in out and "fsync='off'" in out
    assert main(["--region", "BAD REGION"]) == 2
    err = capsys.readouterr().err
    assert "device.id" in err and "device.region" in err


def test_help_explains_the_socket_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for words in ("one event per datagram", "msgpack", "JSON", "SIGTERM", f"{ENV_PREFIX}__MQTT__URL", "--fsync"):
        assert words in out, words


def test_unusable_spool_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:  # main() configures the root logger for the daemon
        assert main(["--device-id", "stb-1", "--spool", str(tmp_path / "file" / "spool"), "--socket", "",
                     "--log-format", "text"]) == 2
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
