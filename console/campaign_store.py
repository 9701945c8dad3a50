"""Campaign rows written by the console: create (as a draft), approve, pause, resume.

TEMPORARY: this is the contract the marketing CLI has (../shared/CONTRACTS.md, "Marketing"): a row
of `campaigns` per change (ReplacingMergeTree(updated_ms), read with argMax) and a `campaign_log`
line per action. It moves to `marketing.store` once that module lands, so the CLI and the console
share one implementation; the console then calls it through `Db.call` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from console.db import column, now_ms
from marketing.campaign import Campaign, parse_campaign
from marketing.errors import CampaignError
from warehouse import Warehouse
from warehouse.schema import CAMPAIGN_COLUMNS, CAMPAIGN_LOG_COLUMNS

DRAFT: Final = "draft"
ACTIVE: Final = "active"
PAUSED: Final = "paused"
# action -> (statuses it applies to, the status after it)
TRANSITIONS: Final = {"approve": ((DRAFT,), ACTIVE), "pause": ((ACTIVE,), PAUSED), "resume": ((PAUSED,), ACTIVE)}


@dataclass(frozen=True)
class CampaignRow:
    id: str
    source: str
    status: str
    created_ms: int
    updated_ms: int


_LATEST = ("SELECT id, argMax(definition, updated_ms), argMax(status, updated_ms), min(created_ms), "
           "max(updated_ms) FROM {db}.campaigns")


def list_all(warehouse: Warehouse) -> list[CampaignRow]:
    rows = warehouse.query_rows(_LATEST.replace("{db}", warehouse.database) + " GROUP BY id ORDER BY id")
    return [_row(r) for r in rows]


def get(warehouse: Warehouse, campaign_id: str) -> CampaignRow | None:
    rows = warehouse.query_rows(_LATEST.replace("{db}", warehouse.database) + " WHERE id = %(id)s GROUP BY id",
                                {"id": campaign_id})
    return _row(rows[0]) if rows else None


def create(warehouse: Warehouse, text: str, actor: str) -> Campaign:
    """A new campaign as a draft (it waits for approval); CampaignError when invalid or the id is taken."""
    campaign = parse_campaign(text)
    if get(warehouse, campaign.id) is not None:
        raise CampaignError(f"campaign {campaign.id!r} exists already (ids are unique; pick another)",
                            campaign=campaign.id, key="id")
    at = now_ms()
    _write(warehouse, campaign.id, text, DRAFT, at, at)
    log(warehouse, campaign.id, "create", actor, DRAFT, at)
    return campaign


def change_status(warehouse: Warehouse, campaign_id: str, action: str, actor: str) -> CampaignRow:
    """approve | pause | resume; CampaignError when the campaign's status does not allow it."""
    if action not in TRANSITIONS:
        raise CampaignError(f"unknown action {action!r}", campaign=campaign_id)
    before, after = TRANSITIONS[action]
    row = get(warehouse, campaign_id)
    if row is None:
        raise CampaignError(f"no campaign {campaign_id!r}", campaign=campaign_id)
    if row.status not in before:
        raise CampaignError(f"campaign {campaign_id!r} is {row.status}: {action} applies to "
                            f"{' or '.join(before)} campaigns", campaign=campaign_id)
    at = max(now_ms(), row.updated_ms + 1)
    _write(warehouse, campaign_id, row.source, after, row.created_ms, at)
    log(warehouse, campaign_id, action, actor, f"{row.status} -> {after}", at)
    return CampaignRow(campaign_id, row.source, after, row.created_ms, at)


def log(warehouse: Warehouse, campaign_id: str, action: str, actor: str, detail: str, at_ms: int) -> None:
    values = {"id": campaign_id, "action": action, "actor": actor, "detail": detail, "at_ms": at_ms}
    warehouse.insert_columns("campaign_log", {c: column([values[c]], t) for c, t in CAMPAIGN_LOG_COLUMNS.items()})


def _write(warehouse: Warehouse, campaign_id: str, text: str, status: str, created_ms: int, updated_ms: int) -> None:
    values = {"id": campaign_id, "definition": text, "status": status, "created_ms": created_ms,
              "updated_ms": updated_ms}
    warehouse.insert_columns("campaigns", {c: column([values[c]], t) for c, t in CAMPAIGN_COLUMNS.items()})


def _row(row: tuple[object, ...]) -> CampaignRow:
    cid, text, status, created, updated = row
    return CampaignRow(str(cid), str(text), str(status), int(str(created)), int(str(updated)))
