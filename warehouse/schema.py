"""The schema, for both stores: SQL that runs on ClickHouse 18.16 and on chdb's modern engine.

`migrate` applies MIGRATIONS in order, once each, recording them in `schema_migrations`.
Every statement is idempotent (IF NOT EXISTS), so processes that start together and
both migrate do no harm. To change the schema, append a Migration; never edit one that
has shipped. See docs/SCHEMA.md for the why of each key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from warehouse.columns import DEAD_LETTER_COLUMNS, EVENT_COLUMNS


def _columns(cols: dict[str, str]) -> str:
    return ",\n    ".join(f"{name} {ch_type}" for name, ch_type in cols.items())


EVENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.events (
    {_columns(EVENT_COLUMNS)},
    time DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000))
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(toDateTime(intDiv(device_ts_ms, 1000)))
ORDER BY (household_id, device_id, seq)
"""

DEAD_LETTERS_DDL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
    {_columns(DEAD_LETTER_COLUMNS)}
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(received_ms, 1000)))
ORDER BY (reason, received_ms)
"""

CHANNEL_COLUMNS = {"channel_id": "UInt32", "xmltv_id": "String", "name": "String", "genre": "String",
                   "updated_ms": "Int64"}
PROGRAMME_COLUMNS = {"programme_id": "UInt64", "content_id": "UInt64", "title": "String",
                     "episode_title": "String", "category": "String", "series_id": "String",
                     "episode_num": "String", "duration_s": "UInt32", "updated_ms": "Int64"}
AIRING_COLUMNS = {"channel_id": "UInt32", "start_ms": "Int64", "stop_ms": "Int64", "programme_id": "UInt64",
                  "updated_ms": "Int64"}

EPG_DDL = [
    f"""CREATE TABLE IF NOT EXISTS {{db}}.channels (
    {_columns(CHANNEL_COLUMNS)}
) ENGINE = ReplacingMergeTree(updated_ms) ORDER BY channel_id""",
    f"""CREATE TABLE IF NOT EXISTS {{db}}.programmes (
    {_columns(PROGRAMME_COLUMNS)}
) ENGINE = ReplacingMergeTree(updated_ms) ORDER BY programme_id""",
    f"""CREATE TABLE IF NOT EXISTS {{db}}.airings (
    {_columns(AIRING_COLUMNS)}
) ENGINE = ReplacingMergeTree(updated_ms)
PARTITION BY toYYYYMM(toDateTime(intDiv(start_ms, 1000)))
ORDER BY (channel_id, start_ms)""",
]

MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_ms Int64
) ENGINE = ReplacingMergeTree() ORDER BY version
"""

# Column types of every table the code inserts into, for stores that need them.
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "events": EVENT_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
    "channels": CHANNEL_COLUMNS,
    "programmes": PROGRAMME_COLUMNS,
    "airings": AIRING_COLUMNS,
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, dead letters and the EPG", (EVENTS_DDL, DEAD_LETTERS_DDL, *EPG_DDL)),
)


def migrate(database: str, execute: Callable[[str], None],
            query_rows: Callable[[str], list[tuple[object, ...]]]) -> list[int]:
    """Bring `database` up to date; returns the versions applied now."""
    execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    execute(MIGRATIONS_DDL.format(db=database))
    done = {int(str(row[0])) for row in query_rows(f"SELECT version FROM {database}.schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            execute(statement.format(db=database))
        # INSERT ... SELECT, not VALUES: clickhouse-driver waits for a data block after VALUES.
        execute(f"INSERT INTO {database}.schema_migrations (version, name, applied_ms) "
                f"SELECT {migration.version}, '{migration.name}', {int(time.time() * 1000)}")
        applied.append(migration.version)
    return applied
