"""The audit side of the store: signed checkpoints of the action log's tree, and the reads
that verifying the log and proving records in a bundle make of it.

store_checkpoint() and bodies() also run inside the writer's transaction (a bundle's
proofs), where the writer maps driver errors; the others raise our errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from responder.store import outbox, tree
from responder.store.db import store_errors
from responder.store.types import Conn, Row

STORE_SQL = """
INSERT INTO checkpoints (tree_size, root, note, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (tree_size) DO NOTHING
"""

LATEST_SQL = "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"

SEV1_CONTAINED_SQL = """
SELECT EXISTS (
    SELECT 1 FROM action_log a JOIN incidents i ON i.id = a.incident_id
    WHERE a.incident_id = ANY($1::bigint[]) AND a.seq > $2 AND a.kind = 'outcome'
      AND i.severity = 'sev1' AND a.body::jsonb -> 'detail' ->> 'status' = 'applied')
"""

RECORDS_SQL = "SELECT seq, body FROM action_log WHERE seq > $1 ORDER BY seq LIMIT $2"

BODIES_SQL = "SELECT seq, body FROM action_log WHERE seq = ANY($1)"


async def store_checkpoint(conn: Conn, size: int, root: bytes, note: str, reason: str,
                           deliveries: Sequence[outbox.OutboxRow]) -> bool:
    """Keep a signed checkpoint and queue its deliveries; False if that size was known
    (nothing is queued then). Runs in the caller's transaction."""
    status = await conn.execute(STORE_SQL, size, root, note, reason)
    if status.endswith(" 0"):
        return False
    await outbox.enqueue(conn, deliveries)
    return True


async def committed_tree(conn: Conn) -> tuple[int, bytes] | None:
    """The tree's size and root as committed now, read in one snapshot; None while the log
    is empty."""
    async with store_errors(), conn.transaction(isolation="repeatable_read", readonly=True):
        size = await tree.tree_size(conn)
        if size == 0:
            return None
        return size, await tree.root(conn, size)


async def save_checkpoint(conn: Conn, size: int, root: bytes, note: str, reason: str,
                          deliveries: Sequence[outbox.OutboxRow]) -> bool:
    """store_checkpoint() in a transaction of its own."""
    async with store_errors(), conn.transaction():
        return await store_checkpoint(conn, size, root, note, reason, deliveries)


async def latest(conn: Conn) -> Row | None:
    """The newest checkpoint's tree_size and note."""
    async with store_errors():
        row: Row | None = await conn.fetchrow(LATEST_SQL)
    return row


async def sev1_applied_since(conn: Conn, incident_ids: list[int], seq: int) -> bool:
    """Whether a containment of one of these SEV1 incidents applied after record ``seq``."""
    async with store_errors():
        return bool(await conn.fetchval(SEV1_CONTAINED_SQL, incident_ids, seq))


async def records_after(conn: Conn, after: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` records (seq, body) after record ``after``, in order."""
    async with store_errors():
        rows = await conn.fetch(RECORDS_SQL, after, limit)
    return [(r["seq"], r["body"]) for r in rows]


async def bodies(conn: Conn, seqs: Sequence[int]) -> dict[int, str]:
    """The stored bytes of these records, by seq."""
    return {r["seq"]: r["body"] for r in await conn.fetch(BODIES_SQL, list(seqs))}
