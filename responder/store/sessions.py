"""Web sessions logged out: kept until the cookie would have expired, so every replica
refuses a logged-out session, restarts included."""

from __future__ import annotations

from responder.store.db import store_errors
from responder.store.types import Conn

REVOKE_SQL = """
INSERT INTO web_sessions_revoked (sid, expires_at) VALUES ($1, to_timestamp($2))
ON CONFLICT (sid) DO NOTHING
"""
IS_REVOKED_SQL = "SELECT 1 FROM web_sessions_revoked WHERE sid = $1"
PRUNE_SQL = "DELETE FROM web_sessions_revoked WHERE expires_at < now()"


async def revoke(conn: Conn, sid: str, expires_at: float) -> None:
    """Refuse session ``sid`` until ``expires_at`` (a Unix time)."""
    async with store_errors():
        await conn.execute(REVOKE_SQL, sid, expires_at)


async def is_revoked(conn: Conn, sid: str) -> bool:
    async with store_errors():
        return await conn.fetchval(IS_REVOKED_SQL, sid) is not None


async def prune(conn: Conn) -> None:
    """Forget logouts whose cookies have expired anyway."""
    async with store_errors():
        await conn.execute(PRUNE_SQL)
