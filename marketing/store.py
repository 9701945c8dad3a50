"""The campaign registry in the store: create, read, approve, pause, resume — the one contract the CLI
and the console share.

A campaign is a row of `campaigns` (its TOML text and status); every change inserts a new row and
the newest `updated_ms` wins (ReplacingMergeTree, read with argMax so unmerged parts do no harm).
Every action is also a line of `campaign_log` (who, what, when): the audit trail.

Statuses: `draft` (waits for approval), `active`, `paused`. Whether an active campaign sends now
also depends on its start and end (`Campaign.active_at`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from marketing.campaign import Campaign, parse_campaign
from marketing.errors import CampaignError, UnknownCampaign
from warehouse import Warehouse

DRAFT: Final = "draft"
ACTIVE: Final = "active"
PAUSED: Final = "paused"
# action -> (statuses it applies to, the status after it)
TRANSITIONS: Final = {"approve": ((DRAFT,), ACTIVE), "pause": ((ACTIVE,), PAUSED), "resume": ((PAUSED,), ACTIVE)}


@dataclass(frozen=True)
class CampaignRecord:
    campaign: Campaign
    status: str
    created_ms: int
    updated_ms: int

    @property
    def id(self) -> str:
        return self.campaign.id


def text_column(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


def create(warehouse: Warehouse, text: str, *, draft: bool = False, actor: str = "cli") -> Campaign:
    """Register a campaign from its file's text; CampaignError when invalid or the id is taken."""
    campaign = parse_campaign(text)
    if _latest(warehouse, campaign.id) is not None:
        raise CampaignError(f"campaign {campaign.id!r} exists already (ids are unique; pick another)",
                            campaign=campaign.id, key="id")
    at = now_ms()
    _write(warehouse, campaign.id, text, DRAFT if draft else ACTIVE, at, at)
    log(warehouse, campaign.id, "create", actor, "draft" if draft else "active", at)
    return campaign


def get(warehouse: Warehouse, campaign_id: str) -> CampaignRecord:
    row = _latest(warehouse, campaign_id)
    if row is None:
        raise UnknownCampaign(campaign_id)
    return row


def list_all(warehouse: Warehouse) -> list[CampaignRecord]:
    rows = warehouse.query_rows(
        f"SELECT id, argMax(definition, updated_ms), argMax(status, updated_ms), min(created_ms), max(updated_ms) "
        f"FROM {warehouse.database}.campaigns GROUP BY id ORDER BY id")
    return [_record(row) for row in rows]


def change_status(warehouse: Warehouse, campaign_id: str, action: str, *, actor: str = "cli") -> CampaignRecord:
    """approve | pause | resume; CampaignError when the campaign is not in a status the action applies to."""
    if action not in TRANSITIONS:
        raise CampaignError(f"unknown action {action!r} (one of {', '.join(TRANSITIONS)})", campaign=campaign_id)
    before, after = TRANSITIONS[action]
    record = get(warehouse, campaign_id)
    if record.status not in before:
        raise CampaignError(f"campaign {campaign_id!r} is {record.status}: {action} applies to "
                            f"{' or '.join(before)} campaigns", campaign=campaign_id)
    at = max(now_ms(), record.updated_ms + 1)
    _write(warehouse, campaign_id, record.campaign.source, after, record.created_ms, at)
    log(warehouse, campaign_id, action, actor, f"{record.status} -> {after}", at)
    return CampaignRecord(record.campaign, after, record.created_ms, at)


def log(warehouse: Warehouse, campaign_id: str, action: str, actor: str, detail: str, at_ms: int) -> None:
    warehouse.insert_columns("campaign_log", {
        "id": text_column([campaign_id]), "action": text_column([action]), "actor": text_column([actor]),
        "detail": text_column([detail]), "at_ms": np.array([at_ms], dtype=np.int64)})


def history(warehouse: Warehouse, campaign_id: str) -> list[tuple[int, str, str, str]]:
    """(at_ms, action, actor, detail) of a campaign, oldest first."""
    rows = warehouse.query_rows(f"SELECT at_ms, action, actor, detail FROM {warehouse.database}.campaign_log "
                                "WHERE id = %(id)s ORDER BY at_ms", {"id": campaign_id})
    return [(int(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def _write(warehouse: Warehouse, campaign_id: str, text: str, status: str, created_ms: int, updated_ms: int) -> None:
    warehouse.insert_columns("campaigns", {
        "id": text_column([campaign_id]), "definition": text_column([text]), "status": text_column([status]),
        "created_ms": np.array([created_ms], dtype=np.int64), "updated_ms": np.array([updated_ms], dtype=np.int64)})


def _latest(warehouse: Warehouse, campaign_id: str) -> CampaignRecord | None:
    rows = warehouse.query_rows(
        f"SELECT id, argMax(definition, updated_ms), argMax(status, updated_ms), min(created_ms), max(updated_ms) "
        f"FROM {warehouse.database}.campaigns WHERE id = %(id)s GROUP BY id", {"id": campaign_id})
    return _record(rows[0]) if rows else None


def _record(row: tuple[object, ...]) -> CampaignRecord:
    _id, text, status, created, updated = row
    return CampaignRecord(parse_campaign(str(text)), str(status), int(str(created)), int(str(updated)))
