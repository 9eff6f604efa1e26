"""Forgetting the event ids kept to refuse replays."""

from __future__ import annotations

from responder.store.actionlog import ChainAppender
from responder.store.types import Conn

PRUNE_SQL = "DELETE FROM event_nonces WHERE seen_at < now() - make_interval(secs => $1)"


async def prune_nonces(conn: Conn, chain: ChainAppender, *, window_s: float) -> None:
    """A writer unit: forget event ids older than twice the window; their timestamps are
    refused anyway."""
    await conn.execute(PRUNE_SQL, 2 * window_s)
