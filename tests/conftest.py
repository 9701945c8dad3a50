"""Shared fixtures: real servers (tests/fixtures/) are plugins so any test can ask for them."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.clickhouse", "tests.fixtures.cluster", "tests.fixtures.mosquitto"]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests whose module sets `RUN_EARLY = True` run first, in their usual order.

    They drive paho-mqtt in this process, and paho's loop uses select(), which refuses file
    descriptors >= 1024. Every embedded chdb store a test opens here leaves about ten descriptors
    open for good (its threads' /proc task files: chdb cannot release them in-process), so late
    in the suite new sockets get numbers select() refuses and paho retries forever (a fresh-clone
    `make test` hung there). Running the paho tests before the chdb-heavy ones keeps them clear.
    """
    items.sort(key=lambda item: not getattr(getattr(item, "module", None), "RUN_EARLY", False))
