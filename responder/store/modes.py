"""The automation row: the global mode and break-glass, one row for every replica."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from responder.store.db import store_errors
from responder.store.types import Conn

LOAD_SQL = ("SELECT global_mode, break_glass_until, break_glass_by, break_glass_reason"
            " FROM automation WHERE id = 1")
GLASS_SQL = ("SELECT break_glass_until, break_glass_since, break_glass_by, break_glass_reason"
             " FROM automation WHERE id = 1 FOR UPDATE")
SET_MODE_SQL = "UPDATE automation SET global_mode = $1, updated_at = now() WHERE id = 1"
SET_GLASS_SQL = ("UPDATE automation SET break_glass_until = $1, break_glass_since = $2,"
                 " break_glass_by = $3, break_glass_reason = $4, updated_at = now()"
                 " WHERE id = 1")
CLEAR_GLASS_SQL = ("UPDATE automation SET break_glass_until = NULL, break_glass_since = NULL,"
                   " break_glass_by = NULL, break_glass_reason = NULL, updated_at = now()"
                   " WHERE id = 1")


async def load(conn: Conn) -> asyncpg.Record | None:
    """The mode and break-glass as stored now."""
    async with store_errors():
        row: asyncpg.Record | None = await conn.fetchrow(LOAD_SQL)
    return row


async def lock_glass(conn: Conn) -> asyncpg.Record:
    """Break-glass as stored, row-locked until the transaction ends (a writer unit's part)."""
    row: asyncpg.Record | None = await conn.fetchrow(GLASS_SQL)
    assert row is not None  # the one row is created with the table
    return row


async def set_mode(conn: Conn, mode: str) -> None:
    await conn.execute(SET_MODE_SQL, mode)


async def set_glass(conn: Conn, until: datetime, since: datetime, by: str,
                    reason: str) -> None:
    await conn.execute(SET_GLASS_SQL, until, since, by, reason)


async def clear_glass(conn: Conn) -> None:
    await conn.execute(CLEAR_GLASS_SQL)
