"""Subscriber 360: subscriber import, audience ratings, household profiles, tags and segments.

    python -m crm import-subscribers FILE --store URL      # docs/CRM.md for every command
    python -m crm ratings --store URL --day 2026-12-01
    python -m crm profile --store URL
    python -m crm segment count "interest.football and value in (high, mid)" --store URL

Everything is computed in ClickHouse (18.16 servers and chdb alike) and read back through
the warehouse interface. Data flows one way: agent -> collector -> warehouse -> crm.

Errors (crm.errors):
    CrmError               root; none retryable (the same input fails again)
    ├── ExtractRefused     a subscriber extract with a missing column or invalid rows
    ├── CatalogueError     a tag catalogue that cannot be used
    ├── SegmentError       an expression that does not parse or names an unknown field or tag
    └── NoData             nothing in the store for the requested day
Store errors come from warehouse.errors (WarehouseUnavailable is retryable).
"""

from __future__ import annotations

from crm.errors import CatalogueError, CrmError, ExtractRefused, NoData, SegmentError

__all__ = ["CatalogueError", "CrmError", "ExtractRefused", "NoData", "SegmentError"]
