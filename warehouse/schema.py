"""The schema of both stores: one set of tables, SQL that runs on ClickHouse 18.16 and on
chdb's modern engine (26.x) alike. docs/SCHEMA.md explains every key.

`migrate()` applies MIGRATIONS in order, once each, and records them in
`schema_migrations`. Every statement is safe to repeat (IF NOT EXISTS, and the error codes
meaning "already there" are accepted), so processes that start together and all migrate do
no harm, and a migration interrupted half-way is finished by the next run. To change the
schema append one entry, e.g.

    Migration(2, "events.volume", (add_column("events", "volume", "UInt8", after="rank"),)),

and add the column to warehouse/columns.py. Never edit a migration that has shipped. The
version-1 CREATE statements are built from the current column maps, so a fresh database
already has a later-added column and that ADD COLUMN is accepted as done.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from warehouse.columns import DEAD_LETTER_COLUMNS, EVENT_COLUMNS, KIND_ENUM
from warehouse.errors import WarehouseRejected

# ClickHouse error codes that mean "this is already done" (another process got there first).
TABLE_ALREADY_EXISTS: Final = 57
DATABASE_ALREADY_EXISTS: Final = 82
DUPLICATE_COLUMN: Final = 15  # ADD COLUMN of an existing column, modern servers
ILLEGAL_COLUMN: Final = 44    # the same on 18.16 (which lacks ADD COLUMN IF NOT EXISTS)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Table:
    """One table: what is inserted, what the server computes, and its MergeTree keys."""

    name: str
    columns: Mapping[str, str]            # inserted columns, in insert order, with ClickHouse types
    engine: str
    order_by: str
    partition_by: str | None = None
    computed: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (type, expression)
    binary: frozenset[str] = frozenset()  # String columns that hold raw bytes, not text

    def ddl(self, database: str) -> str:
        cols = [f"    {name} {ch_type}" for name, ch_type in self.columns.items()]
        # MATERIALIZED: the server always computes it, inserts cannot send it, and
        # `SELECT *` returns exactly the inserted columns (ask for it by name).
        cols += [f"    {name} {ch_type} MATERIALIZED {expr}" for name, (ch_type, expr) in self.computed.items()]
        partition = f"\nPARTITION BY {self.partition_by}" if self.partition_by else ""
        return (f"CREATE TABLE IF NOT EXISTS {database}.{self.name} (\n" + ",\n".join(cols) +
                f"\n) ENGINE = {self.engine}{partition}\nORDER BY {self.order_by}")


def _day(ms_column: str) -> str:
    return f"toYYYYMMDD(toDateTime(intDiv({ms_column}, 1000)))"


def _month(ms_column: str) -> str:
    return f"toYYYYMM(toDateTime(intDiv({ms_column}, 1000)))"


# Partitioned by the device's own clock, not the corrected ts_ms: a redelivered message gets
# a different correction (received_ms differs) but carries the same device_ts_ms, and
# ReplacingMergeTree only collapses duplicates that land in the same partition.
EVENTS = Table(
    "events", EVENT_COLUMNS, "ReplacingMergeTree()",
    order_by="(household_id, device_id, seq)",
    partition_by=_day("device_ts_ms"),
    computed={"time": ("DateTime", "toDateTime(intDiv(ts_ms, 1000))")},
)
DEAD_LETTERS = Table(
    "dead_letters", DEAD_LETTER_COLUMNS, "MergeTree()",
    order_by="(reason, received_ms)", partition_by=_month("received_ms"),
    binary=frozenset({"payload"}),
)
CHANNEL_COLUMNS: Final = {"channel_id": "UInt32", "xmltv_id": "String", "name": "String", "genre": "String",
                          "updated_ms": "Int64"}
PROGRAMME_COLUMNS: Final = {"programme_id": "UInt64", "content_id": "UInt64", "title": "String",
                            "episode_title": "String", "category": "String", "series_id": "String",
                            "episode_num": "String", "duration_s": "UInt32", "updated_ms": "Int64"}
AIRING_COLUMNS: Final = {"channel_id": "UInt32", "start_ms": "Int64", "stop_ms": "Int64",
                         "programme_id": "UInt64", "updated_ms": "Int64"}
# EPG dimensions: a re-import replaces rows, the newest `updated_ms` wins (read with FINAL).
CHANNELS = Table("channels", CHANNEL_COLUMNS, "ReplacingMergeTree(updated_ms)", order_by="channel_id")
PROGRAMMES = Table("programmes", PROGRAMME_COLUMNS, "ReplacingMergeTree(updated_ms)", order_by="programme_id")
AIRINGS = Table("airings", AIRING_COLUMNS, "ReplacingMergeTree(updated_ms)",
                order_by="(channel_id, start_ms)", partition_by=_month("start_ms"))

MIGRATIONS_TABLE: Final = Table(
    "schema_migrations", {"version": "UInt32", "name": "String", "applied_ms": "Int64"},
    "ReplacingMergeTree()", order_by="version")

# CRM (crm/, docs/CRM.md). Subscribers: the latest extract row per household wins (`imported_ms`);
# the history keeps one row per change, and a re-import of the same rows collapses into them.
SUBSCRIBER_COLUMNS: Final = {"household_id": "UInt64", "status": "String", "activated": "Date", "ended": "Date",
                             "products": "String", "monthly_fee_cents": "Int64", "region": "String",
                             "birth_month": "UInt8", "contact_opt_in": "String", "as_of": "Date",
                             "imported_ms": "Int64"}
SUBSCRIBER_HISTORY_COLUMNS: Final = {"household_id": "UInt64", "day": "Date", "status": "String",
                                     "products": "String", "monthly_fee_cents": "Int64", "imported_ms": "Int64"}
SUBSCRIBERS = Table("subscribers", SUBSCRIBER_COLUMNS, "ReplacingMergeTree(imported_ms)", order_by="household_id")
SUBSCRIBER_HISTORY = Table("subscriber_history", SUBSCRIBER_HISTORY_COLUMNS, "ReplacingMergeTree(imported_ms)",
                           order_by="(household_id, day, status, products, monthly_fee_cents)")

# Ratings per day, grouping (programme|channel|daypart) and segment ('' = everyone); a re-run replaces.
RATINGS_COLUMNS: Final = {"day": "Date", "by": "String", "segment": "String", "channel_id": "UInt32",
                          "start_ms": "Int64", "stop_ms": "Int64", "programme_id": "UInt64", "daypart": "String",
                          "title": "String", "rating": "Float64", "reach": "Float64", "share": "Float64",
                          "avg_minutes": "Float64", "credited_minutes": "Float64", "reached": "UInt64",
                          "universe": "UInt64", "computed_ms": "Int64"}
RATINGS_DAILY = Table("ratings_daily", RATINGS_COLUMNS, "ReplacingMergeTree(computed_ms)",
                      order_by="(day, by, segment, channel_id, start_ms, daypart)", partition_by="toYYYYMM(day)")

# Household profiles (one row per household and day) and tags; a re-run of a day replaces its rows
# (tags: readers take the day's newest computed_ms, so stale ones do not show). Arrays are written
# by INSERT ... SELECT in the store, never from Python.
PROFILE_COLUMNS: Final = {"household_id": "UInt64", "day": "Date", "minutes_7d": "Float64",
                          "minutes_28d": "Float64", "minutes_90d": "Float64",
                          "daypart_minutes_28d": "Array(Float64)", "category_names": "Array(String)",
                          "category_minutes": "Array(Float64)", "top_channels": "Array(UInt32)",
                          "top_series": "Array(UInt64)", "match_minutes": "Array(Float64)",
                          "vod_plays_28d": "UInt32", "active_days_28d": "UInt16", "zap_share_28d": "Float64",
                          "rec_clicks_28d": "UInt32", "prime_share_28d": "Float64", "trend": "Float64",
                          "days_since_view": "UInt16", "computed_ms": "Int64",
                          # the subscriber record as of the day (migration 6): segments read one table
                          **{"region": "String", "status": "String", "products": "String",
                             "monthly_fee_cents": "Int64", "tenure_days": "Int32", "birth_month": "UInt8"}}
HOUSEHOLD_PROFILES = Table("household_profiles", PROFILE_COLUMNS, "ReplacingMergeTree(computed_ms)",
                           order_by="(day, household_id)", partition_by="toYYYYMM(day)")
TAG_COLUMNS: Final = {"household_id": "UInt64", "tag": "String", "level": "String", "score": "Float64",
                      "day": "Date", "computed_ms": "Int64"}
HOUSEHOLD_TAGS = Table("household_tags", TAG_COLUMNS, "ReplacingMergeTree(computed_ms)",
                       order_by="(day, tag, household_id)", partition_by="toYYYYMM(day)")

# Saved segments: every save is a new version of its name.
SEGMENT_COLUMNS: Final = {"name": "String", "version": "UInt32", "expression": "String", "created_ms": "Int64"}
SEGMENTS = Table("segments", SEGMENT_COLUMNS, "MergeTree()", order_by="(name, version)")

# Churn early warning (crm/churn): one score row per household and scored day (a re-run replaces), and
# an alert row when a household enters the high band (the marketing trigger).
CHURN_SCORE_COLUMNS: Final = {"household_id": "UInt64", "day": "Date", "score": "Float64", "band": "String",
                              "reasons": "Array(String)", "model_version": "String", "computed_ms": "Int64"}
CHURN_SCORES = Table("churn_scores", CHURN_SCORE_COLUMNS, "ReplacingMergeTree(computed_ms)",
                     order_by="(day, household_id)", partition_by="toYYYYMM(day)")
CHURN_ALERT_COLUMNS: Final = {"household_id": "UInt64", "day": "Date", "score": "Float64",
                              "reasons": "Array(String)", "model_version": "String", "created_ms": "Int64"}
CHURN_ALERTS = Table("churn_alerts", CHURN_ALERT_COLUMNS, "ReplacingMergeTree(created_ms)",
                     order_by="(day, household_id)", partition_by="toYYYYMM(day)")
# `crm forget` requests: a keyed hash of the household id (not the id itself), when, what was removed.
FORGET_COLUMNS: Final = {"household_key": "UInt64", "requested_ms": "Int64", "completed_ms": "Int64",
                         "tables": "UInt32", "rows": "UInt64"}
FORGET_REQUESTS = Table("forget_requests", FORGET_COLUMNS, "MergeTree()", order_by="(household_key, requested_ms)")

# Marketing (marketing/, docs/MARKETING.md). A campaign row per change (newest `updated_ms` wins) and an
# audit line per action; contact states and send decisions are append-only histories (latest wins).
CAMPAIGN_COLUMNS: Final = {"id": "String", "definition": "String", "status": "String", "created_ms": "Int64",
                           "updated_ms": "Int64"}
CAMPAIGNS = Table("campaigns", CAMPAIGN_COLUMNS, "ReplacingMergeTree(updated_ms)", order_by="id")
CAMPAIGN_LOG_COLUMNS: Final = {"id": "String", "action": "String", "actor": "String", "detail": "String",
                               "at_ms": "Int64"}
CAMPAIGN_LOG = Table("campaign_log", CAMPAIGN_LOG_COLUMNS, "MergeTree()", order_by="(id, at_ms)")
CONTACT_COLUMNS: Final = {"campaign": "String", "household_id": "UInt64", "holdout": "UInt8", "wave": "UInt16",
                          "state": "String", "variant": "String", "message_id": "String", "at_ms": "Int64"}
CONTACTS = Table("contacts", CONTACT_COLUMNS, "MergeTree()", order_by="(campaign, household_id, at_ms)")
DELIVERY_COLUMNS: Final = {"campaign": "String", "household_id": "UInt64", "device_id": "String",
                           "region": "String", "product": "String", "wave": "UInt16", "variant": "String",
                           "occasion": "String", "message_id": "String", "status": "String", "reason": "String",
                           "decided_ms": "Int64", "expires_ms": "Int64"}
DELIVERIES = Table("deliveries", DELIVERY_COLUMNS, "MergeTree()", order_by="(campaign, household_id, decided_ms)",
                   partition_by=_month("decided_ms"))
ALLOCATION_COLUMNS: Final = {"campaign": "String", "wave": "UInt16", "variant": "String", "share": "Float64",
                             "sent": "UInt64", "converted": "UInt64", "decided_ms": "Int64"}
ALLOCATIONS = Table("allocations", ALLOCATION_COLUMNS, "MergeTree()", order_by="(campaign, wave, decided_ms)")

# Console (console/, docs/CONSOLE.md): a user row per change (newest `updated_ms` wins; `disabled` keeps
# the name from logging in), and an audit line per change an operator makes through it.
CONSOLE_USER_COLUMNS: Final = {"name": "String", "role": "String", "password_hash": "String",
                               "created_ms": "Int64", "updated_ms": "Int64", "disabled": "UInt8"}
CONSOLE_USERS = Table("console_users", CONSOLE_USER_COLUMNS, "ReplacingMergeTree(updated_ms)", order_by="name")
CONSOLE_AUDIT_COLUMNS: Final = {"at_ms": "Int64", "user": "String", "action": "String", "target": "String",
                                "detail": "String"}
CONSOLE_AUDIT = Table("console_audit", CONSOLE_AUDIT_COLUMNS, "MergeTree()", order_by="(at_ms, user)",
                      partition_by=_month("at_ms"))

_V1_TABLES: Final = (EVENTS, DEAD_LETTERS, CHANNELS, PROGRAMMES, AIRINGS)
TABLES: Final[dict[str, Table]] = {t.name: t for t in (*_V1_TABLES, SUBSCRIBERS, SUBSCRIBER_HISTORY,
                                                       RATINGS_DAILY, HOUSEHOLD_PROFILES, HOUSEHOLD_TAGS,
                                                       SEGMENTS, CHURN_SCORES, CHURN_ALERTS, FORGET_REQUESTS,
                                                       CAMPAIGNS, CAMPAIGN_LOG, CONTACTS, DELIVERIES, ALLOCATIONS,
                                                       CONSOLE_USERS, CONSOLE_AUDIT)}
# Column types of every table the code inserts into (tests and importers check against it).
TABLE_COLUMNS: Final[dict[str, dict[str, str]]] = {name: dict(t.columns) for name, t in TABLES.items()}


@dataclass(frozen=True)
class Statement:
    """One DDL statement (`{db}` stands for the database) and the error codes meaning it is already done."""

    sql: str
    done_codes: frozenset[int] = frozenset()
    creates: Table | None = None  # the table a CREATE TABLE statement makes (a cluster makes it differently)

    def render(self, database: str) -> str:
        return self.sql.replace("{db}", database)


def create_table(table: Table) -> Statement:
    return Statement(table.ddl("{db}"), frozenset({TABLE_ALREADY_EXISTS}), table)


def add_column(table: str, column: str, ch_type: str, *, default: str | None = None,
               after: str | None = None) -> Statement:
    """ALTER TABLE ADD COLUMN that may run twice (18.16 has no ADD COLUMN IF NOT EXISTS)."""
    sql = f"ALTER TABLE {{db}}.{table} ADD COLUMN {column} {ch_type}"
    sql += f" DEFAULT {default}" if default is not None else ""
    sql += f" AFTER {after}" if after is not None else ""
    return Statement(sql, frozenset({DUPLICATE_COLUMN, ILLEGAL_COLUMN}))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[Statement, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "events, dead letters and the EPG", tuple(create_table(t) for t in _V1_TABLES)),
    Migration(2, "crm: subscribers and their history", (create_table(SUBSCRIBERS), create_table(SUBSCRIBER_HISTORY))),
    Migration(3, "crm: ratings_daily", (create_table(RATINGS_DAILY),)),
    Migration(4, "crm: household_profiles and household_tags",
              (create_table(HOUSEHOLD_PROFILES), create_table(HOUSEHOLD_TAGS))),
    Migration(5, "crm: saved segments", (create_table(SEGMENTS),)),
    Migration(6, "crm: subscriber fields in household_profiles",
              tuple(add_column("household_profiles", c, t) for c, t in (
                  ("region", "String"), ("status", "String"), ("products", "String"),
                  ("monthly_fee_cents", "Int64"), ("tenure_days", "Int32"), ("birth_month", "UInt8")))),
    Migration(7, "events: kinds 8 msg_shown and 9 msg_response (messages for the box)",
              (Statement(f"ALTER TABLE {{db}}.events MODIFY COLUMN kind {KIND_ENUM}"),
               *(add_column("events", c, EVENT_COLUMNS[c]) for c in ("message_id", "campaign", "variant",
                                                                      "response")))),
    Migration(8, "crm: churn_scores, churn_alerts, forget_requests",
              (create_table(CHURN_SCORES), create_table(CHURN_ALERTS), create_table(FORGET_REQUESTS))),
    Migration(9, "marketing: campaigns, campaign_log, contacts, deliveries, allocations",
              tuple(create_table(t) for t in (CAMPAIGNS, CAMPAIGN_LOG, CONTACTS, DELIVERIES, ALLOCATIONS))),
    Migration(10, "console: users and audit", (create_table(CONSOLE_USERS), create_table(CONSOLE_AUDIT))),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version


def migrate(database: str, execute: Callable[[str], None],
            query_rows: Callable[[str], list[tuple[Any, ...]]], cluster: str = "") -> list[int]:
    """Bring `database` up to date through a store's execute/query_rows; returns the versions applied now.
    With `cluster`, every table is created and altered on that cluster (warehouse/cluster.py)."""
    if not _IDENTIFIER.fullmatch(database):
        raise WarehouseRejected(f"bad database name {database!r}")
    if cluster and not _IDENTIFIER.fullmatch(cluster):
        raise WarehouseRejected(f"bad cluster name {cluster!r}")

    def run(statement: Statement) -> None:
        if cluster:
            from warehouse.cluster import run_on_cluster

            run_on_cluster(statement, database, cluster, execute, query_rows)
        else:
            run_statement(statement, database, execute)

    run(Statement("CREATE DATABASE IF NOT EXISTS {db}", frozenset({DATABASE_ALREADY_EXISTS})))
    run(create_table(MIGRATIONS_TABLE))
    done = {int(row[0]) for row in query_rows(f"SELECT DISTINCT version FROM {database}.schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            run(statement)
        # INSERT ... SELECT rather than VALUES: clickhouse-driver would wait for a data block.
        name = migration.name.replace("\\", "\\\\").replace("'", "\\'")
        execute(f"INSERT INTO {database}.schema_migrations (version, name, applied_ms) "
                f"SELECT {migration.version}, '{name}', {int(time.time() * 1000)}")
        applied.append(migration.version)
    return applied


def run_statement(statement: Statement, database: str, execute: Callable[[str], None]) -> None:
    """Run one statement, accepting the error codes that mean it was already done."""
    try:
        execute(statement.render(database))
    except WarehouseRejected as exc:
        if exc.code not in statement.done_codes:
            raise
