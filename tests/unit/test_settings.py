from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import AgentSettings
from collector.settings import ENV_PREFIX, CollectorSettings
from stbcommon.settings import SettingsError, load, redact_url, redacted


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('workers = 1\n[mqtt]\nurl = "mqtt://file:1883"\ngroup = "g-file"\n'
                    '[batch]\nmax_rows = 2000\n[store]\nurl = "clickhouse://h:9000/stb"\n')
    env = {f"{ENV_PREFIX}__MQTT__GROUP": "g-env", f"{ENV_PREFIX}__BATCH__MAX_AGE_S": "0.25", "OTHER": "x"}
    s = load(CollectorSettings, toml_path=toml, env=env, env_prefix=ENV_PREFIX,
             overrides={"mqtt.url": "mqtt://flag:1883", "workers": None})
    assert s.mqtt.url == "mqtt://flag:1883"
    assert s.mqtt.group == "g-env"
    assert s.batch.max_rows == 2000 and s.batch.max_age_s == 0.25
    assert s.store.url == "clickhouse://h:9000/stb"
    assert s.metrics.port == 9464  # default kept


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('wrokers = 2\n[mqtt]\nurl = "http://x"\nreceive_maximum = "many"\n[batch]\nmax_age_s = 0\n')
    with pytest.raises(SettingsError) as err:
        load(CollectorSettings, toml_path=toml)
    text = str(err.value)
    assert "wrokers: unknown setting" in text
    assert "mqtt.receive_maximum: expected an integer" in text
    assert len(err.value.problems) == 2  # type errors stop before semantic checks


def test_semantic_checks() -> None:
    with pytest.raises(SettingsError) as err:
        load(CollectorSettings, overrides={"mqtt.url": "http://x", "workers": 2, "batch.max_age_s": 0,
                                           "batch.max_messages": 40_000})
    text = str(err.value)
    assert "mqtt.url" in text and "batch.max_age_s" in text
    assert "chdb store is opened by one process" in text
    assert "must be at most 1/4 of mqtt.receive_maximum" in text


def test_env_values_are_parsed() -> None:
    s = load(CollectorSettings, env={f"{ENV_PREFIX}__WORKERS": "3", f"{ENV_PREFIX}__MQTT__TLS_INSECURE": "yes",
                                     f"{ENV_PREFIX}__STORE__URL": "clickhouse://h/stb"}, env_prefix=ENV_PREFIX)
    assert s.workers == 3 and s.mqtt.tls_insecure is True
    with pytest.raises(SettingsError, match="expected an integer"):
        load(CollectorSettings, env={f"{ENV_PREFIX}__WORKERS": "two"}, env_prefix=ENV_PREFIX)


def test_redact_url() -> None:
    assert redact_url("mqtt://u:secret@h:1883") == "mqtt://u:***@h:1883"
    assert redact_url("chdb:///x") == "chdb:///x"


def test_union_setting_takes_the_first_type_that_fits(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text('[spool]\nfsync = true\ndir = "/tmp/spool"\n[device]\nid = "box"\n')
    assert load(AgentSettings, toml_path=toml).spool.fsync == "batch"  # bool from TOML, str | bool field
    env = {"STB_AGENT__SPOOL__FSYNC": "event", "STB_AGENT__DEVICE__ID": "box"}
    assert load(AgentSettings, env=env, env_prefix="STB_AGENT").spool.fsync == "event"


def test_redacted_hides_every_password_in_the_tree() -> None:
    settings = load(CollectorSettings, overrides={"mqtt.url": "mqtt://u:secret@h:1883",
                                                  "store.url": "clickhouse://d:pw@h:9000/stb"})
    text = repr(redacted(settings))
    assert "secret" not in text and "pw@" not in text and "mqtt://u:***@h:1883" in text
    assert redacted(settings).batch == settings.batch


@pytest.mark.parametrize(("where", "value"), [
    ("mqtt.url", "ftp://collector:s3cret-pw@broker:1883"),             # validate() quotes the URL
    ("store.url", "clickhouse:/default:s3cret-pw@ch/stb"),               # so does the store URL check
    ("mqtt.keepalive_s", "mqtt://collector:s3cret-pw@broker:1883"),      # a type error quotes the value
])
def test_settings_errors_never_show_a_password(where: str, value: str) -> None:
    env = {f"STB_COLLECTOR__{where.replace('.', '__').upper()}": value}
    with pytest.raises(SettingsError) as caught:
        load(CollectorSettings, env=env, env_prefix="STB_COLLECTOR")
    text = str(caught.value) + " ".join(caught.value.problems)
    assert "s3cret-pw" not in text
    assert where.split(".")[-1] in text  # the message still names the setting
