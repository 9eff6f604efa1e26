"""Pending two-person release requests end when their key changes: once the key is
released, or contained again, a request made before names a containment that is gone.
Every ending is recorded."""

from __future__ import annotations

from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn

END_PENDING_SQL = """
UPDATE release_requests SET status = 'superseded', decided_at = now()
WHERE control = $1 AND key = $2 AND status = 'pending'
RETURNING id, requested_by, containment
"""


def ended_entry(request_id: int, control: str, key: str, requested_by: str,
                containment: int | None, why: str, incident_id: int | None) -> Entry:
    return Entry("release_request_ended", incident_id=incident_id, control=control, key=key,
                 detail={"request_id": request_id, "requested_by": requested_by,
                         "containment": containment, "why": why,
                         "note": "the key changed since it was requested; request it again"})


async def end_pending(conn: Conn, chain: ChainAppender, control: str, key: str, why: str,
                      incident_id: int | None) -> int:
    """End every pending request for the key (a writer unit's part); return how many."""
    rows = await conn.fetch(END_PENDING_SQL, control, key)
    for r in rows:
        chain.add(ended_entry(r["id"], control, key, r["requested_by"], r["containment"], why,
                              incident_id))
    return len(rows)
