"""The agent's counters: plain ints on one object, read by tests, the fleet and /metrics.

Plain attributes, not Prometheus objects: thousands of agents share a process in the
fleet simulator, and a standalone agent exports them only when its metrics port is on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class AgentStats:
    accepted: int = 0            # events taken into the spool
    rejected: int = 0            # events that break the wire contract (or encode too large)
    refused: int = 0             # valid events not taken: agent closed, cross-thread queue full, disk error
    batches_published: int = 0   # batches the broker acknowledged (PUBACK)
    events_published: int = 0
    reconnects: int = 0          # connections lost or attempts failed
    publish_refused: int = 0     # PUBACKs with a failure reason (e.g. 135 not authorized): batch kept
    io_errors: int = 0           # spool disk errors (full disk, EIO): writes, fsyncs, head and journal writes

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
