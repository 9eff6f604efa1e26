"""The driver's types as the rest of responder names them, so only the store imports it."""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection, whether held directly or borrowed from the pool."""
Pool = asyncpg.Pool
"""The connection pool a process shares."""

Row = asyncpg.Record
"""A row as a read returns it: columns by name."""
