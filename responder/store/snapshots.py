"""What the evidence snapshotter asks before it takes an incident's snapshots."""

from __future__ import annotations

from dataclasses import dataclass

from responder.store.types import Conn

RULE_SQL = "SELECT rule_id FROM incidents WHERE id = $1"
TAKEN_SQL = "SELECT count(*) FROM evidence_snapshots WHERE incident_id = $1"


@dataclass(frozen=True)
class SnapshotState:
    rule_id: str | None
    """The rule that opened the incident (None: no such incident)."""
    taken: int
    """Snapshots already stored for it: they are taken once."""


async def snapshot_state(conn: Conn, incident_id: int) -> SnapshotState:
    rule_id: str | None = await conn.fetchval(RULE_SQL, incident_id)
    taken: int = await conn.fetchval(TAKEN_SQL, incident_id)
    return SnapshotState(rule_id, taken)
