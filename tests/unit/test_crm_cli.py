"""The CLI's contract without a store: --help everywhere, one-line reasons and exit codes on failure."""

from __future__ import annotations

import pytest

from crm.__main__ import main
from stbcommon.localservers import free_port


@pytest.mark.parametrize("command", [[], ["import-subscribers"], ["ratings"], ["profile"], ["segment"],
                                     ["segment", "count"], ["segment", "members"], ["segment", "save"],
                                     ["segment", "list"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_an_unreachable_store_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"clickhouse://127.0.0.1:{free_port()}/stb"
    assert main(["ratings", "--day", "2025-01-01", "--store", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crm ratings: ClickHouse unreachable")


def test_a_missing_file_and_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-subscribers", "/no/such/extract.csv", "--store", "chdb:///tmp/unused"]) == 1
    assert capsys.readouterr().err.strip() == "crm import-subscribers: cannot read /no/such/extract.csv: no such file"
    assert main(["profile", "--store", "http://example"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "store.url" in err[0]
