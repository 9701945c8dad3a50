"""The marketing daemon's settings: the contract's defaults, cap rules from TOML and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketing.caps import CapRule
from marketing.settings import ENV_PREFIX, MarketingSettings
from stbcommon.settings import SettingsError, load


def test_defaults_are_the_contracts() -> None:
    s = load(MarketingSettings)
    assert s.poll_s == 30 and s.caps.quiet_hours == "" and s.caps.over_cap == "defer"
    assert s.caps.rules == (CapRule("channel", 2, 1), CapRule("product", 1, 7), CapRule("global", 5, 7))


def test_cap_rules_load_from_toml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('poll_s = 5\n[caps]\nquiet_hours = "22:00-08:00"\nover_cap = "skip"\n'
                    'rules = [ { scope = "channel", max = 3, days = 1 }, { scope = "global", max = 6, days = 7 } ]\n'
                    '[delivery]\ntimezone = "Europe/Berlin"\n')
    s = load(MarketingSettings, toml_path=path)
    assert s.caps.rules == (CapRule("channel", 3, 1), CapRule("global", 6, 7)) and s.caps.over_cap == "skip"
    assert s.delivery.zone.key == "Europe/Berlin"
    env = {f"{ENV_PREFIX}__CAPS__RULES": '[{scope = "product", max = 2, days = 3.5}]'}
    assert load(MarketingSettings, env=env, env_prefix=ENV_PREFIX).caps.rules == (CapRule("product", 2, 3.5),)


@pytest.mark.parametrize(("env", "problem"), [
    ({"CAPS__RULES": '[{scope = "product", max = 2}]'}, "caps.rules: missing days"),
    ({"CAPS__RULES": '[{scope = "weekly", max = 2, days = 1}]'}, "caps.rules[0].scope"),
    ({"CAPS__OVER_CAP": "drop"}, "over_cap"),
    ({"DELIVERY__TIMEZONE": "Mars/Olympus"}, "unknown time zone"),
    ({"POLL_S": "0"}, "poll_s"),
])
def test_bad_settings_are_refused_with_the_key(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load(MarketingSettings, env={f"{ENV_PREFIX}__{k}": v for k, v in env.items()}, env_prefix=ENV_PREFIX)
