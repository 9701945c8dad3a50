"""Segments (placeholder until the expression language lands)."""

from __future__ import annotations

from crm.credit import HouseholdFilter
from crm.errors import SegmentError
from warehouse import Warehouse


def household_filter(warehouse: Warehouse, expr: str) -> HouseholdFilter:
    raise SegmentError("segments are not available yet")
