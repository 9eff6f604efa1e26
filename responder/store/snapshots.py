"""What the evidence builder asks before it takes incidents' snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from responder.store.db import store_errors
from responder.store.types import Conn

STATES_SQL = """
SELECT i.id, i.rule_id,
       (SELECT count(*) FROM evidence_snapshots s WHERE s.incident_id = i.id) AS taken
FROM incidents i WHERE i.id = ANY($1::bigint[])
"""


@dataclass(frozen=True)
class SnapshotState:
    rule_id: str
    """The rule that opened the incident."""
    taken: int
    """Snapshots already stored for it: they are taken once."""


async def snapshot_states(conn: Conn, incident_ids: Sequence[int]) -> dict[int, SnapshotState]:
    """Each existing incident's rule and stored snapshot count, in one round trip."""
    async with store_errors():
        rows = await conn.fetch(STATES_SQL, list(incident_ids))
    return {r["id"]: SnapshotState(r["rule_id"], r["taken"]) for r in rows}
