"""Shared fixtures: real servers (tests/fixtures/) are plugins so any test can ask for them."""

pytest_plugins = ["tests.fixtures.clickhouse", "tests.fixtures.cluster", "tests.fixtures.mosquitto"]
