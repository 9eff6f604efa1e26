"""Reads of the automation row (the global mode and break-glass) for the pages' banner."""

from __future__ import annotations

from typing import Any

from responder.store.db import store_errors
from responder.store.types import Conn

SQL = ("SELECT global_mode, break_glass_until, break_glass_by, break_glass_reason"
       " FROM automation WHERE id = 1")


async def read(conn: Conn) -> dict[str, Any] | None:
    """global_mode, break_glass_until, break_glass_by and break_glass_reason; None before
    the row is written."""
    async with store_errors():
        row = await conn.fetchrow(SQL)
    return None if row is None else dict(row)
